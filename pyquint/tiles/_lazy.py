"""The base of the lazy window readers (:class:`LazyImage`) and its checks, shared by the
readers in ``_readers`` and ``_tiff_frames``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..io import reorder_axes

__all__ = ["LazyImage"]


def _canonical_order(axes: str, shape: tuple[int, ...], source: object) -> str:
    """Check that ``axes`` describe a 2-D image (other axes singleton) and return them."""
    for a, n in zip(axes, shape):
        if a in "tz" and n != 1:
            raise InputError(
                f"{source}: tile-by-tile prediction handles 2-D images (yx or yxc); this one "
                f"has {a}={n} (axes {axes!r}, shape {shape})"
            )
    if "y" not in axes or "x" not in axes:
        raise InputError(f"{source}: axes {axes!r} have no y and x")
    return axes


def _check_pixel_dtype(dtype: np.dtype, source: object) -> np.dtype:
    if dtype.kind not in "buif":
        raise InputError(f"{source}: unsupported pixel type {dtype}; use integer or float pixels")
    return dtype


class LazyImage:
    """A 2-D image read window by window.

    Subclasses implement :meth:`_read_stored`, which returns a window in the stored axis
    order; this class reorders it to ``yxc``.

    Attributes
    ----------
    shape : (int, int, int)
        ``(height, width, channels)``.
    dtype : numpy.dtype
        Pixel type as stored.
    path : str or None
        The file (``file.h5/dataset`` for HDF5), None for in-memory arrays.
    """

    path: str | None = None
    shape: tuple[int, int, int]
    dtype: np.dtype
    axes: str  # stored axes over tzyxc
    frame: int | None = None  # the time point read, for time series (None: no t > 1 allowed)
    n_frames: int = 1
    _window_axes: str  # axes of what _read_stored returns (t dropped when a frame is chosen)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The window ``[y0:y1, x0:x1]`` as a ``(y1-y0, x1-x0, C)`` array."""
        h, w, _ = self.shape
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise InputError(f"window y {y0}:{y1}, x {x0}:{x1} is outside the image of shape {h}×{w}")
        data = self._read_stored(y0, y1, x0, x1)
        return np.ascontiguousarray(reorder_axes(data, self._window_axes, "yxc"))

    def _stored_index(self, y0: int, y1: int, x0: int, x1: int) -> tuple[Any, ...]:
        index: list[Any] = []
        for a in self.axes:
            if a == "t" and self.frame is not None:
                index.append(self.frame)
            else:
                index.append(slice(y0, y1) if a == "y" else slice(x0, x1) if a == "x" else slice(None))
        return tuple(index)

    def _read_stored(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _set_layout(self, stored_shape: tuple[int, ...], axes: str, dtype: np.dtype) -> None:
        source = self.path or "array"
        size = dict(zip(axes, stored_shape))
        self._window_axes = axes
        if self.frame is not None:
            self.n_frames = int(size.get("t", 1))
            if not 0 <= self.frame < self.n_frames:
                raise InputError(f"{source}: time point {self.frame} does not exist "
                                 f"(t = 0..{self.n_frames - 1})")
            if "t" in axes:
                self._window_axes = axes.replace("t", "")
                _canonical_order(self._window_axes, tuple(n for a, n in zip(axes, stored_shape)
                                                          if a != "t"), source)
        if self._window_axes == axes:
            _canonical_order(axes, stored_shape, source)
        self.axes = axes
        self.dtype = _check_pixel_dtype(np.dtype(dtype), source)
        self.shape = (int(size["y"]), int(size["x"]), int(size.get("c", 1)))

    def close(self) -> None:
        """Release file handles (the reader reopens them if used again)."""

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, shape={self.shape}, dtype={self.dtype})"
