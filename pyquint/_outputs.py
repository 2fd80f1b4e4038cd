"""Safe outputs: atomic writes with PID-stamped temporary files, removal of what killed runs
left behind, and one-writer-per-folder locks (see ``docs/reliability.md``)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = [
    "LOCK_NAME",
    "TEMP_PATTERN",
    "atomic_output",
    "lock_folder",
    "release_folder_locks",
    "remove_stale_temps",
    "temp_prefix",
]

#: Temporary outputs are named ``.<stem>.pq<PID>-<random>.tmp<suffix>``: the PID says whether
#: the writer still runs, so a later run can remove what a killed one left behind.
TEMP_PATTERN = re.compile(r"^\..*\.pq(\d+)-[A-Za-z0-9_]+\.tmp")
#: The CLI turns this on: each output folder is then locked for the whole run.
LOCK_OUTPUT_FOLDERS = False
LOCK_NAME = ".pyquint.lock"
_CLEANED: set[Path] = set()
_LOCKS: dict[Path, int] = {}
_LOCKS_GUARD = threading.Lock()


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporary files for an output named ``name``."""
    return f".{name}.pq{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (and folders) that pyquint runs killed before they could
    clean up (their PID no longer runs) left in ``folder``; returns what was removed."""
    import shutil

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_PATTERN.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def lock_folder(folder: str | os.PathLike) -> None:
    """Hold an exclusive lock on ``folder`` for the rest of this process.

    A second pyquint process that locks the same folder is refused with a message naming the
    holder's PID; the lock dies with its process (``flock``), so a killed run never blocks
    the next one. No-op where ``fcntl`` is missing (Windows) or the folder is already held.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    with _LOCKS_GUARD:  # threads of one run (quint's pool) share its locks
        _lock_folder(Path(os.path.abspath(folder)), fcntl)


def _lock_folder(folder: Path, fcntl: Any) -> None:
    if folder in _LOCKS:
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise InputError(
                f"{folder}: another pyquint run (PID {holder}) is writing into this folder; wait "
                "for it to finish or choose another output folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file that its previous holder unlinked meanwhile
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            _LOCKS[folder] = fd
            if len(_LOCKS) == 1:
                import atexit

                atexit.register(release_folder_locks)
            return
        os.close(fd)


def release_folder_locks() -> None:
    """Remove this process's lock files and release the locks (also done at exit)."""
    with _LOCKS_GUARD:
        _release_all()


def _release_all() -> None:
    for folder, fd in list(_LOCKS.items()):
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK_NAME)
        with contextlib.suppress(OSError):
            os.close(fd)
        del _LOCKS[folder]


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Block SIGINT and SIGTERM for this thread during the block (no-op where unsupported)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    An interrupted or failed write leaves no partial output (the temporary file is removed,
    and one left by a killed process is removed by the next write into that folder), so a
    later resumed batch never mistakes a broken file for a finished one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parent = Path(os.path.abspath(path.parent))
    if LOCK_OUTPUT_FOLDERS:
        lock_folder(parent)
    if parent not in _CLEANED:
        _CLEANED.add(parent)
        remove_stale_temps(parent)
    tmp_path: Path | None = None
    try:
        # Ctrl-C between creating the temp file and knowing its name would leak it: the
        # signals are held back while it is made. They are delivered as the hold ends, which
        # is still inside this ``try``, so the file is removed then too.
        with _signals_held():
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.stem),
                                       suffix=".tmp" + path.suffix, dir=path.parent)
            os.close(fd)
            tmp_path = Path(tmp)
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        raise
