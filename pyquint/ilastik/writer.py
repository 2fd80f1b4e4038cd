"""Write minimal ilastik Pixel Classification projects (spec §4) and copy label sets.

The written project holds the root datasets, ``Input Data`` (raw data stored inside the
project or referenced by path), ``FeatureSelections``, ``PixelClassification`` (label names,
colours and label blocks) and ``Prediction Export``; no classifier, so ilastik retrains from
the labels when it opens the project. Every write is atomic (a temporary file renamed on
success), and an existing project is never changed in place.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_output, axistags_json, read_image, to_canonical
from ..pixel import default_class_colors
from ._labels import format_block_slice
from .project import open_readonly, read_project

__all__ = ["copy_labels", "write_project"]

def _default_colors(n: int) -> np.ndarray:
    """ilastik's default label colours (yellow, blue, red, ...; see pyquint.pixel)."""
    return np.asarray(default_class_colors(n), dtype=np.int64).reshape(-1, 3)
WRITTEN_VERSION = "1.4.0"
_BLOCK_EDGE = {2: 256, 3: 64}  # label tiles per spatial axis, like ilastik's ~40³-voxel blocks


def _vstr(group: Any, name: str, text: str) -> None:
    """A variable-length utf-8 string scalar, as ilastik writes them."""
    import h5py

    group.create_dataset(name, data=text.encode(), dtype=h5py.string_dtype("utf-8"))


def _as_image(item: Any, axes: str | None, index: int) -> tuple[np.ndarray, str, str | None]:
    """(data, original axes, source path or None) of one input image."""
    if isinstance(item, (str, os.PathLike)):
        data, read_axes = read_image(item, axes)
        return data, read_axes, os.fspath(item)
    data = np.asarray(item)
    if axes is None:
        axes = {2: "yx", 3: "yxc", 4: "zyxc"}.get(data.ndim)
        if axes is None:
            raise InputError(f"images[{index}]: cannot guess the axes of a {data.ndim}-D array; pass axes=")
    if len(axes) != data.ndim:
        raise InputError(f"images[{index}]: axes {axes!r} do not fit shape {data.shape}")
    return data, axes, None


def _label_blocks(labels: np.ndarray, index: int) -> list[tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]]:
    """Cut a canonical label image (spatial + c=1) into tiles cropped to their labelled pixels."""
    spatial = labels.shape[:-1]
    edge = _BLOCK_EDGE.get(len(spatial), 64)
    blocks = []
    grid = [range(0, n, edge) for n in spatial]
    for corner in np.stack(np.meshgrid(*grid, indexing="ij"), -1).reshape(-1, len(spatial)):
        window = tuple(slice(int(c), int(min(c + edge, n))) for c, n in zip(corner, spatial))
        tile = labels[window]
        nz = np.nonzero(tile[..., 0])
        if not nz[0].size:
            continue
        lo = [int(a.min()) for a in nz]
        hi = [int(a.max()) + 1 for a in nz]
        crop = tile[tuple(slice(a, b) for a, b in zip(lo, hi))]
        start = tuple(int(w.start) + a for w, a in zip(window, lo)) + (0,)
        stop = tuple(int(w.start) + b for w, b in zip(window, hi)) + (1,)
        blocks.append((np.ascontiguousarray(crop, dtype=np.uint8), start, stop))
    return blocks


def _check_labels(labels: Any, spatial: tuple[int, ...], index: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape == spatial:
        arr = arr[..., np.newaxis]
    if arr.shape != spatial + (1,):
        raise InputError(
            f"label_images[{index}] has shape {arr.shape}; image {index} needs {spatial} "
            "(or with a trailing channel of 1)"
        )
    if arr.dtype.kind not in "uib":
        raise InputError(f"label_images[{index}] must hold integers, not {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError(f"label_images[{index}]: label values must be 0..255 (0 = unlabelled)")
    return arr.astype(np.uint8, copy=False)


def write_project(
    path: str | os.PathLike,
    images: Sequence[Any] | np.ndarray,
    label_images: Sequence[Any] | np.ndarray | None,
    selection: Any,
    label_names: Sequence[str] | None = None,
    label_colors: Any = None,
    *,
    axes: str | None = None,
    nicknames: Sequence[str] | None = None,
    store_raw: bool = True,
    overwrite: bool = False,
    export_settings: dict[str, Any] | None = None,
) -> Path:
    """Write a minimal ilastik Pixel Classification project.

    Parameters
    ----------
    path : str or path-like
        The ``.ilp`` to create (atomically).
    images : sequence of ndarray or paths
        One per lane. Arrays (axes from ``axes``, else ``yx``/``yxc``/``zyxc`` by ndim) are
        stored inside the project; paths are stored inside too unless ``store_raw=False``,
        then referenced (relative to the project's folder when inside it, else absolute).
    label_images : sequence of ndarray or None
        Per lane: uint8-range labels (0 unlabelled, 1..N) with the image's canonical spatial
        shape (``yx``/``zyx``, optional trailing channel 1), or None for no labels.
    selection : FeatureSelection or None
        Written to ``FeatureSelections`` (None leaves the group empty, as steinbock does).
    label_names : sequence of str, optional
        Defaults to ``Label 1..N`` with N = the largest label value.
    label_colors : array-like (N, 3), optional
        RGB 0..255; defaults to ilastik's first colours. Also used as PmapColors.
    axes : str, optional
        Axes of array images.
    nicknames : sequence of str, optional
        Lane nicknames (default: file stems, or ``image0000``...).
    store_raw : bool
        Store path images inside the project (default) or reference them.
    overwrite : bool
        Replace an existing ``path`` (atomically).
    export_settings : dict, optional
        ``Prediction Export`` values to store, e.g. ``{"OutputFormat": "png",
        "ExportDtype": "uint8", "InputMin": 0.0, "InputMax": 1.0, "ExportMin": 0,
        "ExportMax": 255}``.

    Returns
    -------
    Path
    """
    import h5py

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (pass overwrite=True to replace it)")
    lanes, names, colors = _checked_lanes(path, images, label_images, label_names, label_colors,
                                          axes, nicknames)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        _vstr(f, "ilastikVersion", WRITTEN_VERSION)
        _vstr(f, "workflowName", "Pixel Classification")
        _vstr(f, "time", time.ctime())
        f.create_dataset("currentApplet", data=np.int64(2))
        _write_input_data(f, lanes, nicknames, store_raw, path)
        _write_feature_selection(f, selection)
        _write_labels(f, lanes, names, colors)
        _write_export_settings(f, export_settings)
    return path


def _checked_lanes(path: Path, images: Any, label_images: Any, label_names: Any, label_colors: Any,
                   axes: str | None, nicknames: Any) -> tuple[list[tuple], list[str], np.ndarray]:
    """Every lane's ``(data, axes, source, canonical axes, labels)``, the label names and
    colours, checked before anything is written."""
    if isinstance(images, np.ndarray):
        images = [images]
    if label_images is None:
        label_images = [None] * len(images)
    elif isinstance(label_images, np.ndarray):
        label_images = [label_images]
    if len(images) == 0:
        raise InputError("write_project needs at least one image")
    if len(label_images) != len(images):
        raise InputError(f"{len(images)} images but {len(label_images)} label images")
    if nicknames is not None and len(nicknames) != len(images):
        raise InputError(f"{len(images)} images but {len(nicknames)} nicknames")
    lanes = []
    top = 0
    for i, (item, labels) in enumerate(zip(images, label_images)):
        data, data_axes, source = _as_image(item, axes, i)
        if source is not None and Path(source).resolve() == path.resolve():
            raise InputError(f"images[{i}] is the project file itself")
        canon, canon_axes = to_canonical(data, data_axes)
        lab = None if labels is None else _check_labels(labels, canon.shape[:-1], i)
        if lab is not None:
            top = max(top, int(lab.max()) if lab.size else 0)
        lanes.append((data, data_axes, source, canon_axes, lab))
    n = max(top, len(label_names or ()))
    names = list(label_names) if label_names is not None else [f"Label {k + 1}" for k in range(n)]
    if len(names) < top:
        raise InputError(f"labels go up to {top} but only {len(names)} label names were given")
    colors = (np.asarray(label_colors, dtype=np.int64).reshape(-1, 3) if label_colors is not None
              else _default_colors(len(names)))
    if len(colors) != len(names) or (colors.size and (colors.min() < 0 or colors.max() > 255)):
        raise InputError(f"label_colors must be {len(names)} RGB triples in 0..255")
    return lanes, names, colors


def _write_input_data(f: Any, lanes: list[tuple], nicknames: Any, store_raw: bool, path: Path) -> None:
    """``Input Data``: one lane per image, stored inside the project or referenced."""
    inputs = f.create_group("Input Data")
    inputs.create_dataset("Role Names", data=np.array([b"Raw Data", b"Prediction Mask"], dtype="S15"))
    _vstr(inputs, "StorageVersion", "0.2")
    infos = inputs.create_group("infos")
    local = inputs.create_group("local_data")
    for i, (data, data_axes, source, _, _) in enumerate(lanes):
        lane = infos.create_group(f"lane{i:04d}")
        lane.create_group("Prediction Mask")
        raw = lane.create_group("Raw Data")
        dataset_id = str(uuid.uuid1())
        nickname = nicknames[i] if nicknames else (
            Path(source).stem if source else f"image{i:04d}")
        if source is None or store_raw:
            ds = local.create_dataset(dataset_id, data=data)
            ds.attrs["axistags"] = axistags_json(data_axes)
            inner = f"/Input Data/local_data/{dataset_id}"
            _vstr(raw, "filePath", inner)
            _vstr(raw, "inner_path", inner)
            _vstr(raw, "location", "ProjectInternal")
            _vstr(raw, "__class__", "ProjectInternalDatasetInfo")
        else:
            src = Path(os.path.abspath(source))
            try:
                stored = os.path.relpath(src, path.parent.resolve())
                relative = not stored.startswith("..")
            except ValueError:  # another drive on Windows
                relative = False
            _vstr(raw, "filePath", stored if relative else str(src))
            _vstr(raw, "location", "FileSystem")
            _vstr(raw, "__class__", "RelativeFilesystemDatasetInfo" if relative else "FilesystemDatasetInfo")
        _vstr(raw, "nickname", nickname)
        raw.create_dataset("allowLabels", data=True)
        _vstr(raw, "axistags", axistags_json(data_axes))
        _vstr(raw, "datasetId", dataset_id)
        raw.create_dataset("shape", data=np.asarray(data.shape, dtype=np.int64))
        _vstr(raw, "display_mode", "default")
        raw.create_dataset("normalizeDisplay", data=False)


def _write_feature_selection(f: Any, selection: Any) -> None:
    """``FeatureSelections`` (left empty for ``None``, as steinbock's template has it)."""
    fs = f.create_group("FeatureSelections")
    if selection is None:
        return
    fs.create_dataset("FeatureIds", data=np.array([s.encode() for s in selection.feature_ids]))
    fs.create_dataset("Scales", data=np.asarray(selection.scales, dtype=np.float64))
    fs.create_dataset("SelectionMatrix", data=np.asarray(selection.matrix, dtype=bool))
    # empty = "decide from the data" (2-D when z = 1), ilastik's own default
    c2d = selection.compute_in_2d or ()
    fs.create_dataset("ComputeIn2d", data=np.asarray(c2d, dtype=bool))
    _vstr(fs, "StorageVersion", "0.1")


def _write_labels(f: Any, lanes: list[tuple], names: list[str], colors: np.ndarray) -> None:
    """``PixelClassification``: label names and colours, and each lane's label blocks."""
    pc = f.create_group("PixelClassification")
    _vstr(pc, "StorageVersion", "0.1")
    for key, value in (("LabelNames", np.array([s.encode() for s in names])),
                       ("LabelColors", colors), ("PmapColors", colors)):
        ds = pc.create_dataset(key, data=value)
        ds.attrs["isEmpty"] = len(names) == 0
    sets = pc.create_group("LabelSets")
    for i, (_, _, _, canon_axes, lab) in enumerate(lanes):
        group = sets.create_group(f"labels{i:03d}")
        if lab is None:
            continue
        for k, (block, start, stop) in enumerate(_label_blocks(lab, i)):
            ds = group.create_dataset(f"block{k:04d}", data=block)
            ds.attrs["blockSlice"] = format_block_slice(start, stop)
            ds.attrs["axistags"] = axistags_json(canon_axes)


def _write_export_settings(f: Any, export_settings: dict[str, Any] | None) -> None:
    """``Prediction Export``: ilastik's defaults, updated by ``export_settings``."""
    export = f.create_group("Prediction Export")
    settings = {"OutputFilenameFormat": "{dataset_dir}/{nickname}_{result_type}",
                "OutputFormat": "hdf5", "OutputInternalPath": "exported_data",
                **(export_settings or {})}
    for key, value in settings.items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            export.create_dataset(key, data=value)  # InputMin, ExportMax, ... are numbers
        else:
            _vstr(export, key, str(value))
    _vstr(export, "StorageVersion", "0.1")


def copy_labels(
    source: Any,
    target: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Copy a project's label sets (blocks byte for byte, with their attributes) and label
    names/colours into another project.

    Parameters
    ----------
    source : IlastikProject or path
        The project whose ``PixelClassification/LabelSets`` are copied (opened read-only).
    target : path
        The project receiving them; it is not modified unless ``output`` is None and
        ``overwrite`` is True (then it is replaced atomically).
    output : path, optional
        Where to write the result (a copy of ``target`` with the labels replaced).

    Returns
    -------
    Path
        The written project. The result is read back and its label blocks checked against
        the target's lanes (a block outside its image is an error and nothing is written).
    """
    import h5py

    src_path = Path(getattr(source, "path", source))
    src = read_project(src_path)
    target = Path(target)
    out = Path(output) if output is not None else target
    if out == target and not overwrite:
        raise InputError(f"{target}: refusing to modify a project in place; give output= or overwrite=True")
    if out != target and out.exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass overwrite=True to replace it)")
    read_project(target)  # validates the target before copying anything
    with atomic_output(out) as tmp:
        shutil.copyfile(target, tmp)
        with open_readonly(src_path) as fsrc, h5py.File(tmp, "a") as fdst:
            pc_dst = fdst.require_group("PixelClassification")
            pc_src = fsrc["PixelClassification"]
            for key in ("LabelSets", "LabelNames", "LabelColors", "PmapColors"):
                if key in pc_dst:
                    del pc_dst[key]
                if key in pc_src:
                    fsrc.copy(pc_src[key], pc_dst, name=key)
        result = read_project(tmp)
        n_lanes = len(result.lanes)
        bad = sorted({b.lane for b in result.label_blocks if b.lane >= n_lanes})
        if bad:
            raise InputError(f"{src.path}: has labels for lane(s) {bad}, but {target} has {n_lanes} lanes")
        result.check_labels_inside()
    return out
