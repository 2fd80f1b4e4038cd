"""Axes strings over ``t z y x c`` (as in ilastik/vigra): checks, guesses, reordering and
vigra's ``axistags`` attribute. Re-exported by :mod:`pyquint.io`, where callers find them.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import InputError

__all__ = ["axistags_json", "guess_axes", "parse_axistags", "reorder_axes", "to_canonical"]

_VIGRA_FLAGS = {"c": 1, "x": 2, "y": 2, "z": 2, "t": 8}


def _check_axes(axes: str, ndim: int | None = None) -> str:
    axes = axes.lower()
    if not axes or any(a not in "tzyxc" for a in axes) or len(set(axes)) != len(axes):
        raise InputError(f"invalid axes {axes!r}: use distinct letters from 'tzyxc', e.g. 'yxc'")
    if "y" not in axes or "x" not in axes:
        raise InputError(f"axes {axes!r} must contain both 'y' and 'x'")
    if ndim is not None and len(axes) != ndim:
        raise InputError(f"axes {axes!r} have {len(axes)} letters but the data has {ndim} dimensions")
    return axes


def guess_axes(shape: tuple[int, ...]) -> str:
    """Guess axes from the number of dimensions, as ilastik does for HDF5 without axistags."""
    ndim = len(shape)
    if ndim == 2:
        return "yx"
    if ndim == 3:
        return "yxc" if shape[-1] <= 4 else "zyx"
    if ndim == 4:
        return "zyxc"
    if ndim == 5:
        return "tzyxc"
    raise InputError(f"cannot guess the axes of a {ndim}-D array of shape {shape}; give --axes")


def axistags_json(axes: str) -> str:
    """The vigra ``axistags`` attribute ilastik writes for ``axes``."""
    return json.dumps(
        {
            "axes": [
                {"key": a, "typeFlags": _VIGRA_FLAGS[a], "resolution": 0, "description": ""}
                for a in axes
            ]
        }
    )


def parse_axistags(text: str | bytes) -> str:
    """Axes letters from a vigra ``axistags`` JSON attribute."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        return "".join(a["key"] for a in json.loads(text)["axes"]).lower()
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable axistags attribute: {text[:80]!r}") from exc


def reorder_axes(data: np.ndarray, axes: str, target: str) -> np.ndarray:
    """Transpose ``data`` from ``axes`` to ``target``; missing axes are added as singletons
    and singleton axes absent from ``target`` are dropped."""
    axes, target = axes.lower(), target.lower()
    for a in axes:
        if a not in target:
            if data.shape[axes.index(a)] != 1:
                raise InputError(f"cannot drop non-singleton axis {a!r} of {axes!r} for {target!r}")
            data = data.take(0, axis=axes.index(a))
            axes = axes.replace(a, "")
    for a in target:
        if a not in axes:
            data = data[..., np.newaxis]
            axes += a
    return np.transpose(data, [axes.index(a) for a in target])


def to_canonical(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Reorder to ilastik's Pixel Classification order: ``yxc``, ``zyxc`` (``t`` first if >1)."""
    axes = _check_axes(axes, data.ndim)
    target = "".join(a for a in "tzyx" if a in axes and (data.shape[axes.index(a)] > 1 or a in "yx"))
    target += "c"
    return reorder_axes(data, axes, target), target
