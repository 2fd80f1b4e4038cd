"""Batches of large images: :func:`pyquint.pixel_batch.predict_files` with the tile path.

Each input (and each time point of a series) is predicted by :func:`predict_tiled`, which
reads and writes window by window; the batch rules (no input overwritten, existing outputs
skipped, resume, progress) are the ones every pixel batch follows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PyquintError
from ..export import export_filename, normalize_format
from ..pixel_batch import BatchResult, ExportSpec, predict_files
from ..sequences import has_slice_index, slice_path
from ._predict import frame_count, predict_tiled

__all__ = ["frame_name", "output_path", "predict_tiled_files"]

#: Formats the tile path can stream (``pyquint.export`` names).
TILED_FORMATS = ("png", "tif", "tiff", "hdf5", "compressed hdf5", "ome-zarr")


def frame_name(path: Path, frame: int | None) -> Path:
    """``x_Probabilities.h5`` → ``x_Probabilities_t0003.h5`` for time point 3 of a series
    (pyquint's naming when no ``{slice_index}`` pattern is given)."""
    if frame is None:
        return path
    return path.with_name(f"{path.stem}_t{frame:04d}{path.suffix}")


def output_path(image: str | os.PathLike, source: str, fmt: str, out_dir: str | os.PathLike,
                name_format: str | None, frame: int, n_frames: int) -> Path:
    """The output of one source, format and time point.

    ``{slice_index}`` in ``name_format`` is filled in as ilastik fills it in its sequences
    (:mod:`pyquint.sequences`); without a pattern a series gets :func:`frame_name`'s
    ``_t0000``; a pattern without ``{slice_index}`` on a series is refused (its time points
    would overwrite each other).
    """
    if name_format and has_slice_index(name_format):
        return export_filename(image, source, fmt, os.fspath(slice_path(name_format, frame, n_frames)),
                               dataset_dir=out_dir)
    if name_format and n_frames > 1:
        raise PyquintError(f"{image} has {n_frames} time points: put {{slice_index}} in "
                           "--output-filename-format so that each gets its own file")
    path = export_filename(image, source, fmt, name_format, dataset_dir=out_dir)
    return frame_name(path, frame if n_frames > 1 else None)


def predict_tiled_files(
    classifier: Any,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    sources: Sequence[str] = ("Simple Segmentation",),
    formats: Sequence[str] = ("png",),
    overwrite: bool = False,
    tile: int | Sequence[int] = 2048,
    halo: int | None = None,
    n_workers: int | None = None,
    executor: Executor | None = None,
    palette: np.ndarray | None = None,
    axes: str | None = None,
    scale_level: int = 0,
    name_format: str | None = None,
    report: Callable[[str], None] | None = None,
) -> BatchResult:
    """Predict large images tile by tile into ``out_dir``, every source in every format.

    Parameters
    ----------
    classifier : PixelClassifier
        A trained 2-D classifier.
    inputs : sequence of paths
        Image files or folders (see :func:`predict_tiled` for what is read window by window).
    out_dir : path
        Output folder; files are named like ilastik's, ``{nickname}_{source}.{ext}``, with
        ``_t0000``, ``_t0001``, ... for each time point of a series.
    sources : sequence of str
        Export sources, all computed in one pass per image.
    formats : sequence of str
        Any of :data:`TILED_FORMATS`; "compressed hdf5" gzips HDF5 outputs (not together
        with "hdf5", which writes the same files).
    overwrite : bool
        Recompute outputs that exist (default: skip them).
    tile, halo, n_workers, executor, palette, axes, scale_level
        See :func:`predict_tiled`.
    name_format : str, optional
        ilastik's ``--output_filename_format``: ``{dataset_dir}`` (``out_dir``), ``{nickname}``,
        ``{result_type}`` and, for time series, ``{slice_index}`` (:func:`output_path`).
    report : callable, optional
        Receives one line per image (time point) predicted, with the seconds it took.

    Returns
    -------
    BatchResult
    """
    fmts = list(dict.fromkeys(normalize_format(f) for f in formats))
    bad = [f for f in fmts if f not in TILED_FORMATS]
    if bad:
        raise InputError(f"format(s) {bad} cannot be written tile by tile; use "
                         f"{', '.join(TILED_FORMATS)}")
    if "hdf5" in fmts and "compressed hdf5" in fmts:
        raise InputError("choose either hdf5 or compressed-hdf5 (both write .h5)")
    compression = "gzip" if "compressed hdf5" in fmts else None
    spec = ExportSpec(sources=tuple(sources), format=fmts[0], output_dir=out_dir,
                      overwrite=overwrite)
    n_frames: dict[Path, int] = {}

    def outputs(image: Path) -> dict[Any, Path]:
        n = n_frames[image] = frame_count(image, axes, scale_level)
        return {(t, s, f): output_path(image, s, f, out_dir, name_format, t, n)
                for t in range(n) for s in spec.sources for f in fmts}

    def work(image: Path, pending: dict[Any, Path]) -> list[Path]:
        written: list[Path] = []
        series = n_frames[image] > 1
        for t in sorted({key[0] for key in pending}):
            pairs = [(s, out) for (ft, s, _), out in pending.items() if ft == t]
            start = time.perf_counter()
            done = predict_tiled(classifier, image, pairs, tile=tile, halo=halo,
                                 n_workers=n_workers, executor=executor, palette=palette,
                                 compression=compression, axes=axes, scale_level=scale_level,
                                 frame=t if series else None)
            written.extend(done)
            if report is not None:
                what = f"{image} t={t}" if series else f"{image}"
                report(f"{what}: {time.perf_counter() - start:.1f} s -> "
                       + ", ".join(str(p) for p in done))
        return written

    return predict_files(classifier, inputs, spec, outputs=outputs, work=work, desc="images")
