"""Lazy window readers: read any ``[y0:y1, x0:x1]`` window of a 2-D image without loading it all.

Every reader presents the image in canonical ``yxc`` order (channel last, singleton ``t``/``z``
dropped) and is safe to share between threads. Readers are picklable: they pickle as the path
(never the pixels) and reopen the file on first use, so a Dask worker with access to the same
file system reads its own windows.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import (
    H5_SUFFIXES,
    TIFF_SUFFIXES,
    check_tiff_complete,
    guess_axes,
    parse_axistags,
    read_image,
    reorder_axes,
    split_h5_path,
)
from ..zarrio import is_zarr_path, open_zarr
from ._lazy import LazyImage
from ._tiff_frames import TiffFrameImage

__all__ = ["LazyImage", "ArrayImage", "open_lazy"]

# Decoded TIFF strips/tiles kept for neighbouring windows (tiles of one band share strips).
_SEGMENT_CACHE_BYTES = 256 * 1024 * 1024
_TIFF_AXES = {"Y": "y", "X": "x", "S": "c", "C": "c", "Z": "z", "T": "t", "Q": "z", "I": "z"}


class ArrayImage(LazyImage):
    """An in-memory (or memory-mapped) array seen through the reader interface."""

    def __init__(self, data: np.ndarray, axes: str | None = None, path: str | None = None,
                 frame: int | None = None) -> None:
        self.frame = frame
        data = data if isinstance(data, np.memmap) else np.asarray(data)
        if axes is None:
            axes = "yx" if data.ndim == 2 else guess_axes(data.shape)
        if len(axes) != data.ndim:
            raise InputError(f"axes {axes!r} do not match an array of {data.ndim} dimensions")
        self.path = path
        self._data = data
        self._set_layout(data.shape, axes.lower(), data.dtype)

    def _read_stored(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.asarray(self._data[self._stored_index(y0, y1, x0, x1)])


class NpyImage(LazyImage):
    """A ``.npy`` file, memory-mapped (only the pages of a window are read)."""

    def __init__(self, path: str | os.PathLike, axes: str | None = None,
                 frame: int | None = None) -> None:
        self.frame = frame
        self.path = os.fspath(path)
        self._axes_override = axes
        self._open()
        self._data = None  # reopened lazily; keeps pickles small and per-process

    def _open(self) -> np.ndarray:
        try:
            data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable .npy file ({exc})") from exc
        axes = self._axes_override or guess_axes(data.shape)
        if len(axes) != data.ndim:
            raise InputError(f"{self.path}: axes {axes!r} do not match its {data.ndim} dimensions")
        self._set_layout(data.shape, axes.lower(), data.dtype)
        return data

    def _read_stored(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self._data is None:
            self._data = self._open()
        return np.array(self._data[self._stored_index(y0, y1, x0, x1)])

    def close(self) -> None:
        self._data = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}


class H5Image(LazyImage):
    """An HDF5 dataset (``file.h5/dataset``); h5py reads only the chunks a window touches."""

    def __init__(self, path: str | os.PathLike, axes: str | None = None,
                 frame: int | None = None) -> None:
        self.frame = frame
        self._file, inner = split_h5_path(path)
        self._axes_override = axes
        self._lock = threading.Lock()
        self._h5: Any = None
        self._ds: Any = None
        self._inner = inner
        self._open()
        self.path = f"{self._file}/{self._inner}"

    def _open(self) -> Any:
        import h5py

        try:
            self._h5 = h5py.File(self._file, "r")
        except OSError as exc:
            raise InputError(f"{self._file}: not a readable HDF5 file ({exc})") from exc
        if self._inner is None:
            names: list[str] = []
            self._h5.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            if len(names) != 1:
                self.close()
                raise InputError(f"{self._file}: holds {len(names)} datasets; name one as "
                                 f"{self._file}/<dataset> ({', '.join(names[:5])})")
            self._inner = names[0]
        ds = self._h5.get(self._inner)
        if not isinstance(ds, h5py.Dataset):
            self.close()
            raise InputError(f"{self._file}: no dataset {self._inner!r}")
        tags = ds.attrs.get("axistags")
        axes = self._axes_override or (parse_axistags(tags) if tags is not None else guess_axes(ds.shape))
        if len(axes) != ds.ndim:
            axes = guess_axes(ds.shape)
        self.path = f"{self._file}/{self._inner}"
        if ds.size and ds.id.get_storage_size() == 0 and not ds.is_virtual and not ds.external:
            self.close()
            raise InputError(f"{self.path}: declares shape {ds.shape} but holds no pixel data "
                             "(nothing was written, or the writer was interrupted); re-export it")
        self._set_layout(ds.shape, axes.lower(), ds.dtype)
        self._ds = ds
        return ds

    def _read_stored(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        # h5py serialises calls through the HDF5 library lock anyway; the lock keeps the
        # lazy reopen single.
        with self._lock:
            if self._ds is None:
                self._open()
            return self._ds[self._stored_index(y0, y1, x0, x1)]

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
        self._h5 = self._ds = None

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_h5": None, "_ds": None}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class TiffImage(LazyImage):
    """The first series of a TIFF file, read strip by strip or tile by tile.

    Uncompressed contiguous images are memory-mapped. Otherwise only the strips/tiles that
    overlap a window are read and decoded (tifffile's decoders: none, deflate, LZW, PackBits
    without imagecodecs), with a small cache of decoded segments shared by neighbouring windows.
    """

    def __init__(self, path: str | os.PathLike, axes: str | None = None) -> None:
        self.path = os.fspath(path)
        self._axes_override = axes
        self._lock = threading.Lock()
        self._tif: Any = None
        self._page: Any = None
        self._memmap: np.ndarray | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._open()

    def _open(self) -> None:
        import tifffile

        try:
            tif = tifffile.TiffFile(self.path)
            series = tif.series[0]
            page = series.pages[0] if hasattr(series, "pages") else tif.pages[0]
            page = page.keyframe if hasattr(page, "keyframe") else page
            n_pages = len(series.pages) if hasattr(series, "pages") else 1
            check_tiff_complete(tif, Path(self.path))
        except InputError:
            tif.close()
            raise
        except Exception as exc:  # tifffile raises many types on corrupt files
            raise InputError(f"{self.path}: not a readable TIFF file ({exc})") from exc
        if n_pages != 1:
            tif.close()
            raise InputError(f"{self.path}: has {n_pages} pages; tile-by-tile prediction reads "
                             f"single-page 2-D TIFFs (yx or yxc)")
        page_axes = "".join(_TIFF_AXES.get(a, "?") for a in page.axes)
        if self._axes_override:
            axes = self._axes_override.lower()
        elif "?" in page_axes or len(set(page_axes)) != len(page_axes):
            axes = guess_axes(page.shape)
        else:
            axes = page_axes
        if len(axes) != len(page.shape):
            tif.close()
            raise InputError(f"{self.path}: axes {axes!r} do not match its shape {page.shape}")
        self._set_layout(page.shape, axes, page.dtype)
        self._tif, self._page = tif, page
        self._memmap = None
        if page.is_memmappable:
            try:
                self._memmap = page.asarray(out="memmap")
            except Exception:  # fall back to segment reads
                self._memmap = None
        self._planar = page.planarconfig == 2 and page.samplesperpixel > 1

    def _segment(self, index: int) -> np.ndarray:
        """Decoded strip/tile ``index`` as (length, width, samples), trimmed at the image edge."""
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            fh = self._tif.filehandle
            fh.seek(self._page.dataoffsets[index])
            raw = fh.read(self._page.databytecounts[index])
        data, _, _ = self._page.decode(raw, index)
        if data is None:
            raise InputError(f"{self.path}: segment {index} is empty or missing")
        seg = np.asarray(data)[0]  # (length, width, samples)
        with self._lock:
            self._cache[index] = seg
            self._cache_bytes += seg.nbytes
            while self._cache_bytes > _SEGMENT_CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
        return seg

    def _read_segments(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The window as ``yxc`` assembled from decoded strips/tiles."""
        page = self._page
        height, width, channels = self.shape
        if page.is_tiled:
            th, tw = page.tilelength, page.tilewidth
        else:
            th, tw = min(page.rowsperstrip or height, height), width
        n_ty, n_tx = -(-height // th), -(-width // tw)
        out = np.empty((y1 - y0, x1 - x0, channels), dtype=self.dtype)
        for plane in range(channels) if self._planar else [None]:
            for ty in range(y0 // th, (y1 - 1) // th + 1):
                for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                    index = ty * n_tx + tx + (plane or 0) * n_ty * n_tx
                    seg = self._segment(index)
                    sy0, sx0 = ty * th, tx * tw
                    a0, a1 = max(y0, sy0), min(y1, sy0 + th)
                    b0, b1 = max(x0, sx0), min(x1, sx0 + tw)
                    block = seg[a0 - sy0:a1 - sy0, b0 - sx0:b1 - sx0]
                    if plane is None:
                        out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = block
                    else:
                        out[a0 - y0:a1 - y0, b0 - x0:b1 - x0, plane] = block[..., 0]
        return out

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        h, w, _ = self.shape
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise InputError(f"window y {y0}:{y1}, x {x0}:{x1} is outside the image of shape {h}×{w}")
        with self._lock:
            if self._tif is None:
                self._open()
        if self._memmap is not None:
            window = np.asarray(self._memmap[self._stored_index(y0, y1, x0, x1)])
            return np.ascontiguousarray(reorder_axes(window, self.axes, "yxc"))
        return self._read_segments(y0, y1, x0, x1)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
        self._tif = self._page = self._memmap = None
        self._cache.clear()
        self._cache_bytes = 0

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_tif": None, "_page": None, "_memmap": None,
                 "_cache": OrderedDict(), "_cache_bytes": 0}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


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


def open_lazy(source: str | os.PathLike | np.ndarray | LazyImage, axes: str | None = None,
              *, scale_level: int = 0, frame: int | None = None) -> LazyImage:
    """Open an image for window-by-window reading.

    Parameters
    ----------
    source : path, ndarray or LazyImage
        HDF5 (``file.h5/dataset``, chunked or not), TIFF (tiled, stripped, compressed or
        not), ``.npy`` (memory-mapped), or an array (``yx``/``yxc``). Other formats (PNG, JPEG)
        cannot be read partially and are loaded whole.
    axes : str, optional
        Stored axes (e.g. ``"cyx"``) when the file does not say.
    scale_level : int
        Resolution level of an OME-Zarr image (``image.zarr``, read chunk by chunk; also
        plain zarr arrays).
    frame : int, optional
        The time point to read from a time series (HDF5, zarr, TIFF, ``.npy``, arrays); each frame
        is then a 2-D image of its own. ``n_frames`` tells how many there are.

    Returns
    -------
    LazyImage
    """
    if isinstance(source, LazyImage):
        return source
    if isinstance(source, np.ndarray):
        return ArrayImage(source, axes, frame=frame)
    if is_zarr_path(source):
        return ZarrImage(source, axes, scale_level, frame=frame)
    file, _ = split_h5_path(source)
    if not file.exists():
        raise InputError(f"{file}: no such file")
    if file.is_dir():
        raise InputError(f"{file}: is a folder, not an image")
    suffix = file.suffix.lower()
    if suffix in H5_SUFFIXES:
        return H5Image(source, axes, frame=frame)
    if suffix in TIFF_SUFFIXES:
        if frame is not None:  # a time point of a series (ImageJ hyperstack, OME-TIFF)
            return TiffFrameImage(file, axes, frame)
        return TiffImage(file, axes)
    if suffix == ".npy":
        return NpyImage(file, axes, frame=frame)
    data, stored_axes = read_image(source, axes)
    return ArrayImage(data, stored_axes, path=os.fspath(Path(source)), frame=frame)
