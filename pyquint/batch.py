"""Shared machinery of every batch command: input lists, output guards, resume, progress.

Rules that all commands follow: inputs are never overwritten; an output that already exists
is skipped unless ``overwrite`` (so an interrupted batch resumes where it stopped); outputs
are written atomically (:func:`pyquint.io.atomic_output`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import InputError, Interrupted
from .io import IMAGE_SUFFIXES, lock_folder, remove_stale_temps, split_h5_path
from .zarrio import is_zarr_path, split_zarr_path

T = TypeVar("T")

__all__ = [
    "BatchState",
    "collect_inputs",
    "current_item",
    "guard_outputs",
    "interrupt_received",
    "lock_outputs",
    "note_interrupt",
    "outer_progress",
    "progress",
    "same_file",
]


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


def lock_outputs(outputs: Iterable[str | os.PathLike]) -> None:
    """Lock the folders of ``outputs`` for this process before any work starts, so that a
    second pyquint run writing there is refused at once (see :func:`pyquint.io.lock_folder`),
    and remove what killed runs left there (:func:`pyquint.io.remove_stale_temps`)."""
    for folder in sorted({Path(os.path.abspath(split_h5_path(o)[0])).parent for o in outputs}):
        lock_folder(folder)
        remove_stale_temps(folder)  # even when every output exists and nothing is written


@dataclass
class BatchState:
    """How far a :func:`progress` loop got: ``done`` items finished of ``total``."""

    desc: str
    total: int | None
    unit: str
    done: int = 0
    current: Any = None
    closed: bool = False


_ACTIVE: list[BatchState] = []
_INTERRUPT: list[int] = []


def note_interrupt(signum: int) -> None:
    """Record that Ctrl-C/SIGTERM arrived (the CLI's signal handler calls this)."""
    _INTERRUPT.append(signum)


def interrupt_received() -> int:
    """The signal number of the first interrupt received, or 0."""
    return _INTERRUPT[0] if _INTERRUPT else 0


def outer_progress() -> BatchState | None:
    """The outermost running (or interrupted) batch loop, if any."""
    return _ACTIVE[0] if _ACTIVE else None


def current_item() -> Any:
    """The item the outermost batch loop is working on (named in error messages), or None."""
    state = outer_progress()
    if state is None or state.current is None:
        return None
    item = state.current
    while isinstance(item, tuple) and item:  # (input, output, ...) tuples: name the input
        item = item[0]
    return item


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "image") -> Iterator[T]:
    """Wrap ``items`` in a tqdm progress bar on stderr (disabled when not a terminal or when
    ``PYQUINT_NO_PROGRESS`` is set).

    The loop's state (items finished, item in hand) is kept for the CLI's messages, and an
    interrupt that a library swallowed is raised again before the next item starts.
    """
    from tqdm.auto import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    disable = True if os.environ.get("PYQUINT_NO_PROGRESS") else None
    _ACTIVE[:] = [s for s in _ACTIVE if not s.closed]  # loops that ended early are over
    state = BatchState(desc, total, unit)
    _ACTIVE.append(state)
    try:
        for item in tqdm(items, desc=desc, total=total, unit=unit, disable=disable, leave=False):
            if _INTERRUPT:
                raise Interrupted(_INTERRUPT[0])
            state.current = item
            yield item
            state.done += 1
            state.current = None
    except GeneratorExit:
        # Closed early: by ``break``, or because an exception (an interrupt, a bad file) is
        # unwinding the loop. The state stays for the CLI's message until the next loop.
        state.closed = True
        raise
    _forget(state)


def _forget(state: BatchState) -> None:
    if state in _ACTIVE:
        _ACTIVE.remove(state)


def value_range(images: Iterable[Any]) -> list[float]:
    """``[min, max]`` over ``images`` (recorded in a model as what it was trained on)."""
    lo, hi = np.inf, -np.inf
    for im in images:
        a = np.asarray(im)
        if a.size:
            lo, hi = min(lo, float(np.nanmin(a))), max(hi, float(np.nanmax(a)))
    return [lo, hi] if lo <= hi else [0.0, 0.0]


def unlike_training(data: Any, training: dict, source: object) -> str | None:
    """A warning with the numbers when ``data`` differs from a model's training images (pixel
    type, value range), else None. Models trained before ranges were recorded are compared by
    pixel type only."""
    a = np.asarray(data)
    problems = []
    dtypes = training.get("input_dtypes") or []
    if dtypes and str(a.dtype) not in dtypes:
        problems.append(f"its pixels are {a.dtype} but the model was trained on {', '.join(dtypes)}")
    vr = training.get("value_range")
    if isinstance(vr, list) and len(vr) == 2 and a.size:
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        span = max(float(vr[1]) - float(vr[0]), 1e-12)
        if hi > vr[1] + span or lo < vr[0] - span or (hi - lo) < span / 20:
            problems.append(f"its values span {lo:g}..{hi:g} but the training images spanned "
                            f"{vr[0]:g}..{vr[1]:g}")
    if not problems:
        return None
    return (f"{source}: " + "; ".join(problems)
            + "; the segmentation may be meaningless (convert the image, or train on such images)")
