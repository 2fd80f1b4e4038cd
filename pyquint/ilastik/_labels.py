"""Label blocks of ``PixelClassification/LabelSets``: axis rules of each ilastik version."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io import parse_axistags, reorder_axes

__all__ = ["LabelBlock", "block_axes", "canonical_axes", "format_block_slice", "parse_block_slice"]

_SLICE_RE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*$")
# Before 1.3.3post2 ilastik stored label blocks as 5-D ``txyzc`` whatever the raw data was.
_LEGACY_AXES = "txyzc"
_LEGACY_UNTIL = (1, 3, 3, 1, 2)  # 1.3.3post2
# 1.3.3post2 ... 1.4.0b7 stored blocks in the raw data's original order; later ones in the
# canonical Pixel Classification order (and with an ``axistags`` attribute).
_ORIGINAL_UNTIL = (1, 4, 0, -2, 8)  # 1.4.0b8


@dataclass(frozen=True)
class LabelBlock:
    """One stored label block, converted to the lane's canonical axes.

    Attributes
    ----------
    lane : int
        Lane (image) index, from ``labelsNNN``.
    name : str
        The dataset name, e.g. ``"block0003"``.
    data : ndarray
        uint8 labels (0 unlabelled, 1..N classes) in ``axes`` order.
    start, stop : tuple of int
        Position of ``data`` in the lane's image, per axis of ``axes`` (stop exclusive).
    axes : str
        Canonical Pixel Classification axes (``yxc``, ``zyxc``, ...).
    stored_axes : str
        Axes of the dataset as stored (from its ``axistags`` or the version's rule).
    stored_slice : str
        The ``blockSlice`` attribute exactly as stored.
    stored_axistags : str or None
        The ``axistags`` attribute exactly as stored, if any.
    """

    lane: int
    name: str
    data: np.ndarray
    start: tuple[int, ...]
    stop: tuple[int, ...]
    axes: str
    stored_axes: str
    stored_slice: str
    stored_axistags: str | None = None

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def counts(self, n_classes: int) -> np.ndarray:
        """Labelled pixels per class 1..n_classes."""
        return np.bincount(self.data.ravel(), minlength=n_classes + 1)[1 : n_classes + 1]


def parse_block_slice(text: str | bytes, source: object) -> list[tuple[int, int]]:
    """``"[0:10,5:7,0:1]"`` → ``[(0, 10), (5, 7), (0, 1)]``."""
    if isinstance(text, bytes):
        text = text.decode()
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise InputError(f"{source}: unreadable blockSlice {text!r}")
    out = []
    for part in body[1:-1].split(","):
        m = _SLICE_RE.match(part)
        if m is None or m.group(1) is None or m.group(2) is None:
            raise InputError(f"{source}: unreadable blockSlice {text!r}")
        a, b = int(m.group(1)), int(m.group(2))
        if a < 0 or b <= a:
            raise InputError(f"{source}: invalid range {a}:{b} in blockSlice {text!r}")
        out.append((a, b))
    return out


def format_block_slice(start: tuple[int, ...], stop: tuple[int, ...]) -> str:
    return "[" + ",".join(f"{a}:{b}" for a, b in zip(start, stop)) + "]"


def canonical_axes(original_axes: str, shape: tuple[int, ...] | None) -> str:
    """ilastik's Pixel Classification order for data stored with ``original_axes``: spatial and
    time axes in ``tzyx`` order, singleton ``t``/``z`` dropped (when the shape is known), ``c`` last."""
    sizes = dict(zip(original_axes, shape)) if shape is not None and len(shape) == len(original_axes) else {}
    keep = [a for a in "tzyx" if a in original_axes and (a in "yx" or sizes.get(a, 2) > 1)]
    if "y" not in keep:
        keep.insert(len(keep) - ("x" in keep), "y")
    if "x" not in keep:
        keep.append("x")
    return "".join(keep) + "c"


def block_axes(
    ndim: int,
    axistags: str | bytes | None,
    version: tuple[int, ...],
    lane_axes: str | None,
    lane_canonical: str | None,
    source: object,
    fits: Callable[[str], bool] | None = None,
) -> str:
    """The axes of a stored label block, by the rules of the ilastik version that wrote it.

    ``fits(axes)`` tells whether the block lies inside the lane's image when read with
    ``axes``; among the version's candidates of the right dimensionality the first that fits
    wins (ilastik 1.2.2 wrote 5-D blocks in the lane's own order, e.g. ``tzyxc``, not
    ``txyzc``).
    """
    if axistags is not None:
        axes = parse_axistags(axistags)
        if len(axes) == ndim:
            return axes
    candidates: list[str] = []
    if version < _LEGACY_UNTIL:
        candidates.append(_LEGACY_AXES)
    if version < _ORIGINAL_UNTIL:
        candidates += [a for a in (lane_axes, lane_canonical) if a]
    else:
        candidates += [a for a in (lane_canonical, lane_axes) if a]
    candidates.append(_LEGACY_AXES)
    sized = [a for a in candidates if len(a) == ndim]
    for axes in sized:
        if fits is None or fits(axes):
            return axes
    if sized:
        return sized[0]
    raise InputError(
        f"{source}: cannot tell the axes of a {ndim}-D label block (no axistags attribute, "
        f"and the lane's axes are {lane_axes!r})"
    )


def convert_block(
    lane: int,
    name: str,
    data: np.ndarray,
    slice_text: str,
    axistags: str | None,
    stored_axes: str,
    target: str,
    source: object,
) -> LabelBlock:
    """Reorder a stored block and its ``blockSlice`` to the canonical ``target`` axes."""
    ranges = parse_block_slice(slice_text, source)
    if len(ranges) != data.ndim:
        raise InputError(
            f"{source}: blockSlice {slice_text!r} has {len(ranges)} ranges for a "
            f"{data.ndim}-D block"
        )
    extent = tuple(b - a for a, b in ranges)
    if extent != data.shape:
        raise InputError(
            f"{source}: blockSlice {slice_text!r} spans {extent} but the block holds {data.shape}"
        )
    if data.dtype.kind not in "uib":
        raise InputError(f"{source}: label block has non-integer type {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise InputError(f"{source}: label values must be 0..255")
    by_axis = dict(zip(stored_axes, ranges))
    for a in stored_axes:
        if a not in target and by_axis[a] != (0, 1):
            raise InputError(
                f"{source}: block spans {by_axis[a]} on axis {a!r}, which the image does not have"
            )
    try:
        converted = reorder_axes(data, stored_axes, target)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    start = tuple(by_axis.get(a, (0, 1))[0] for a in target)
    stop = tuple(by_axis.get(a, (0, 1))[1] for a in target)
    return LabelBlock(
        lane=lane,
        name=name,
        data=np.ascontiguousarray(converted.astype(np.uint8, copy=False)),
        start=start,
        stop=stop,
        axes=target,
        stored_axes=stored_axes,
        stored_slice=slice_text,
        stored_axistags=axistags,
    )
