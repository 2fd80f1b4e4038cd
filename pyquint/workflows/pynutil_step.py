"""Optional last QUINT step: per-atlas-region counts with PyNutil.

With an atlas registration of the sections (QuickNII/VisuAlign JSON, DeepSlice, ...) and an
atlas (a BrainGlobe atlas name, or a custom annotation volume with a labels CSV), PyNutil
maps every coloured pixel of the Nutil-ready segmentations into atlas space and counts the
objects (by centroid) and pixels per region, as Nutil Quantifier does. PyNutil is an
optional dependency (``pip install 'pyquint[pynutil]'``), imported only when this step runs.

PyNutil reads the PNGs with OpenCV, in B,G,R order, so its ``pixel_id`` is the reversed
colour of the class (:func:`pyquint.lut.colour_table` gives both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["REGION_COLUMNS", "check_pynutil_inputs", "import_pynutil", "region_counts"]

#: Columns of ``pynutil/region_counts.csv`` (those PyNutil reports, in this order).
REGION_COLUMNS = ("idx", "name", "region_area", "object_count", "pixel_count", "area_fraction")


def import_pynutil() -> Any:
    """The PyNutil module, or an :class:`InputError` saying how to install it."""
    try:
        import PyNutil  # noqa: PLC0415 - optional and heavy
    except ImportError as exc:
        raise InputError(
            f"the PyNutil step (pynutil.alignment / --alignment) needs PyNutil, which cannot be "
            f"imported ({exc}); install it with: pip install 'pyquint[pynutil]' (or pip install pynutil)"
        ) from None
    return PyNutil


def check_pynutil_inputs(cfg, resolve) -> None:
    """Check the step's inputs before any work: PyNutil importable, the registration a QUINT
    JSON with slices, the atlas given one way and its files present."""
    if not cfg.alignment:
        return
    import_pynutil()
    path = resolve(cfg.alignment)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"pynutil.alignment: cannot read {path} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"pynutil.alignment: {path} is not a JSON file ({exc})") from None
    slices = data.get("slices", data.get("sections")) if isinstance(data, dict) else None
    if not slices:
        raise InputError(f"pynutil.alignment: {path} lists no slices (a QuickNII/VisuAlign JSON has 'slices')")
    if bool(cfg.atlas) == bool(cfg.atlas_volume):
        raise InputError("pynutil: give either atlas (a BrainGlobe atlas name such as 'allen_mouse_25um') "
                         "or atlas_volume + atlas_labels (a custom atlas)")
    if cfg.atlas_volume:
        for key in ("atlas_volume", "atlas_labels"):
            value = getattr(cfg, key)
            if not value or not resolve(value).is_file():
                raise InputError(f"pynutil.{key}: {value!r} is not a file")
        if resolve(cfg.atlas_volume).suffix.lower() not in (".nrrd", ".npy"):
            raise InputError("pynutil.atlas_volume: use a .nrrd or .npy annotation volume")


def _atlas(cfg, resolve):
    pn = import_pynutil()
    if cfg.atlas:
        from brainglobe_atlasapi import BrainGlobeAtlas  # noqa: PLC0415 - PyNutil's own dependency

        return BrainGlobeAtlas(cfg.atlas)
    import numpy as np
    import pandas as pd

    volume_path, labels_path = resolve(cfg.atlas_volume), resolve(cfg.atlas_labels)
    labels = pd.read_csv(labels_path)
    missing = {"idx", "name"} - set(labels.columns)
    if missing:
        raise InputError(f"pynutil.atlas_labels: {labels_path} needs the columns idx, name (and r, g, b); "
                         f"missing {sorted(missing)}")
    if volume_path.suffix.lower() == ".npy":
        volume = np.load(volume_path, allow_pickle=False)
    else:
        import nrrd  # noqa: PLC0415 - PyNutil's own dependency (pynrrd)

        volume, _ = nrrd.read(str(volume_path))
    if volume.ndim != 3:
        raise InputError(f"pynutil.atlas_volume: {volume_path} is not a 3-D volume (shape {volume.shape})")
    return pn.AtlasData(annotation=volume, hemispheres=None, labels=labels)


def region_counts(seg_dir: Path, cfg, resolve, pixel_id_bgr: tuple[int, int, int]) -> list[dict]:
    """Run PyNutil on ``seg_dir`` and return its per-region rows (see :data:`REGION_COLUMNS`).

    Parameters
    ----------
    seg_dir : Path
        The folder of Nutil-ready PNGs.
    cfg : PynutilConfig
    resolve : callable
        Turns configuration paths into paths (relative to the configuration file).
    pixel_id_bgr : (int, int, int)
        The objects' colour in PyNutil's B,G,R order.
    """
    pn = import_pynutil()
    atlas = _atlas(cfg, resolve)
    try:
        registration = pn.read_alignment(str(resolve(cfg.alignment)))
        series = pn.read_segmentation_dir(str(seg_dir), pixel_id=list(pixel_id_bgr))
        extraction = pn.seg_to_coords(series, registration, atlas, object_cutoff=cfg.object_cutoff)
        table = pn.quantify_coords(extraction, atlas)
    except (ValueError, KeyError, IndexError, OSError) as exc:
        raise InputError(f"PyNutil could not quantify {seg_dir} with {resolve(cfg.alignment)}: {exc}") from None
    rows = []
    for record in table.to_dict("records"):
        rows.append({k: _plain(k, record[k]) for k in REGION_COLUMNS if k in record})
    return rows


def _plain(column: str, value: Any) -> Any:
    """numpy scalars -> Python numbers; counts as integers (PyNutil's table holds floats)."""
    value = value.item() if hasattr(value, "item") else value
    if column in ("idx", "object_count", "pixel_count", "region_area") and isinstance(value, float):
        return int(value) if value.is_integer() else value
    return value
