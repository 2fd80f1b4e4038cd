"""Shared machinery of every batch command: input lists, output guards, resume, progress.

Rules that all commands follow: inputs are never overwritten; an output that already exists
is skipped unless ``overwrite`` (so an interrupted batch resumes where it stopped); outputs
are written atomically (:func:`pyquint.io.atomic_output`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import InputError
from .io import IMAGE_SUFFIXES, split_h5_path
from .zarrio import is_zarr_path, split_zarr_path

T = TypeVar("T")

__all__ = ["collect_inputs", "guard_outputs", "progress", "same_file"]


def collect_inputs(
    paths: Iterable[str | os.PathLike],
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
    *,
    recursive: bool = False,
) -> list[Path]:
    """Expand files and folders into a sorted list of files with one of ``suffixes``.

    Folders contribute their files (hidden files such as macOS ``._x.png`` are skipped);
    explicit files are kept as given (``file.h5/inner`` paths included). A missing path or a
    folder without matching files is an error naming it.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        file, _ = split_h5_path(path)
        if path.is_dir() and not is_zarr_path(path):
            pattern = "**/*" if recursive else "*"
            found = sorted(
                p for p in path.glob(pattern)
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
            )
            if not found:
                raise InputError(f"{path}: no files with suffix {', '.join(suffixes)} in this folder")
            out.extend(found)
        elif file.is_file() or is_zarr_path(path) and split_zarr_path(path)[0].is_dir():
            out.append(path)  # a zarr store is a folder but one image
        else:
            raise InputError(f"{path}: no such file or folder")
    if not out:
        raise InputError("no input files given")
    return out


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name the same file (after resolving links and ``..``)."""
    fa, fb = split_h5_path(a)[0], split_h5_path(b)[0]
    return Path(os.path.abspath(fa)).resolve() == Path(os.path.abspath(fb)).resolve()


def guard_outputs(inputs: Sequence[str | os.PathLike], outputs: Sequence[str | os.PathLike]) -> None:
    """Raise if any output would overwrite an input, or two outputs collide."""
    resolved_inputs = {Path(os.path.abspath(split_h5_path(p)[0])).resolve() for p in inputs}
    seen: dict[Path, str] = {}
    for out in outputs:
        r = Path(os.path.abspath(split_h5_path(out)[0])).resolve()
        if r in resolved_inputs:
            raise InputError(f"{out}: this output would overwrite an input; choose another output folder or name")
        if r in seen and seen[r] != os.fspath(out):
            raise InputError(f"{out}: two outputs would be written to the same file {r}")
        seen[r] = os.fspath(out)


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "image") -> Iterator[T]:
    """Wrap ``items`` in a tqdm progress bar on stderr (disabled when not a terminal or when
    ``PYQUINT_NO_PROGRESS`` is set)."""
    from tqdm.auto import tqdm

    disable = True if os.environ.get("PYQUINT_NO_PROGRESS") else None
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=disable, leave=False)
