"""A streaming PNG writer: rows in, bytes out, never the whole image in memory.

PNG (ISO/IEC 15948) is a signature followed by chunks ``length · type · data · CRC-32``.
This writer emits ``IHDR``, an optional ``PLTE`` (+ ``tRNS``), then the zlib-compressed
scanlines in as many ``IDAT`` chunks as the compressor produces, then ``IEND``. Each scanline
is prefixed by its filter byte; filter 0 ("None") is used, which is what palette images
should use and keeps label images byte-stable.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing import Self

__all__ = ["PNG_SIGNATURE", "PNGStreamWriter", "png_chunks"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour types by number of channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA); 3 is palette
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
_IDAT_TARGET = 1 << 20  # bytes of compressed data per IDAT chunk (any size is valid)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class ClosingWriter:
    """A writer as a context manager: finished by ``close()`` when its block ends normally,
    dropped by ``abort()`` when an exception leaves it."""

    def close(self) -> Any:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PNGStreamWriter(ClosingWriter):
    """Write a PNG band by band.

    Parameters
    ----------
    file : path or binary file object
        Destination (opened ``"wb"`` if a path; a file object is not closed).
    width, height : int
        Image size in pixels (1 … 2**31 − 1 each).
    channels : {1, 2, 3, 4}
        Grey, grey+alpha, RGB, RGBA. Must be 1 with ``palette``.
    bit_depth : {8, 16}
        Sample depth; rows must be uint8 or uint16 accordingly (palette images: 8).
    palette : array (n, 3) or (n, 4) of uint8, optional
        Writes an indexed-colour PNG (colour type 3) with this palette (n ≤ 256); a fourth
        column is written as the ``tRNS`` alpha table. Pixel values must be < n.
    compress_level : int
        zlib level 0–9.

    Examples
    --------
    >>> import io, numpy as np
    >>> buf = io.BytesIO()
    >>> with PNGStreamWriter(buf, width=4, height=3) as png:
    ...     png.write_rows(np.zeros((2, 4), np.uint8))
    ...     png.write_rows(np.ones((1, 4), np.uint8))
    >>> buf.getvalue()[:8] == PNG_SIGNATURE
    True
    """

    def __init__(
        self,
        file: str | os.PathLike | BinaryIO,
        width: int,
        height: int,
        *,
        channels: int = 1,
        bit_depth: int = 8,
        palette: np.ndarray | None = None,
        compress_level: int = 6,
    ) -> None:
        if not (0 < int(width) < 2**31 and 0 < int(height) < 2**31):
            raise InputError(f"PNG size {width}×{height} is outside 1 … 2^31−1")
        if channels not in _COLOUR_TYPES:
            raise InputError(f"a PNG holds 1–4 channels (grey, grey+alpha, RGB, RGBA), not {channels}")
        if bit_depth not in (8, 16):
            raise InputError(f"PNG bit depth must be 8 or 16, not {bit_depth}")
        if not 0 <= compress_level <= 9:
            raise InputError(f"compress_level must be 0–9, not {compress_level}")
        self.width, self.height = int(width), int(height)
        self.channels, self.bit_depth = int(channels), int(bit_depth)
        self._palette = None
        if palette is not None:
            pal = np.asarray(palette)
            if pal.ndim != 2 or pal.shape[1] not in (3, 4) or not 1 <= pal.shape[0] <= 256:
                raise InputError(f"a PNG palette is (n ≤ 256, 3 or 4) values, not shape {pal.shape}")
            if pal.dtype.kind not in "ui" or pal.min() < 0 or pal.max() > 255:
                raise InputError("palette values must be integers 0–255")
            if channels != 1 or bit_depth != 8:
                raise InputError("an indexed (palette) PNG has 1 channel of 8-bit indices")
            self._palette = pal.astype(np.uint8)
        self._dtype = np.dtype(">u2") if bit_depth == 16 else np.dtype(np.uint8)
        self._owns = not hasattr(file, "write")
        self._fh: BinaryIO = open(file, "wb") if self._owns else file  # type: ignore[arg-type]  # noqa: SIM115
        self._z = zlib.compressobj(compress_level)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.rows_written = 0
        self._closed = False
        self._start()

    # ---------------------------------------------------------------- chunks
    def _start(self) -> None:
        colour = 3 if self._palette is not None else _COLOUR_TYPES[self.channels]
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, self.bit_depth, colour, 0, 0, 0)
        self._fh.write(PNG_SIGNATURE + _chunk(b"IHDR", ihdr))
        if self._palette is not None:
            self._fh.write(_chunk(b"PLTE", self._palette[:, :3].tobytes()))
            if self._palette.shape[1] == 4:
                alpha = self._palette[:, 3]
                # tRNS may stop at the last non-opaque entry
                last = int(np.flatnonzero(alpha != 255).max(initial=-1)) + 1
                if last:
                    self._fh.write(_chunk(b"tRNS", alpha[:last].tobytes()))

    def _emit(self, data: bytes, force: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._pending_size += len(data)
        if self._pending_size >= _IDAT_TARGET or (force and self._pending_size):
            self._fh.write(_chunk(b"IDAT", b"".join(self._pending)))
            self._pending, self._pending_size = [], 0

    # ---------------------------------------------------------------- rows
    def write_rows(self, rows: np.ndarray) -> None:
        """Append ``rows`` (``(n, width)`` or ``(n, width, channels)``) below those written."""
        if self._closed:
            raise InputError("this PNG is already closed")
        rows = np.asarray(rows)
        if rows.ndim == 2 and self.channels == 1:
            rows = rows[..., np.newaxis]
        if rows.ndim != 3 or rows.shape[1:] != (self.width, self.channels):
            raise InputError(f"rows of shape {rows.shape} do not fit a PNG of width {self.width} "
                             f"with {self.channels} channel(s)")
        expected = np.uint16 if self.bit_depth == 16 else np.uint8
        if rows.dtype != expected:
            raise InputError(f"a {self.bit_depth}-bit PNG takes {np.dtype(expected)} rows, not {rows.dtype}")
        if self.rows_written + rows.shape[0] > self.height:
            raise InputError(f"too many rows: {self.rows_written + rows.shape[0]} > height {self.height}")
        if self._palette is not None and rows.size and int(rows.max()) >= len(self._palette):
            raise InputError(f"pixel value {int(rows.max())} has no palette entry "
                             f"(the palette has {len(self._palette)})")
        n = rows.shape[0]
        # One filter byte (0 = None) in front of every scanline.
        lines = np.zeros((n, 1 + self.width * self.channels * (self.bit_depth // 8)), np.uint8)
        lines[:, 1:] = rows.astype(self._dtype, copy=False).reshape(n, -1).view(np.uint8)
        self._emit(self._z.compress(lines.tobytes()))
        self.rows_written += n

    def close(self) -> None:
        """Finish the stream (all ``height`` rows must have been written)."""
        if self._closed:
            return
        if self.rows_written != self.height:
            self.abort()
            raise InputError(f"PNG incomplete: {self.rows_written} of {self.height} rows written")
        self._emit(self._z.flush(), force=True)
        self._fh.write(_chunk(b"IEND", b""))
        self._closed = True
        if self._owns:
            self._fh.close()

    def abort(self) -> None:
        """Stop without finishing the file (the caller removes it)."""
        self._closed = True
        if self._owns:
            self._fh.close()


def png_chunks(path: str | os.PathLike) -> list[tuple[bytes, bytes, bool]]:
    """List a PNG's chunks as ``(type, data, crc_ok)`` (for checks; reads the whole file)."""
    raw = Path(path).read_bytes()
    if raw[:8] != PNG_SIGNATURE:
        raise InputError(f"{path}: not a PNG (bad signature)")
    out, pos = [], 8
    while pos < len(raw):
        if pos + 8 > len(raw):
            raise InputError(f"{path}: truncated chunk header at byte {pos}")
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        kind = raw[pos + 4:pos + 8]
        data = raw[pos + 8:pos + 8 + length]
        crc_bytes = raw[pos + 8 + length:pos + 12 + length]
        if len(data) != length or len(crc_bytes) != 4:
            raise InputError(f"{path}: truncated {kind!r} chunk at byte {pos}")
        out.append((kind, data, struct.unpack(">I", crc_bytes)[0] == zlib.crc32(kind + data)))
        pos += 12 + length
    return out
