"""Features over files, as ``pyquint features compute`` runs them (the CLI only prints)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import collect_inputs, guard_outputs, progress
from ..io import read_image, to_canonical, write_image
from ..naming import nickname
from ._compute import EXPORT_ROUNDING, compute_features
from ._selection import FeatureSelection, feature_names

__all__ = ["FeatureFilesResult", "compute_files"]


@dataclass
class FeatureFilesResult:
    """What :func:`compute_files` did: the outputs written now and the inputs skipped."""

    written: list[Path] = field(default_factory=list)
    skipped: int = 0


def compute_files(images: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  selection: FeatureSelection | None = None, *, axes: str | None = None,
                  rounding: str = EXPORT_ROUNDING, n_jobs: int | None = None,
                  compression: str | None = None, overwrite: bool = False) -> FeatureFilesResult:
    """ilastik's features of images (files or folders) into ``out_dir/{nickname}_Features.h5``.

    Each output holds ``exported_data`` (float32, channels last, as ilastik's "Features"
    export) with the vigra ``axistags`` attribute and a ``feature_names`` attribute.
    Existing outputs are skipped unless ``overwrite`` (an interrupted batch resumes).

    Parameters
    ----------
    images : sequence of paths
    out_dir : path
    selection : FeatureSelection, optional
        Default :meth:`FeatureSelection.all`.
    axes : str, optional
        Axes of the inputs when their files do not record them (e.g. ``"cyx"``).
    rounding, n_jobs
        As :func:`compute_features`.
    compression : {None, "gzip", "lzf"}
        HDF5 compression of the outputs.
    """
    selection = selection if selection is not None else FeatureSelection.all()
    inputs = collect_inputs(images)
    outputs = [Path(out_dir) / f"{nickname(p)}_Features.h5" for p in inputs]
    guard_outputs(inputs, outputs)
    result = FeatureFilesResult()
    for src, dst in progress(list(zip(inputs, outputs)), desc="features"):
        if dst.exists() and not overwrite:
            result.skipped += 1
            continue
        data, data_axes = read_image(src, axes)
        data, canon = to_canonical(data, data_axes)
        feats = compute_features(data, selection, axes=canon, rounding=rounding, n_jobs=n_jobs)
        nd = len(canon.replace("c", "").replace("t", ""))
        names = feature_names(selection, data.shape[-1], nd) if nd in (2, 3) else []
        write_image(f"{dst}/exported_data", feats, canon, attrs={"feature_names": names},
                    compression=compression)
        result.written.append(dst)
    return result
