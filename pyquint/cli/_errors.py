"""The one place where failures become messages: every command runs inside :func:`guarded`.

Expected failures (:class:`~pyquint.errors.PyquintError`, ``OSError``, ``MemoryError``,
decoder and HDF5 errors) end in one line ``Error: <file>: <what happened>; <what to do>`` and
exit status 1; usage errors keep click's status 2; Ctrl-C exits 130 and SIGTERM 143 after
saying how far the batch got. Tracebacks are shown only with ``pyquint --debug`` or
``PYQUINT_DEBUG=1``. (steinbock's ``catch_exception`` decorator is the model.)
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import click

from .. import batch
from ..errors import Interrupted, PyquintError

__all__ = ["debug_enabled", "describe", "guarded", "install_signal_handlers"]

_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another output folder",
    errno.EACCES: "permission denied; choose a folder you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you may write to",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def debug_enabled() -> bool:
    """True when tracebacks were asked for (``--debug`` or ``PYQUINT_DEBUG=1``)."""
    return os.environ.get("PYQUINT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _from_h5py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if "h5py" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return type(exc).__module__.startswith("h5py")


def describe(exc: BaseException, current: object = None) -> str:
    """The one-line message for an exception (``current``: the batch item being processed)."""
    prefix = f"{current}: " if current is not None else ""
    if isinstance(exc, PyquintError):
        text = str(exc)
        return text if current is None or str(current) in text else prefix + text
    if isinstance(exc, MemoryError):
        return (prefix + "out of memory; process smaller images, or use `pyquint large predict` "
                "(tile by tile) for images larger than RAM")
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else current
        what = exc.strerror or _one_line(str(exc)) or type(exc).__name__
        hint = _OS_HINTS.get(exc.errno or -1)
        if hint is None and "No space left" in str(exc):
            hint = _OS_HINTS[errno.ENOSPC]
        head = f"{where}: " if where is not None else ""
        if hint:
            return f"{head}{hint} ({_one_line(what)})"
        return f"{head}{_one_line(what)}; check the file, the disk and its permissions"
    if _from_h5py(exc):
        return (prefix + f"HDF5 error ({_one_line(str(exc))}); the file may be truncated or the "
                "disk full; check it with h5ls")
    name = type(exc).__name__
    if name in ("DecompressionBombError", "TiffFileError", "error", "EOFError", "UnidentifiedImageError") \
            or isinstance(exc, EOFError):
        return prefix + f"cannot decode this file ({name}: {_one_line(str(exc))}); is it complete?"
    if isinstance(exc, OverflowError):
        return prefix + f"a value is out of range ({_one_line(str(exc))}); check the settings"
    return (prefix + f"unexpected {name}: {_one_line(str(exc))} (a bug in pyquint? rerun with "
            "--debug for the traceback and report it)")


def _on_signal(signum: int, frame: Any) -> None:
    batch.note_interrupt(signum)
    raise Interrupted(signum)


def install_signal_handlers() -> Callable[[], None]:
    """Make Ctrl-C and SIGTERM raise :class:`Interrupted` in the main thread, even when the
    shell started pyquint with SIGINT ignored (a background job). Returns a function that
    puts the previous handlers back (for in-process callers such as tests)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # A signal that lands inside a weakref callback or __del__ is "ignored" by Python, which
    # prints a traceback; the batch loop raises it again from the recorded flag, so say nothing.
    saved_hook = sys.unraisablehook

    def quiet_interrupts(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            saved_hook(unraisable)

    sys.unraisablehook = quiet_interrupts

    def restore() -> None:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        sys.unraisablehook = saved_hook

    return restore


def _interrupt_message(signum: int) -> str:
    what = "Ctrl-C" if signum == signal.SIGINT else f"signal {signal.Signals(signum).name}"
    state = batch.outer_progress()
    done = (f"; {state.desc}: {state.done} of {state.total if state.total is not None else '?'} "
            f"{state.unit}(s) finished" if state is not None else "")
    return (f"interrupted by {what}{done}; finished outputs are complete and kept, no partial "
            "file was left; rerun the same command to resume")


def guarded(invoke: Callable[[], Any]) -> Any:
    """Run ``invoke`` and turn every expected failure into a click error with one line."""
    try:
        result = invoke()
    except (click.exceptions.Exit, click.Abort, click.ClickException):
        raise
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if debug_enabled():
            traceback.print_exc()
        click.echo("Error: " + _interrupt_message(signum), err=True)
        raise click.exceptions.Exit(128 + signum) from None
    except Exception as exc:  # noqa: BLE001 - this is the one place that reports them all
        if debug_enabled():
            raise
        current = batch.current_item()
        raise click.ClickException(describe(exc, current)) from None
    signum = batch.interrupt_received()
    if signum:  # an interrupt swallowed by a library: never report success after it
        click.echo("Error: " + _interrupt_message(signum), err=True)
        raise click.exceptions.Exit(128 + signum)
    return result
