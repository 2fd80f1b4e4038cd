"""Streaming writers: an image arrives tile by tile, in any order; memory stays bounded.

- :class:`H5TileWriter` writes each tile straight into a chunked HDF5 dataset (ilastik's
  export layout: ``exported_data`` + ``axistags`` + ``drange``).
- :class:`TiffTileWriter` and :class:`PNGTileWriter` need rows in order: tiles are gathered
  into horizontal bands (one row of compute tiles); a band is flushed as soon as it and every
  band above it are complete, then dropped.

All writers write to a temporary file beside the target and rename it only when the image is
complete (:func:`pyquint.io.atomic_output`); :meth:`TileWriter.abort` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PyquintError
from ..io import H5_SUFFIXES, TIFF_SUFFIXES, atomic_output, axistags_json, split_h5_path
from ..zarrio import (
    _zarr,
    atomic_dir,
    create_levels,
    fill_levels,
    multiscales_metadata,
    split_zarr_path,
)
from ._png import ClosingWriter, PNGStreamWriter

__all__ = ["TileWriter", "H5TileWriter", "TiffTileWriter", "PNGTileWriter", "open_writer", "FORMATS"]

FORMATS = {"hdf5": ".h5", "tiff": ".tif", "png": ".png"}
_TIFF_TILE = 512  # TIFF tile edge (a multiple of 16, as TIFF requires)


class TileWriter(ClosingWriter):
    """Base class: receives ``(y0, x0, block)`` tiles of an ``(H, W, C)`` image.

    Parameters
    ----------
    path : path
        Target file.
    shape : (int, int, int)
        ``(height, width, channels)`` of the whole image.
    dtype : dtype
        Pixel type of every block.
    bands : sequence of (int, int)
        Row ranges of the compute tiles (consecutive, covering ``0..height``): the writer
        flushes band by band.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                 bands: Sequence[tuple[int, int]]) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.bands = [(int(a), int(b)) for a, b in bands]
        if not self.bands or self.bands[0][0] != 0 or self.bands[-1][1] != self.shape[0] or any(
                self.bands[i][1] != self.bands[i + 1][0] for i in range(len(self.bands) - 1)):
            raise ValueError(f"bands {bands!r} do not tile 0..{self.shape[0]}")
        self._band_of = {start: i for i, (start, _) in enumerate(self.bands)}
        self._buffers: dict[int, list[Any]] = {}  # band index -> [array, filled pixels]
        self._next_band = 0
        self._atomic = atomic_output(split_h5_path(path)[0])
        self._tmp: Path = self._atomic.__enter__()
        self._done = False

    # subclasses override ---------------------------------------------------
    def _put_block(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Default: gather into bands, flush complete bands in order."""
        band = self._band_of.get(y0)
        b0, b1 = self.bands[band] if band is not None else (None, None)
        if band is None or y0 + block.shape[0] > b1:
            raise ValueError(f"tile at row {y0} with {block.shape[0]} rows does not match the bands")
        if band not in self._buffers:
            self._buffers[band] = [np.empty((b1 - b0,) + self.shape[1:], self.dtype), 0]
        entry = self._buffers[band]
        entry[0][:, x0:x0 + block.shape[1]] = block
        entry[1] += block.shape[1]
        while self._next_band in self._buffers and self._buffers[self._next_band][1] == self.shape[1]:
            self._write_band(self._buffers.pop(self._next_band)[0])
            self._next_band += 1

    def _write_band(self, rows: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Release handles after an error (before the temporary file is removed)."""

    def _check_complete(self) -> None:
        if self._buffers or self._next_band != len(self.bands):
            raise PyquintError(f"{self.path}: image incomplete, {len(self.bands) - self._next_band} "
                               f"band(s) of rows missing")

    # public -----------------------------------------------------------------
    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Write ``block`` (``(h, w, C)``, the writer's dtype) with its corner at ``(y0, x0)``.

        A block spans exactly one band's rows; blocks of a band must not overlap.
        """
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[..., np.newaxis]
        if block.shape[2] != self.shape[2] or y0 + block.shape[0] > self.shape[0] or \
                x0 + block.shape[1] > self.shape[1] or y0 < 0 or x0 < 0:
            raise ValueError(f"block {block.shape} at ({y0}, {x0}) does not fit {self.shape}")
        self._put_block(int(y0), int(x0), block.astype(self.dtype, copy=False))

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._done:
            return Path(self.path)
        try:
            self._check_complete()
            self._finish()
        except BaseException as exc:
            self._cleanup()
            self._done = True
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._done = True
        self._atomic.__exit__(None, None, None)
        return Path(self.path)

    def abort(self) -> None:
        """Give up: close handles and remove the temporary file."""
        if self._done:
            return
        self._done = True
        self._cleanup()
        with contextlib.suppress(PyquintError):
            self._atomic.__exit__(PyquintError, PyquintError("aborted"), None)


class H5TileWriter(TileWriter):
    """Chunked HDF5 in ilastik's export layout; tiles go straight to disk.

    Extra parameters: ``dataset`` (default ``exported_data``), ``attrs`` (e.g. ``drange``),
    ``compression`` (``None`` or ``"gzip"``, level 1 as ilastik's "compressed hdf5").
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                 bands: Sequence[tuple[int, int]], *, dataset: str | None = None,
                 attrs: dict | None = None, compression: str | None = None) -> None:
        import h5py

        super().__init__(path, shape, dtype, bands)
        inner = dataset or split_h5_path(path)[1] or "exported_data"
        # ilastik chunks hold one channel and about 512 kB
        side = max(64, int((512 * 1024 / self.dtype.itemsize) ** 0.5) // 64 * 64)
        chunks = (min(side, self.shape[0]), min(side, self.shape[1]), 1)
        try:
            self._f = h5py.File(self._tmp, "w")
            self._ds = self._f.create_dataset(
                inner, shape=self.shape, dtype=self.dtype, chunks=chunks,
                compression="gzip" if compression else None,
                compression_opts=1 if compression else None)
            self._ds.attrs["axistags"] = axistags_json("yxc")
            for i, a in enumerate("yxc"):
                self._ds.dims[i].label = a
            for key, value in (attrs or {}).items():
                self._ds.attrs[key] = value
        except BaseException:
            self.abort()
            raise
        self._filled = 0

    def _put_block(self, y0: int, x0: int, block: np.ndarray) -> None:
        self._ds[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block
        self._filled += block.shape[0] * block.shape[1]

    def _check_complete(self) -> None:
        if self._filled != self.shape[0] * self.shape[1]:
            raise PyquintError(f"{self.path}: image incomplete ({self._filled} of "
                               f"{self.shape[0] * self.shape[1]} pixels written)")

    def _finish(self) -> None:
        self._f.close()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()


class PNGTileWriter(TileWriter):
    """A PNG written band by band with :class:`PNGStreamWriter` (grey, GA, RGB, RGBA or palette)."""

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                 bands: Sequence[tuple[int, int]], *, palette: np.ndarray | None = None,
                 compress_level: int = 6) -> None:
        super().__init__(path, shape, dtype, bands)
        if self.dtype not in (np.uint8, np.uint16):
            self.abort()
            raise InputError(f"{path}: PNG holds uint8 or uint16 pixels, not {self.dtype}")
        try:
            self._png = PNGStreamWriter(self._tmp, self.shape[1], self.shape[0], channels=self.shape[2],
                                        bit_depth=8 * self.dtype.itemsize, palette=palette,
                                        compress_level=compress_level)
        except BaseException:
            self.abort()
            raise

    def _write_band(self, rows: np.ndarray) -> None:
        self._png.write_rows(rows)

    def _finish(self) -> None:
        self._png.close()

    def _cleanup(self) -> None:
        if hasattr(self, "_png"):
            self._png.abort()


class TiffTileWriter(TileWriter):
    """A tiled TIFF (512 × 512 tiles, deflate by default) fed to tifffile from a thread.

    tifffile pulls tiles from an iterator in row-major order; bands are cut into TIFF tile
    rows, a partial tile row waiting for the next band. ``palette`` (n × 3 uint8) makes a
    palette-colour TIFF (uint8 indices + colormap).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                 bands: Sequence[tuple[int, int]], *, palette: np.ndarray | None = None,
                 compression: str | None = "zlib", tile: int = _TIFF_TILE) -> None:
        import tifffile

        super().__init__(path, shape, dtype, bands)
        if tile % 16:
            self.abort()
            raise InputError(f"TIFF tiles must be a multiple of 16 pixels, not {tile}")
        self._tile = tile
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._carry: np.ndarray | None = None
        self._error: BaseException | None = None
        h, w, c = self.shape
        kwargs: dict[str, Any] = {"photometric": "minisblack"}
        if palette is not None:
            pal = np.asarray(palette, dtype=np.uint16)
            if self.dtype != np.uint8 or c != 1 or pal.ndim != 2 or pal.shape[1] < 3:
                self.abort()
                raise InputError("a palette TIFF needs 1-channel uint8 data and an (n, 3) palette")
            cmap = np.zeros((3, 256), np.uint16)
            cmap[:, :min(256, len(pal))] = pal[:256, :3].T * 257  # TIFF colormaps are 16-bit
            kwargs = {"photometric": "palette", "colormap": cmap}
        shape_out = (h, w) if c == 1 else (h, w, c)
        if c > 1:
            kwargs["planarconfig"] = "contig"
            kwargs["metadata"] = {"axes": "YXS"}

        def run() -> None:
            try:
                tifffile.imwrite(self._tmp, self._tiles(), shape=shape_out, dtype=self.dtype,
                                 tile=(tile, tile), compression=compression, **kwargs)
            except BaseException as exc:  # reported on the next write or close
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"tiff-writer {Path(path).name}", daemon=True)
        self._thread.start()

    def _tiles(self) -> Iterator[np.ndarray]:
        t, c = self._tile, self.shape[2]
        while True:
            rows = self._queue.get()
            if rows is None:  # abort
                raise PyquintError("TIFF writing aborted")
            final = rows.shape[0] == 0
            pending = rows if self._carry is None else np.concatenate([self._carry, rows])
            n_full = pending.shape[0] // t * t
            stop = pending.shape[0] if final else n_full
            for y in range(0, stop, t):
                for x in range(0, self.shape[1], t):
                    block = pending[y:y + t, x:x + t]
                    yield block[..., 0] if c == 1 else block
            self._carry = None if final else pending[n_full:]
            if final:
                return

    def _put_rows(self, rows: np.ndarray) -> None:
        while True:
            if self._error is not None:
                raise PyquintError(f"{self.path}: TIFF writer failed: {self._error}") from self._error
            try:
                self._queue.put(rows, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise PyquintError(f"{self.path}: TIFF writer stopped") from self._error

    def _write_band(self, rows: np.ndarray) -> None:
        self._put_rows(np.ascontiguousarray(rows))

    def _finish(self) -> None:
        self._put_rows(np.empty((0,) + self.shape[1:], self.dtype))
        self._thread.join()
        if self._error is not None:
            raise PyquintError(f"{self.path}: TIFF writer failed: {self._error}") from self._error

    def _cleanup(self) -> None:
        if hasattr(self, "_thread") and self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                while True:  # drain, then tell the generator to stop
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._queue.put(None, timeout=5)
            self._thread.join(timeout=30)


class OmeZarrTileWriter(TileWriter):
    """An OME-Zarr 0.4 image (``cyx``) written tile by tile, straight into its chunks.

    Extra parameters: ``n_levels`` (resolution levels; extra ones are made from level 0 when
    the image is complete) and ``attrs`` (group attributes, e.g. ``drange``).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                 bands: Sequence[tuple[int, int]], *, n_levels: int = 1,
                 attrs: dict | None = None) -> None:
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


def open_writer(path: str | os.PathLike, shape: tuple[int, int, int], dtype: Any,
                bands: Sequence[tuple[int, int]], *, palette: np.ndarray | None = None,
                attrs: dict | None = None, compression: str | None = None) -> TileWriter:
    """A :class:`TileWriter` chosen by the file suffix (``.h5``, ``.tif(f)``, ``.png``,
    ``.zarr`` for OME-Zarr).

    ``compression``: ``None`` (HDF5 uncompressed, TIFF deflate), ``"gzip"``/``"zlib"`` (both
    deflate-compressed; HDF5 at gzip level 1 as ilastik) or ``"none"`` (neither).
    ``palette`` applies to PNG and TIFF; ``attrs`` to HDF5.
    """
    if compression not in (None, "none", "gzip", "zlib", "deflate"):
        raise InputError(f"unknown compression {compression!r}; use none, gzip or zlib")
    file, _ = split_h5_path(path)
    suffix = file.suffix.lower()
    if suffix in H5_SUFFIXES:
        h5_compression = "gzip" if compression in ("gzip", "zlib", "deflate") else None
        return H5TileWriter(path, shape, dtype, bands, attrs=attrs, compression=h5_compression)
    if suffix in TIFF_SUFFIXES:
        return TiffTileWriter(path, shape, dtype, bands, palette=palette,
                              compression=None if compression == "none" else "zlib")
    if suffix == ".png":
        return PNGTileWriter(path, shape, dtype, bands, palette=palette)
    if suffix == ".zarr":
        return OmeZarrTileWriter(path, shape, dtype, bands, attrs=attrs)
    raise InputError(f"{path}: cannot stream {suffix!r}; use .png, .tif(f), .h5 or .zarr")
