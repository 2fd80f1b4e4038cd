"""steinbock panel files (``panel.csv``): reading, the keep filter and ilastik channel groups.

steinbock reads panels with pandas; pyquint parses the same files with the standard
library so that the steinbock commands need no pandas. The rules are steinbock's
(``steinbock.io.read_panel``): the separator is ``,`` or ``;``, ``channel`` and ``name``
are required, ``channel``/``keep`` may not be empty, ``channel`` and ``name`` must be
unique, and rows with ``keep=0`` are dropped.
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["Panel", "read_panel", "channel_groups"]

_TRUE = {"1", "true"}
_FALSE = {"0", "false"}


@dataclass
class Panel:
    """The rows of a steinbock panel, as strings, in file order.

    Attributes
    ----------
    columns : list of str
        Column names in file order.
    rows : list of dict
        One mapping column -> cell text per row (empty cells are ``""``).
    path : Path or None
        The file the panel was read from (for error messages).
    """

    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[str]:
        """The cells of column ``name`` (a KeyError names the panel when missing)."""
        if name not in self.columns:
            raise KeyError(f"{self.path or 'panel'}: no column {name!r}")
        return [row.get(name, "") for row in self.rows]


def _split(line: str) -> list[str]:
    # pandas' sep=",|;" is a regex split without quoting; csv handles quoted names
    # with commas, which steinbock users do not have, so split like pandas on the
    # unquoted text and fall back to csv only for quoted lines.
    if '"' in line:
        return next(csv.reader(_io.StringIO(line.replace(";", ","))))
    return re.split(r",|;", line)


def read_panel(path: str | os.PathLike, *, unfiltered: bool = False) -> Panel:
    """Read a steinbock panel file.

    Parameters
    ----------
    path : str or path-like
        The ``panel.csv`` file.
    unfiltered : bool, default False
        Keep rows with ``keep=0`` (steinbock drops them).

    Returns
    -------
    Panel
        The (filtered) rows.

    Raises
    ------
    InputError
        The file is missing or unreadable, a required column is absent, ``channel`` or
        ``keep`` has empty cells, ``keep`` is not 0/1, or ``channel``/``name`` repeat.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: panel file does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the panel ({exc})") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{path}: the panel is empty")
    columns = [c.strip() for c in _split(lines[0])]
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in _split(line)]
        if len(cells) > len(columns):
            raise InputError(
                f"{path}, line {lineno}: {len(cells)} cells but the header has {len(columns)} columns"
            )
        cells += [""] * (len(columns) - len(cells))
        rows.append(dict(zip(columns, cells)))
    for required in ("channel", "name"):
        if required not in columns:
            raise InputError(f"{path}: missing {required!r} column (columns: {', '.join(columns)})")
    for col in ("channel", "keep"):
        if col in columns and any(r[col] == "" for r in rows):
            raise InputError(f"{path}: missing values in column {col!r}")
    for col in ("channel", "name"):
        values = [r[col] for r in rows if r[col] != ""]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise InputError(f"{path}: duplicated values in column {col!r}: {', '.join(dupes)}")
    if "keep" in columns:
        for r in rows:
            if r["keep"].lower() not in _TRUE | _FALSE:
                raise InputError(
                    f"{path}: 'keep' must be 0 or 1, not {r['keep']!r} (channel {r['channel']})"
                )
        if not unfiltered:
            rows = [r for r in rows if r["keep"].lower() in _TRUE]
    return Panel(columns=columns, rows=rows, path=path)


def channel_groups(panel: Panel, column: str = "ilastik") -> np.ndarray | None:
    """The numeric channel groups of ``column`` (NaN = channel not used), or None.

    None means "no grouping" as in steinbock: the column is absent or has no value, so
    every channel is passed through on its own.

    Raises
    ------
    InputError
        A cell of ``column`` is not a number.
    """
    if column not in panel.columns:
        return None
    values = []
    for row in panel.rows:
        cell = row.get(column, "")
        if cell == "":
            values.append(math.nan)
            continue
        try:
            values.append(float(cell))
        except ValueError:
            raise InputError(
                f"{panel.path or 'panel'}: column {column!r} must hold numbers or be empty, "
                f"not {cell!r} (channel {row['channel']})"
            ) from None
    groups = np.asarray(values, dtype=np.float64)
    if np.all(np.isnan(groups)):
        return None
    return groups
