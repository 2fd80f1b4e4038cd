"""Pairing files by name: a raw image and its label image, probability map or object table.

Every command that takes two sets of files (images + labels, raw + probabilities, sections +
alignments) pairs them with :func:`pair_by_name`; only the names each side answers to differ.
Outputs are named after ilastik's :func:`nickname` of their input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import InputError
from .io import split_h5_path
from .zarrio import is_zarr_path, split_zarr_path

__all__ = ["check_distinct_outputs", "input_file", "nickname", "pair_by_name", "stem_names"]

T = TypeVar("T")
U = TypeVar("U")


def _split_input(raw_path: str | os.PathLike) -> tuple[Path, str | None]:
    file, inner = split_zarr_path(raw_path) if is_zarr_path(raw_path) else split_h5_path(raw_path)
    return Path(file), inner


def input_file(raw_path: str | os.PathLike) -> Path:
    """The file (or zarr store) of an input, without its inner dataset path
    (``data/img.h5/volume/data`` -> ``data/img.h5``)."""
    return _split_input(raw_path)[0]


def nickname(raw_path: str | os.PathLike) -> str:
    """ilastik's nickname of an input: the file's stem, plus ``-inner-path`` for HDF5 datasets
    and zarr arrays (outputs are named ``{nickname}_{source}``).

    >>> nickname("data/img.h5/volume/data")
    'img-volume-data'
    >>> nickname("sections/brain_s001.png")
    'brain_s001'
    """
    file, inner = _split_input(raw_path)
    name = file.stem
    if inner:
        name += "-" + inner.strip("/").replace("/", "-")
    return name


def stem_names(path: str | os.PathLike) -> list[str]:
    """The default name of a file: its stem (``brain_s001.png`` -> ``brain_s001``)."""
    return [Path(path).stem]


def _same_file(a: object, b: object) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()  # type: ignore[arg-type]
    except (TypeError, OSError):
        return False


def pair_by_name(
    items: Sequence[T],
    candidates: Iterable[U],
    *,
    names: Callable[[T], Sequence[Hashable]] = stem_names,
    candidate_names: Callable[[U], Sequence[Hashable]] = stem_names,
    duplicates: str = "error",
    what: str = "matching",
) -> list[U | None]:
    """For each item, the candidate that shares a name with it (None where there is none).

    Parameters
    ----------
    items : sequence
        The files to find partners for (e.g. raw images).
    candidates : iterable
        The files to choose from (e.g. label images).
    names : callable
        The names an item's partner may have, most wanted first (e.g. ``brain_s001``,
        ``brain_s001_labels``); the first one some candidate answers to wins.
    candidate_names : callable
        The names a candidate answers to (e.g. its stem, and its ``_sXXX`` section id).
    duplicates : {"error", "first"}
        Two candidates answering to one name: an :class:`InputError` naming both, or the
        first one wins.
    what : str
        What the candidates are, for the error message (``"label"``, ``"probability"``).

    Returns
    -------
    list
        One entry per item, in order. A candidate is never paired with the file it is
        itself (when images and labels come from one folder).

    Raises
    ------
    InputError
        Two candidates answer to one name and ``duplicates="error"``.
    """
    if duplicates not in ("error", "first"):
        raise InputError(f"duplicates must be 'error' or 'first', not {duplicates!r}")
    index: dict[Hashable, list[U]] = {}
    for cand in candidates:
        for key in dict.fromkeys(candidate_names(cand)):
            if key is None:
                continue
            found = index.setdefault(key, [])
            if found and duplicates == "error" and not _same_file(found[0], cand):
                raise InputError(f"two {what} files for {key!r}: {found[0]} and {cand}")
            found.append(cand)
    pairs: list[U | None] = []
    for item in items:
        match = None
        for key in names(item):
            match = next((c for c in index.get(key, ()) if not _same_file(c, item)), None)
            if match is not None:
                break
        pairs.append(match)
    return pairs


def check_distinct_outputs(inputs: Sequence[object], outputs: Sequence[object]) -> None:
    """Raise an :class:`InputError` naming both inputs when two of them would be written to
    one output (e.g. ``a/x.png`` and ``b/x.tif`` both to ``out/x.png``).

    ``inputs[i]`` is written to ``outputs[i]``; an input may appear several times (one entry
    per output it makes). Paths are compared as absolute paths.
    """
    seen: dict[object, object] = {}
    for src, dst in zip(inputs, outputs):
        key = Path(os.path.abspath(dst)) if isinstance(dst, (str, os.PathLike)) else dst
        if key in seen and seen[key] != src:
            raise InputError(f"{seen[key]} and {src} would both be written to {dst}")
        seen[key] = src
