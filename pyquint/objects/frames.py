"""Object classification of time series, frame by frame as ilastik does it.

ilastik thresholds, labels and measures objects in each time point on its own: object ids
restart at 1 in every frame (``labelimage_oid``), object labels are stored per frame
(``LabelInputs/<lane>/<t>``), and the CSV table lists every frame's objects in one file with a
``timestep`` column and a running ``object_id`` over all frames
(``ilastik/applets/objectClassification/opObjectClassification.py``, ``do_export``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import to_canonical
from ..sequences import slice_path
from .export import write_object_image
from .threshold import normalize_probabilities, read_probability_file

__all__ = ["image_frames", "probability_frames", "stack_frames", "write_frame_images"]


def image_frames(data: np.ndarray, axes: str) -> tuple[list[np.ndarray], bool]:
    """A raw image's frames in canonical order (single channel squeezed) and whether it has ``t``."""
    canon, canon_axes = to_canonical(data, axes)
    parts = [canon[k] for k in range(canon.shape[0])] if canon_axes.startswith("t") else [canon]
    return [p[..., 0] if p.shape[-1] == 1 else p for p in parts], canon_axes.startswith("t")


def probability_frames(source: Any) -> tuple[list[np.ndarray], str]:
    """Per-frame probabilities (0..1, canonical ``yxc``/``zyxc``) of a file or a
    ``(probabilities, axes)`` pair, and the axes of one frame."""
    if isinstance(source, tuple):
        data, axes = source
        drange = None
    else:
        data, axes, drange = read_probability_file(source)
    canon, canon_axes = to_canonical(data, axes)
    parts = [canon[k] for k in range(canon.shape[0])] if canon_axes.startswith("t") else [canon]
    try:
        return [normalize_probabilities(p, drange) for p in parts], canon_axes.lstrip("t")
    except InputError as exc:
        raise InputError(f"{source if not isinstance(source, tuple) else 'probabilities'}: {exc}") from None


def stack_frames(frames: Sequence[np.ndarray], time: bool) -> np.ndarray:
    """Per-frame export images stacked along ``t`` (the single frame itself without ``t``)."""
    return np.stack(frames) if time else frames[0]


def write_frame_images(path: str | os.PathLike, source: str, frames: Sequence[np.ndarray],
                       time: bool) -> list[Path]:
    """Write one object export of a series: HDF5/TIFF with a ``t`` axis (``tyxc``); PNG, which
    holds one 2-D image, as one file per frame, ``…_{slice_index}.png`` zero-padded as ilastik
    pads its sequences."""
    path = Path(path)
    if not time:
        return [write_object_image(path, source, frames[0])]
    if path.suffix.lower() == ".png":
        pattern = path.with_name(path.stem + "_{slice_index}" + path.suffix)
        return [write_object_image(slice_path(pattern, k, len(frames)), source, f)
                for k, f in enumerate(frames)]
    return [write_object_image(path, source, np.stack(frames), time=True)]
