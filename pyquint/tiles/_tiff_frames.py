"""One time point of a TIFF time series (ImageJ hyperstack with frames, OME-TIFF with ``T``).

A TIFF series stores one 2-D plane (with or without samples) per page; the time axis (and any
channel planes) runs over the pages. A reader for frame ``k`` picks that frame's pages only.
Uncompressed contiguous series are memory-mapped, so a window reads only its own pixels;
other series decode the frame's pages once, on first use (one frame in memory, never the
whole series).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import check_tiff_complete, guess_axes
from ._lazy import LazyImage

__all__ = ["TiffFrameImage", "tiff_series_axes"]

_TIFF_AXES = {"Y": "y", "X": "x", "S": "c", "C": "c", "Z": "z", "T": "t", "Q": "z", "I": "z"}


def tiff_series_axes(tiff_axes: str, shape: tuple[int, ...]) -> str:
    """tifffile's series axes (``TZCYXS`` letters) as pyquint axes, guessed when unmappable."""
    axes = "".join(_TIFF_AXES.get(a, "?") for a in tiff_axes)
    if "?" in axes or len(set(axes)) != len(axes):
        return guess_axes(shape)
    return axes


class TiffFrameImage(LazyImage):
    """Time point ``frame`` of the first series of a TIFF file, read window by window.

    Parameters
    ----------
    path : str or path-like
        The TIFF file.
    axes : str, optional
        Axes of the series (e.g. ``"tyx"``) instead of the file's metadata.
    frame : int
        The time point (0 for a file without ``t``).
    """

    def __init__(self, path: str | os.PathLike, axes: str | None = None, frame: int = 0) -> None:
        self.path = os.fspath(path)
        self.frame = int(frame)
        self._axes_override = axes
        self._lock = threading.Lock()
        self._tif: Any = None
        self._data: np.ndarray | None = None
        self._open()

    def _open(self) -> None:
        import tifffile

        try:
            tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # tifffile raises many types on corrupt files
            raise InputError(f"{self.path}: not a readable TIFF file ({exc})") from exc
        try:
            series = tif.series[0]
            check_tiff_complete(tif, Path(self.path))
            shape = tuple(series.shape)
            axes = (self._axes_override.lower() if self._axes_override
                    else tiff_series_axes(series.axes, shape))
            if len(axes) != len(shape):
                raise InputError(f"{self.path}: axes {axes!r} do not match its shape {shape}")
            self._set_layout(shape, axes, series.dtype)
            page_ndim = len(series.keyframe.shape)
            lead = shape[:len(shape) - page_ndim]
            if shape[len(lead):] != tuple(series.keyframe.shape) or \
                    int(np.prod(lead, dtype=np.int64)) != len(series.pages):
                raise InputError(f"{self.path}: its pages do not tile the series {shape}; "
                                 "convert it to HDF5 or zarr")
            if "t" in axes and axes.index("t") >= len(lead):
                raise InputError(f"{self.path}: t must run over the pages (axes {axes!r})")
        except InputError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            raise InputError(f"{self.path}: not a readable TIFF file ({exc})") from exc
        self._tif, self._lead = tif, lead
        self._memmap: np.ndarray | None = None
        try:
            self._memmap = tifffile.memmap(self.path, series=0, mode="r")
            if self._memmap.shape != shape:
                self._memmap = None
        except Exception:  # compressed or not contiguous: decode the frame's pages instead
            self._memmap = None

    def _frame_data(self) -> np.ndarray:
        """The frame in the stored axis order without ``t``, decoded page by page."""
        if self._data is None:
            pages = np.arange(len(self._tif.series[0].pages)).reshape(self._lead or (1,))
            if "t" in self.axes:
                pages = np.take(pages, self.frame, axis=self.axes.index("t"))
            series = self._tif.series[0]
            planes = [np.asarray(series.pages[int(i)].asarray()) for i in pages.ravel()]
            shape = tuple(n for a, n in zip(self.axes, self._stored_shape) if a != "t")
            self._data = np.stack(planes).reshape(shape)
        return self._data

    @property
    def _stored_shape(self) -> tuple[int, ...]:
        return tuple(self._tif.series[0].shape)

    def _read_stored(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        with self._lock:
            if self._tif is None:
                self._open()
            if self._memmap is not None:
                return np.array(self._memmap[self._stored_index(y0, y1, x0, x1)])
            data = self._frame_data()
        index = tuple(i for a, i in zip(self.axes, self._stored_index(y0, y1, x0, x1)) if a != "t")
        return np.array(data[index])

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
        self._tif = self._memmap = self._data = None

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_tif": None, "_memmap": None, "_data": None}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
