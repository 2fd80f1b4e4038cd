"""Object classification exports as ilastik writes them.

- ``Object Predictions``: uint8, background 0, every pixel of an object = its class (1..N);
- ``Object Probabilities``: float32, N channels, background 0;
- ``Object Identities``: uint32 object ids (0 background);
- ``{nickname}_table.csv``: one row per object: ``object_id`` (0-based running index),
  ``timestep``, ``labelimage_oid`` (the id in the label image), ``User Label`` (class name
  or "0"), ``Predicted Class``, ``Probability of <class>``…, then the feature columns under
  their display names (``_k`` suffix for vector features).

Files are named ``{nickname}_{source}.{ext}`` (ilastik's ``{dataset_dir}/{nickname}_{result_type}``);
HDF5 files hold ``exported_data`` with a vigra ``axistags`` attribute, axes ``yxc``/``zyxc``.
"""

from __future__ import annotations

import csv
import io as _io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output, write_image
from ..naming import nickname  # re-exported: ilastik's nickname, one definition
from .features import column_names

__all__ = [
    "EXPORT_FORMATS",
    "OBJECT_EXPORT_SOURCES",
    "TABLE_LEADING_COLUMNS",
    "export_path",
    "nickname",
    "object_images",
    "table_path",
    "write_frames_table",
    "write_object_image",
    "write_table",
]

OBJECT_EXPORT_SOURCES = ("Object Predictions", "Object Probabilities", "Object Identities")
EXPORT_FORMATS = {"h5": ".h5", "hdf5": ".h5", "tif": ".tif", "tiff": ".tif", "png": ".png",
                  "npy": ".npy"}
TABLE_LEADING_COLUMNS = ("object_id", "timestep", "labelimage_oid", "User Label", "Predicted Class")


def export_path(folder: str | os.PathLike, nick: str, source: str, fmt: str = "h5") -> Path:
    """``folder/{nick}_{source}.{ext}``."""
    if source not in OBJECT_EXPORT_SOURCES:
        raise InputError(f"unknown export source {source!r}; use one of {', '.join(OBJECT_EXPORT_SOURCES)}")
    ext = EXPORT_FORMATS.get(fmt.lower())
    if ext is None:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    return Path(folder) / f"{nick}_{source}{ext}"


def table_path(folder: str | os.PathLike, nick: str) -> Path:
    """``folder/{nick}_table.csv`` (ilastik writes ``{nickname}.csv`` as ``_table.csv``)."""
    return Path(folder) / f"{nick}_table.csv"


def object_images(
    objects: np.ndarray, classes: np.ndarray | None = None, proba: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-pixel export images from per-object results.

    Parameters
    ----------
    objects : ndarray of int
        Object labels (0 background, ids 1..n).
    classes : ndarray (n,), optional
        Class of each object (1..N).
    proba : ndarray (n, N), optional
        Probabilities of each object.

    Returns
    -------
    dict
        ``"Object Identities"`` (uint32), and when given ``"Object Predictions"`` (uint8)
        and ``"Object Probabilities"`` (float32, spatial shape + (N,)); background 0.
    """
    objects = np.asarray(objects)
    n = int(objects.max()) if objects.size else 0
    out = {"Object Identities": objects.astype(np.uint32)}
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != (n,):
            raise InputError(f"{classes.shape[0]} classes for {n} objects")
        lut = np.concatenate([[0], classes]).astype(np.uint8)
        out["Object Predictions"] = lut[objects]
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float32)
        if proba.ndim != 2 or proba.shape[0] != n:
            raise InputError(f"probabilities of shape {proba.shape} for {n} objects")
        lut_p = np.concatenate([np.zeros((1, proba.shape[1]), np.float32), proba])
        out["Object Probabilities"] = lut_p[objects]
    return out


def write_object_image(path: str | os.PathLike, source: str, data: np.ndarray,
                       time: bool = False) -> Path:
    """Write one export image in ilastik's layout (``yxc``/``zyxc``, ``exported_data``;
    ``tyxc``/``tzyxc`` when ``time`` says the first axis is ``t``)."""
    path = Path(path)
    data = np.asarray(data)
    spatial = data.ndim - (source == "Object Probabilities") - time
    axes = ("t" if time else "") + ("yxc" if spatial == 2 else "zyxc")
    if source != "Object Probabilities":
        data = data[..., np.newaxis]
    suffix = path.suffix.lower()
    if suffix == ".png":
        if data.dtype != np.uint8:
            raise InputError(f"{path}: PNG cannot hold {source} ({data.dtype}); use h5 or tif")
    if suffix in (".h5", ".hdf5", ".hdf"):
        attrs = {"drange": np.array([0.0, 1.0])} if source == "Object Probabilities" else None
        return write_image(f"{path}/exported_data", data, axes, attrs=attrs, compression="gzip")
    return write_image(path, data, axes)


def _fmt(value: np.floating) -> str:
    # numpy scalars print their shortest round-trip form (float32 probabilities stay short)
    if np.isnan(value):
        return "nan"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def write_table(
    path: str | os.PathLike,
    features: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    predictions: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    user_labels: Mapping[int, int] | None = None,
    timestep: int = 0,
    first_object_id: int = 0,
) -> Path:
    """Write ilastik's object table (``{nickname}_table.csv``), atomically.

    Parameters
    ----------
    path : path-like
        The CSV file.
    features : mapping
        Feature id -> (n, k) array (from :func:`compute_object_features`).
    class_names : sequence of str
    predictions : ndarray (n,), optional
        Classes 1..N; omitted -> empty "Predicted Class" cells.
    proba : ndarray (n, N), optional
    user_labels : mapping, optional
        Object id -> class of the training labels (written as class names, "0" otherwise).
    timestep, first_object_id : int
        ``timestep`` column and the ``object_id`` of the first row (0-based running index).
    """
    return write_frames_table(path, [(features, predictions, proba, user_labels)], class_names,
                              first_timestep=timestep, first_object_id=first_object_id)


def write_frames_table(
    path: str | os.PathLike,
    frames: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray | None, np.ndarray | None,
                           Mapping[int, int] | None]],
    class_names: Sequence[str],
    first_timestep: int = 0,
    first_object_id: int = 0,
) -> Path:
    """ilastik's object table of a time series: every frame's objects in one file.

    Parameters
    ----------
    path : path-like
        The CSV file.
    frames : sequence
        ``(features, predictions, proba, user_labels)`` per time point, as for
        :func:`write_table`. Rows carry ``timestep`` (the frame), ``labelimage_oid`` (the id in
        that frame, restarting at 1) and a running ``object_id`` over all frames, as ilastik's
        table export numbers them.
    class_names : sequence of str
    first_timestep, first_object_id : int
        Numbers of the first frame and of the first row.
    """
    names = [str(c) for c in class_names]
    header: list[str] | None = None
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    running = first_object_id
    for t, (features, predictions, proba, user_labels) in enumerate(frames, start=first_timestep):
        n = next(iter(features.values())).shape[0] if features else (
            0 if predictions is None else len(predictions))
        cols = column_names(dict(features))
        if header is None:
            header = list(TABLE_LEADING_COLUMNS) + [f"Probability of {c}" for c in names] + cols
            writer.writerow(header)
        matrix = (np.concatenate(list(features.values()), axis=1) if features else np.zeros((n, 0)))
        user_labels = user_labels or {}
        for i in range(n):
            oid = i + 1
            label = user_labels.get(oid, 0)
            row = [running, t, oid, names[label - 1] if label else "0"]
            row.append(names[int(predictions[i]) - 1] if predictions is not None else "")
            row.extend(_fmt(p) for p in (proba[i] if proba is not None else [np.nan] * len(names)))
            row.extend(_fmt(v) for v in matrix[i])
            writer.writerow(row)
            running += 1
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path
