"""Image sequences ("png sequence", "tif sequence"): one 2-D file per time point or slice,
named as ilastik names them.

ilastik (``lazyflow/operators/ioOperators/ioOperators.py``, ``OpStackWriter``; formats listed in
``opExportSlot.py`` as ``"<ext> sequence"``) writes a sequence as follows, and so does pyquint:

- the output file name format must contain the ``{slice_index}`` placeholder (ilastik refuses a
  pattern without it; it has no default sequence name), e.g.
  ``{dataset_dir}/{nickname}_{result_type}_{slice_index}``;
- the axis iterated over is the **first non-singleton axis** of the exported data, in the
  export's axis order (``t`` for ``tyxc``, ``z`` for ``zyxc``); the other non-singleton axes
  must be the two image axes, plus ``c``;
- a bare ``{slice_index}`` is zero-padded to ``ceil(log10(n + 1))`` digits for ``n`` slices
  (1 digit for up to 9 slices, 2 for 10 to 99, ...); ``{slice_index:03d}`` keeps the user's format.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import reorder_axes

__all__ = ["SEQUENCE_FORMATS", "SlicePlaceholder", "has_slice_index", "is_sequence_format",
           "sequence_slices", "slice_digits", "slice_path"]

#: ilastik's sequence format names → the extension of each slice file.
SEQUENCE_FORMATS = {"png sequence": "png", "tif sequence": "tif", "tiff sequence": "tiff"}
_FIELD = re.compile(r"\{slice_index(?::([^{}]*))?\}")


def is_sequence_format(fmt: str) -> bool:
    """Whether ``fmt`` (a normalised format name) writes one file per slice."""
    return fmt in SEQUENCE_FORMATS


class SlicePlaceholder:
    """Stands for ``{slice_index}`` while the other placeholders of a file name are filled in:
    it formats back to itself (with its format spec), to be replaced per slice."""

    def __format__(self, spec: str) -> str:
        return "{slice_index" + (":" + spec if spec else "") + "}"


def has_slice_index(pattern: str | os.PathLike) -> bool:
    """Whether a file name pattern holds ``{slice_index}`` (with or without a format spec)."""
    return bool(_FIELD.search(os.fspath(pattern)))


def slice_digits(n_slices: int, offset: int = 0) -> int:
    """ilastik's zero padding of a bare ``{slice_index}``: ``ceil(log10(offset + n + 1))``.

    >>> slice_digits(9), slice_digits(10), slice_digits(100)
    (1, 2, 3)
    """
    return int(math.ceil(math.log10(offset + n_slices + 1)))


def slice_path(pattern: str | os.PathLike, index: int, n_slices: int) -> Path:
    """The file of slice ``index`` of ``n_slices`` from a pattern holding ``{slice_index}``.

    >>> slice_path("out/cells_Probabilities_{slice_index}.png", 3, 12).name
    'cells_Probabilities_03.png'
    """
    pattern = os.fspath(pattern)
    if not _FIELD.search(pattern):
        raise InputError(f"a sequence export needs {{slice_index}} in its file name ({pattern}); "
                         "e.g. --output_filename_format "
                         "'{dataset_dir}/{nickname}_{result_type}_{slice_index}'")
    digits = slice_digits(n_slices)

    def fill(m: re.Match) -> str:
        spec = m.group(1)
        return format(index, spec) if spec else f"{index:0{digits}d}"

    return Path(_FIELD.sub(fill, pattern))


def sequence_slices(pattern: str | os.PathLike, data: np.ndarray,
                    axes: str) -> Iterator[tuple[Path, np.ndarray, str]]:
    """``(file, slice, slice axes)`` for every slice of ``data``, as ilastik's stack writer cuts it.

    Parameters
    ----------
    pattern : str or path-like
        File name with ``{slice_index}``.
    data : ndarray
        The export, already in its output axis order.
    axes : str
        Axes of ``data``.

    Yields
    ------
    (Path, ndarray, str)
        Each slice in ``yx`` or ``yxc`` order (other spatial pairs keep their order).
    """
    axes = axes.lower()
    big = [a for a, n in zip(axes, data.shape) if n > 1]
    if not big or big[0] == "c" or len([a for a in big[1:] if a != "c"]) != 2:
        raise InputError(f"{os.fspath(pattern)}: a sequence export needs 3-D data (t or z, then "
                         f"the two image axes, and c), not axes {axes!r} with shape {data.shape}; "
                         "choose hdf5 or tiff")
    step = big[0]
    n = data.shape[axes.index(step)]
    rest = [a for a in big[1:] if a != "c"]
    target = "".join(a for a in "yx" if a in rest) if set(rest) == {"y", "x"} else "".join(rest)
    target += "c" if "c" in axes else ""
    for k in range(n):
        part = np.take(data, k, axis=axes.index(step))
        part_axes = axes.replace(step, "")
        yield slice_path(pattern, k, n), reorder_axes(part, part_axes, target), target
