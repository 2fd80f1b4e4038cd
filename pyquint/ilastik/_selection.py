"""The feature selection stored in an ilastik project (``FeatureSelections`` group)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..features import FeatureSelection, parse_selection
from ._h5 import open_readonly

__all__ = ["load_feature_selection", "read_feature_selection", "selection_from_ilp"]


def selection_from_ilp(group: Any) -> FeatureSelection:
    """A :class:`FeatureSelection` from a project's ``FeatureSelections`` h5py group."""
    try:
        ids = [v.decode() if isinstance(v, bytes) else str(v) for v in group["FeatureIds"][()]]
        scales = tuple(float(s) for s in group["Scales"][()])
        matrix = group["SelectionMatrix"][()].astype(bool)
        c2d = group["ComputeIn2d"][()] if "ComputeIn2d" in group else None
    except KeyError as exc:
        raise InputError(f"the project's FeatureSelections group lacks {exc}") from exc
    return FeatureSelection(matrix, scales, tuple(ids), None if c2d is None or len(c2d) == 0 else tuple(c2d))


def read_feature_selection(path: str | os.PathLike) -> FeatureSelection:
    """The feature selection of the ``.ilp`` project at ``path`` (read only)."""
    try:
        with open_readonly(path) as f:
            if "FeatureSelections" not in f:
                raise InputError(f"{path}: no FeatureSelections group (not a Pixel Classification project?)")
            return selection_from_ilp(f["FeatureSelections"])
    except OSError as exc:
        raise InputError(f"{path}: not a readable ilastik project ({exc})") from exc


def load_feature_selection(spec: Any, *, option: str = "features") -> FeatureSelection:
    """:func:`pyquint.features.parse_selection` that also reads ``.ilp`` projects."""
    return parse_selection(spec, option=option, read_project=lambda p: read_feature_selection(Path(p)))
