"""The :class:`Lut` type and every LUT file format ImageJ 1.x reads.

ImageJ's ``LutLoader`` decides the format from the file size, in this order:

1. files over 10000 bytes are rejected;
2. larger than 768 bytes: an NIH Image LUT (32-byte big-endian header starting with
   ``ICOL``, then ``nColors`` reds, greens, blues; fewer than 256 colours are linearly
   interpolated to 256);
3. exactly 768 or 970 bytes: raw planes, 256 reds then 256 greens then 256 blues (of a
   970-byte file only the first 768 bytes count);
4. larger than 768 bytes and not NIH: a text table (ImageJ's ``TextReader``: tokens split
   on whitespace, commas and tabs) of 3 or 4 columns and 256 to 258 rows; a first row of
   words only is a header and dropped, then with 4 columns the first (index) column is
   dropped and with more than 256 rows the first row is dropped.

pyquint follows the same order but is stricter where ImageJ silently produces a wrong
table: non-integer or out-of-range text values, truncated NIH files and impossible colour
counts are errors naming the file.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output

# Package data (pyproject: package-data), pyquint's own LUT files; a real folder for every
# non-zip install.
PYQUINT_LUT_DIR = Path(os.fspath(importlib.resources.files("pyquint.lut").joinpath("tables")))

__all__ = [
    "LUT_SUFFIX",
    "MAX_LUT_BYTES",
    "Lut",
    "interpolate_colors",
    "lut_from_bytes",
    "read_lut",
    "write_lut",
]

MAX_LUT_BYTES = 10000  # ImageJ refuses larger files
LUT_SUFFIX = ".lut"
_ICOL = 0x49434F4C  # 'ICOL', the NIH Image LUT signature
_NIH_HEADER = 32
# ImageJ's TextReader: characters 0..42 ('*' and below) and ',' separate tokens.
_TEXT_SPLIT = re.compile(r"[\x00-\x2a,\x80-\xff]+")


@dataclass(frozen=True, eq=False)
class Lut:
    """An ImageJ lookup table: 256 RGB colours and a name.

    Parameters
    ----------
    name : str
        Display name (ImageJ shows ``glasbey_on_dark.lut`` as "glasbey on dark").
    table : ndarray of uint8, shape (256, 3)
        Row ``i`` is the colour of pixel value ``i``. Copied and made read-only.
    """

    name: str
    table: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        table = np.asarray(self.table)
        if table.shape != (256, 3):
            raise InputError(f"LUT {self.name!r}: table must have shape (256, 3), not {table.shape}")
        if table.dtype != np.uint8:
            if not np.issubdtype(table.dtype, np.number) or np.any(table != np.round(table)):
                raise InputError(f"LUT {self.name!r}: colours must be integers 0..255")
            if table.min() < 0 or table.max() > 255:
                raise InputError(f"LUT {self.name!r}: colours must be within 0..255")
        table = np.array(table, dtype=np.uint8, copy=True)
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    # ImageJ's getReds()/getGreens()/getBlues()
    @property
    def reds(self) -> np.ndarray:
        return self.table[:, 0]

    @property
    def greens(self) -> np.ndarray:
        return self.table[:, 1]

    @property
    def blues(self) -> np.ndarray:
        return self.table[:, 2]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lut):
            return NotImplemented
        return self.name == other.name and np.array_equal(self.table, other.table)

    def __hash__(self) -> int:
        return hash((self.name, self.table.tobytes()))

    def __len__(self) -> int:
        return 256

    def color(self, index: int) -> tuple[int, int, int]:
        """The ``(r, g, b)`` colour of pixel value ``index``."""
        if not 0 <= int(index) <= 255:
            raise InputError(f"LUT index {index} is outside 0..255")
        r, g, b = (int(v) for v in self.table[int(index)])
        return r, g, b

    def with_colors(
        self, colors: Mapping[int, tuple[int, int, int]], name: str | None = None
    ) -> Lut:
        """A copy with some entries replaced, e.g. ``{2: (255, 0, 0), 1: (0, 0, 0)}``.

        Parameters
        ----------
        colors : mapping of int to (r, g, b)
            Index 0..255 to its new colour, each component an integer 0..255.
        name : str, optional
            Name of the new LUT (default: this LUT's name + ``"_custom"``).
        """
        table = self.table.copy()
        for index, rgb in colors.items():
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index <= 255:
                raise InputError(f"LUT index {index!r} must be an integer 0..255")
            table[int(index)] = _check_rgb(rgb, f"colour for index {index}")
        return Lut(name if name is not None else f"{self.name}_custom", table)

    def to_bytes(self) -> bytes:
        """The 768-byte raw form (256 reds, 256 greens, 256 blues), as ImageJ saves a LUT."""
        return np.ascontiguousarray(self.table.T).tobytes()

    def to_text(self, header: bool = True) -> str:
        """A tab-separated text table ``index r g b`` (like Fiji's glasbey.lut)."""
        lines = ["Index\tRed\tGreen\tBlue"] if header else []
        lines += [f"{i}\t{r}\t{g}\t{b}" for i, (r, g, b) in enumerate(self.table.tolist())]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_planes(cls, name: str, reds, greens, blues) -> Lut:
        """Build from three 256-element arrays, like ImageJ's ``new LUT(r, g, b)``."""
        planes = [np.asarray(p) for p in (reds, greens, blues)]
        if any(p.shape != (256,) for p in planes):
            raise InputError("reds, greens and blues must each have 256 entries")
        return cls(name, np.stack(planes, axis=1))


def _check_rgb(rgb, what: str) -> np.ndarray:
    try:
        values = [int(v) for v in rgb]
        exact = all(float(v) == int(v) for v in rgb)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {rgb!r} is not an (r, g, b) triplet of integers") from None
    if len(values) != 3 or not exact:
        raise InputError(f"{what}: {rgb!r} is not an (r, g, b) triplet of integers")
    if any(not 0 <= v <= 255 for v in values):
        raise InputError(f"{what}: {tuple(values)} has a component outside 0..255")
    return np.array(values, dtype=np.uint8)


def interpolate_colors(colors: np.ndarray) -> np.ndarray:
    """Stretch ``n`` < 256 colours to 256 entries exactly as ImageJ's ``LutLoader.interpolate``.

    Entry ``i`` mixes colours ``floor(i*n/256)`` and the next one linearly; the result is
    truncated toward zero (Java's ``(byte)`` cast of a double).
    """
    colors = np.asarray(colors, dtype=np.float64)
    n = colors.shape[0]
    if not 1 <= n <= 256:
        raise InputError(f"cannot interpolate {n} colours to 256")
    scale = n / 256.0
    pos = np.arange(256) * scale
    i1 = pos.astype(np.int64)
    i2 = np.minimum(i1 + 1, n - 1)
    frac = (pos - i1)[:, None]
    mixed = (1.0 - frac) * colors[i1] + frac * colors[i2]
    return np.trunc(mixed).astype(np.uint8)


# --------------------------------------------------------------------------- reading
def _name_from_path(path: Path) -> str:
    name = path.name
    return name[: -len(LUT_SUFFIX)] if name.lower().endswith(LUT_SUFFIX) else path.stem


def _read_nih(data: bytes, source: str) -> np.ndarray | None:
    """The NIH Image ``ICOL`` format, or None when the signature is absent."""
    if len(data) < _NIH_HEADER or int.from_bytes(data[:4], "big") != _ICOL:
        return None
    n_colors = int.from_bytes(data[6:8], "big", signed=True)
    if not 1 <= n_colors <= 256:
        raise InputError(f"{source}: NIH Image LUT declares {n_colors} colours; 1..256 are possible")
    body = data[_NIH_HEADER:]
    if len(body) < 3 * n_colors:
        raise InputError(
            f"{source}: NIH Image LUT is truncated: {n_colors} colours need {3 * n_colors} bytes "
            f"after the header, the file has {len(body)}"
        )
    planes = np.frombuffer(body[: 3 * n_colors], dtype=np.uint8).reshape(3, n_colors).T
    return interpolate_colors(planes) if n_colors < 256 else planes.copy()


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse_number(token: str) -> float:
    """A decimal number as Java's parseDouble reads it, else NaN (as ImageJ's TextReader)."""
    return float(token) if _NUMBER.fullmatch(token) else float("nan")


def _read_text(data: bytes, source: str) -> np.ndarray:
    """A text table as ImageJ's TextReader + LutLoader.openTextLut read it."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes any byte
        raise InputError(f"{source}: not a text LUT ({exc})") from exc
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        tokens = [t for t in _TEXT_SPLIT.split(line) if t]
        if tokens:  # empty lines are ignored, as ImageJ does
            rows.append((lineno, tokens))
    if not rows:
        raise InputError(f"{source}: is neither a raw 768-byte LUT, an NIH Image LUT nor a text table")
    width = len(rows[0][1])
    for lineno, tokens in rows[1:]:
        if len(tokens) != width:
            raise InputError(
                f"{source}: line {lineno} has {len(tokens)} values but the first line has {width}; "
                "a text LUT is a table of 3 (r g b) or 4 (index r g b) columns"
            )
    # TextReader: a first row with no number at all is a header.
    first = [_parse_number(t) for t in rows[0][1]]
    if all(np.isnan(first)) and rows[0][1][0] not in ("NaN", "nan"):
        rows = rows[1:]
    if width not in (3, 4) or not 256 <= len(rows) <= 258:
        raise InputError(
            f"{source}: a text LUT needs 3 or 4 columns and 256 rows (257-258 with a header); "
            f"this one has {width} columns and {len(rows)} data rows"
        )
    # LutLoader: drop the index column and the first row beyond 256
    rows = rows[1:257] if len(rows) > 256 else rows
    x0 = 1 if width == 4 else 0
    table = np.empty((256, 3), dtype=np.uint8)
    for i, (lineno, tokens) in enumerate(rows):
        for j, token in enumerate(tokens[x0 : x0 + 3]):
            value = _parse_number(token)
            if not np.isfinite(value) or value != int(value):
                raise InputError(f"{source}: line {lineno}: {token!r} is not an integer colour value")
            if not 0 <= value <= 255:
                raise InputError(f"{source}: line {lineno}: colour value {token} is outside 0..255")
            table[i, j] = int(value)
    return table


def lut_from_bytes(data: bytes, name: str = "lut", source: str | None = None) -> Lut:
    """Decode the bytes of a LUT file with ImageJ's decision order (see the module docs)."""
    source = source or name
    size = len(data)
    if size == 0:
        raise InputError(f"{source}: the LUT file is empty")
    if size > MAX_LUT_BYTES:
        raise InputError(
            f"{source}: {size} bytes is too large for a LUT (ImageJ reads at most {MAX_LUT_BYTES})"
        )
    table = _read_nih(data, source) if size > 768 else None
    if table is None and size in (768, 970):
        table = np.frombuffer(data[:768], dtype=np.uint8).reshape(3, 256).T.copy()
    if table is None and size > 768:
        table = _read_text(data, source)
    if table is None:
        raise InputError(
            f"{source}: {size} bytes is not a LUT: raw LUTs have 768 (or 970) bytes, NIH Image "
            "and text LUTs more than 768"
        )
    return Lut(name, table)


def read_lut(path: str | os.PathLike) -> Lut:
    """Read an ImageJ LUT file (raw 768/970 bytes, NIH Image ``ICOL``, or a text table).

    Parameters
    ----------
    path : str or path-like
        The ``.lut`` file. Its name without ``.lut`` becomes :attr:`Lut.name`.

    Returns
    -------
    Lut

    Raises
    ------
    InputError
        Missing or unreadable file, over 10000 bytes, a size no format has, a truncated NIH
        LUT, a text table of the wrong shape or with non-integer or out-of-range values.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a LUT file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: no such LUT file") from exc
    if size > MAX_LUT_BYTES:
        raise InputError(
            f"{path}: {size} bytes is too large for a LUT (ImageJ reads at most {MAX_LUT_BYTES})"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the LUT file ({exc.strerror or exc})") from exc
    return lut_from_bytes(data, name=_name_from_path(path), source=str(path))


def write_lut(lut: Lut, path: str | os.PathLike, fmt: str = "binary") -> Path:
    """Write ``lut`` atomically.

    Parameters
    ----------
    lut : Lut
    path : str or path-like
        Output file (``.lut`` by convention).
    fmt : {"binary", "text"}
        ``"binary"``: the raw 768-byte form ImageJ's File > Save As > LUT writes (read back
        the same by every ImageJ version). ``"text"``: a tab-separated table with a header
        row and an index column, like Fiji's ``glasbey.lut`` (always more than 970 bytes, so
        never mistaken for a raw LUT).

    Returns
    -------
    Path
        The written file.
    """
    if not isinstance(lut, Lut):
        raise InputError(f"write_lut needs a Lut, not {type(lut).__name__}")
    if fmt == "binary":
        payload = lut.to_bytes()
    elif fmt == "text":
        payload = lut.to_text().encode("ascii")
    else:
        raise InputError(f"unknown LUT format {fmt!r}; use 'binary' or 'text'")
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(payload)
    return path
