"""OME-Zarr / zarr for the tile path: a lazy window reader and a tile-by-tile writer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import PyquintError
from ..zarrio import (
    atomic_dir,
    create_levels,
    fill_levels,
    multiscales_metadata,
    open_zarr,
    split_zarr_path,
)
from ._readers import LazyImage
from ._writers import TileWriter

__all__ = ["OmeZarrTileWriter", "ZarrImage"]


class ZarrImage(LazyImage):
    """A 2-D zarr / OME-Zarr image (one resolution level); only the chunks a window touches
    are read. Pickles as its path and reopens the store on first use."""

    def __init__(self, path: str | os.PathLike, axes: str | None = None, scale_level: int = 0,
                 frame: int | None = None) -> None:
        self.frame = frame
        self.path = os.fspath(path)
        self._axes_override = axes
        self.scale_level = int(scale_level)
        self._array: Any = None
        self._open()

    def _open(self) -> Any:
        array, axes = open_zarr(self.path, self._axes_override, self.scale_level)
        self._set_layout(tuple(array.shape), axes, array.dtype)
        self._array = array
        return array

    def _read_stored(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        array = self._array if self._array is not None else self._open()
        return np.asarray(array[self._stored_index(y0, y1, x0, x1)])  # t, z are singletons

    def close(self) -> None:
        self._array = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}


class OmeZarrTileWriter(TileWriter):
    """An OME-Zarr 0.4 image (``cyx``) written tile by tile, straight into its chunks.

    Extra parameters: ``n_levels`` (resolution levels; extra ones are made from level 0 when
    the image is complete) and ``attrs`` (group attributes, e.g. ``drange``).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                 bands: Sequence[tuple[int, int]], *, n_levels: int = 1,
                 attrs: dict | None = None) -> None:
        from ..zarrio import _zarr

        super().__init__(path, shape, dtype, bands)
        # the base class prepared a temporary *file*; a zarr store is a folder
        with contextlib.suppress(PyquintError):
            self._atomic.__exit__(PyquintError, PyquintError("replaced"), None)
        store, _ = split_zarr_path(path)
        self._atomic = atomic_dir(store)
        self._tmp = self._atomic.__enter__()
        h, w, c = self.shape
        try:
            self._group = _zarr().open_group(str(self._tmp), mode="w", zarr_format=2)
            self._arrays = create_levels(self._group, (c, h, w), "cyx", self.dtype, n_levels)
            self._group.attrs["multiscales"] = multiscales_metadata("cyx", n_levels, store.stem)
            for key, value in (attrs or {}).items():
                self._group.attrs[key] = np.asarray(value).tolist()
        except BaseException:
            self.abort()
            raise
        self._filled = 0

    def _put_block(self, y0: int, x0: int, block: np.ndarray) -> None:
        h, w = block.shape[:2]
        self._arrays[0][:, y0:y0 + h, x0:x0 + w] = np.moveaxis(block, -1, 0)
        self._filled += h * w

    def _check_complete(self) -> None:
        if self._filled != self.shape[0] * self.shape[1]:
            raise PyquintError(f"{self.path}: image incomplete ({self._filled} of "
                               f"{self.shape[0] * self.shape[1]} pixels written)")

    def _finish(self) -> None:
        fill_levels(self._arrays, "cyx")
