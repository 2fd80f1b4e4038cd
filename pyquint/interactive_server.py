"""A pyquint process that stays up between the Fiji macro's runs, so an iteration skips
Python's start, the imports, loading compiled code and computing the image's features.

One server per work folder (``<image>_pyquint/``). It talks through files in that folder, which
an ImageJ macro can read and write without any plug-in:

``server.json``
    ``pid``, ``token``, ``image``, ``idle_timeout``, ``protocol``; written atomically at start.
    Its modification time is the heartbeat (touched every :data:`HEARTBEAT_S` seconds by a
    thread, so also while a request is being worked on). Older than :data:`STALE_S`: the server
    is gone (killed, crashed, machine asleep) and a new one may take the folder over; a server
    that finds another token in the file stops. Removed when the server ends.
``request.txt``
    ``key=value`` lines (``id``, ``image``, ``labels``, ``class_names``, ``show_class``,
    ``suggestions``, ``suggestion_size``, ``trees``, ``seed``, ``trainer``), written under
    another name and renamed, so it is complete when it appears. ``command=stop`` ends the
    server.
``answer.txt``
    ``id`` (the request's), ``status`` (0 = done, 1 = pyquint refused the input, 2 = pyquint
    failed) and ``message`` (what ``pyquint interactive step`` prints), written atomically.
``server.log``
    The server's output (one line per request, tracebacks of failures).

The work of a request is :func:`pyquint.interactive.run_step` with the server's
:class:`~pyquint.interactive.StepCache`, so the files are those of a one-shot ``pyquint
interactive step`` with the same options. The server exits by itself after ``idle_timeout``
seconds without a request, on ``command=stop``, on SIGTERM/SIGINT, or when another server took
its folder over.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._outputs import atomic_output, release_folder_locks
from .errors import InputError, PyquintError
from .forest import train_forest
from .interactive import StepCache, StepReport, run_step, work_dir_for

__all__ = [
    "HEARTBEAT_S",
    "STALE_S",
    "ServerInfo",
    "request_step",
    "serve",
    "server_status",
    "start_server",
    "step_summary",
    "stop_server",
]

PROTOCOL = 1
HEARTBEAT_S = 1.0  # how often the heartbeat thread touches server.json
STALE_S = 5.0  # a heartbeat older than this: no server (the macro uses the same limit)
SERVER_FILE, REQUEST_FILE, ANSWER_FILE, LOG_FILE = "server.json", "request.txt", "answer.txt", "server.log"
_POLL_S = 0.02  # request polling: one stat() per 20 ms costs nothing measurable
_STARTED: list[subprocess.Popen] = []  # detached servers of this process (kept: no ResourceWarning)


@dataclass(frozen=True)
class ServerInfo:
    """A live server: its process id, its work folder, the image it was started for."""

    pid: int
    work_dir: Path
    image: str
    token: str
    heartbeat_age: float


# --------------------------------------------------------------------------- state on disk
def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: trust the heartbeat
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours
        return False
    try:  # Linux: a zombie (ended, not yet reaped by its parent) is no server either
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def server_status(work_dir: str | os.PathLike) -> ServerInfo | None:
    """The live server of ``work_dir``, or None (no ``server.json``, a stale heartbeat, a dead
    process or an unreadable file all mean: no server)."""
    path = Path(work_dir) / SERVER_FILE
    try:
        age = time.time() - path.stat().st_mtime
        info = json.loads(path.read_text())
        pid, token = int(info["pid"]), str(info["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if age > STALE_S or info.get("protocol") != PROTOCOL or not _pid_alive(pid):
        return None
    return ServerInfo(pid, Path(work_dir), str(info.get("image", "")), token, max(0.0, age))


def _owner(work: Path) -> str | None:
    try:
        return str(json.loads((work / SERVER_FILE).read_text())["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_request(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _write_answer(work: Path, fields: dict[str, object]) -> None:
    text = "".join(f"{k}={' '.join(str(v).split())}\n" for k, v in fields.items())  # one line each
    with atomic_output(work / ANSWER_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")


def step_summary(report: StepReport) -> str:
    """The line ``pyquint interactive step`` prints for an iteration."""
    samples = ", ".join(f"class {c}: {n}" for c, n in report.samples_per_class.items())
    return (f"iteration {report.iteration}: trained on {samples} labelled pixels in "
            f"{report.seconds['total']:.1f} s; {len(report.suggestions)} suggestions")


def _int(fields: dict[str, str], key: str, default: int) -> int:
    value = fields.get(key, "")
    if value == "":
        return default
    try:
        return int(float(value))
    except ValueError as exc:
        raise InputError(f"request: {key} must be a number, not {value!r}") from exc


def _handle(fields: dict[str, str], work: Path, cache: StepCache) -> dict[str, object]:
    names = [n.strip() for n in fields.get("class_names", "").split(",") if n.strip()] or None
    report = run_step(fields["image"], fields.get("labels") or None, work_dir=work, class_names=names,
                      show_class=fields.get("show_class") or None,
                      n_suggestions=_int(fields, "suggestions", 5),
                      suggestion_size=_int(fields, "suggestion_size", 32),
                      n_trees=_int(fields, "trees", 100), seed=_int(fields, "seed", 0),
                      trainer=fields.get("trainer") or "fast", cache=cache)
    return {"status": 0, "message": step_summary(report), "seconds": json.dumps(report.seconds)}


# --------------------------------------------------------------------------- the server
def _warm_up(cache: StepCache, image: Path) -> None:
    """Features of the image and the forest's compiled code, before the first request needs them."""
    session = cache.session(image)
    feats = session.feature_cache
    x = np.ascontiguousarray(feats.reshape(-1, feats.shape[-1])[:64])
    forest = train_forest(x, np.arange(64) % 2 + 1, n_trees=2, seed=0, backend="fast")
    forest.predict_proba(x, n_classes=2)


def serve(image_path: str | os.PathLike, *, work_dir: str | os.PathLike | None = None,
          idle_timeout: float = 600.0, warm_up: bool = True, log=None) -> int:
    """Answer the requests of ``work_dir`` until idle, stopped or taken over (foreground).

    Parameters
    ----------
    image_path : path
        The image whose features are prepared at start (requests may name another one).
    work_dir : path, optional
        Default :func:`~pyquint.interactive.work_dir_for` ``(image_path)``.
    idle_timeout : float
        Seconds without a request after which the server exits.
    warm_up : bool
        Compute the features and load the forest's compiled code before the first request.
    log : text stream, optional
        Where to report (default stderr).

    Returns
    -------
    int
        How many requests were answered.
    """
    log = log or sys.stderr
    image = Path(image_path)
    if not image.is_file():
        raise InputError(f"{image}: no such image (save the image before training)")
    if idle_timeout <= 0:
        raise InputError(f"idle_timeout must be positive, not {idle_timeout}")
    work = Path(work_dir) if work_dir is not None else work_dir_for(image)
    work.mkdir(parents=True, exist_ok=True)
    other = server_status(work)
    if other is not None and other.pid != os.getpid():
        raise InputError(f"{work}: a pyquint server (pid {other.pid}) already serves this folder; "
                         f"stop it first (pyquint interactive stop {work})")
    with contextlib.suppress(OSError):  # a request left from before this server: its sender gave up
        (work / REQUEST_FILE).unlink()
    token = secrets.token_hex(8)
    with atomic_output(work / SERVER_FILE) as tmp:
        tmp.write_text(json.dumps({"pid": os.getpid(), "token": token, "image": str(image),
                                   "idle_timeout": idle_timeout, "protocol": PROTOCOL,
                                   "started": time.time()}))
    release_folder_locks()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            if _owner(work) != token:  # removed, or another server took the folder over
                done.set()
                return
            with contextlib.suppress(OSError):
                os.utime(work / SERVER_FILE)

    def on_signal(signum, frame) -> None:
        done.set()

    # SIGTERM (pyquint interactive stop) and Ctrl-C end the loop, so server.json is removed
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    heart = threading.Thread(target=beat, name="pyquint-heartbeat", daemon=True)
    heart.start()
    cache, answered = StepCache(), 0
    print(f"pyquint server {os.getpid()} for {image} in {work} (idle timeout {idle_timeout:g} s)",
          file=log, flush=True)
    try:
        if warm_up:
            start = time.perf_counter()
            with contextlib.suppress(PyquintError):  # a bad image is reported by the first request
                _warm_up(cache, image)
            print(f"ready in {time.perf_counter() - start:.1f} s", file=log, flush=True)
        last = time.monotonic()
        request = work / REQUEST_FILE
        while not done.is_set():
            if not request.is_file():
                if time.monotonic() - last > idle_timeout:
                    print(f"idle for {idle_timeout:g} s: exiting", file=log, flush=True)
                    break
                done.wait(_POLL_S)
                continue
            try:
                fields = _read_request(request)
                request.unlink()
            except OSError:
                continue
            if fields.get("command") == "stop":
                print("stop requested", file=log, flush=True)
                _write_answer(work, {"id": fields.get("id", ""), "status": 0, "message": "stopped"})
                break
            start = time.perf_counter()
            try:
                if not fields.get("image"):
                    raise InputError("request without an image")
                answer = _handle(fields, work, cache)
            except PyquintError as exc:
                answer = {"status": 1, "message": f"Error: {exc}"}
            except Exception as exc:  # noqa: BLE001 - report to the macro and keep serving
                traceback.print_exc(file=log)
                answer = {"status": 2, "message": f"Error: {type(exc).__name__}: {exc}"}
            _write_answer(work, {"id": fields.get("id", "")} | answer)
            release_folder_locks()  # the folder is locked while written, not while idle
            answered += 1
            print(f"request {fields.get('id', '')}: status {answer['status']} in "
                  f"{time.perf_counter() - start:.2f} s: {answer['message']}", file=log, flush=True)
            last = time.monotonic()
    finally:
        done.set()
        heart.join(timeout=2 * HEARTBEAT_S)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if _owner(work) == token:
            with contextlib.suppress(OSError):
                (work / SERVER_FILE).unlink()
    return answered


# --------------------------------------------------------------------------- clients
def start_server(image_path: str | os.PathLike, *, work_dir: str | os.PathLike | None = None,
                 idle_timeout: float = 600.0, wait: float = 60.0,
                 python: str | None = None) -> ServerInfo:
    """Start :func:`serve` as a detached background process (or find the one running).

    Returns once the server's heartbeat is there (it then prepares the features; requests
    sent meanwhile wait for it). Its output goes to ``<work_dir>/server.log``.

    Raises
    ------
    InputError
        When the server does not come up within ``wait`` seconds (with the log's last lines).
    """
    image = Path(image_path)
    if not image.is_file():
        raise InputError(f"{image}: no such image (save the image before training)")
    work = Path(work_dir) if work_dir is not None else work_dir_for(image)
    running = server_status(work)
    if running is not None:
        return running
    work.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "pyquint", "interactive", "serve", str(image.resolve()),
           "--work-dir", str(work.resolve()), "--idle-timeout", f"{idle_timeout:g}"]
    env = dict(os.environ, PYQUINT_NO_PROGRESS="1")
    env.setdefault("OMP_WAIT_POLICY", "passive")
    kwargs: dict = {"start_new_session": True}
    if os.name == "nt":  # pragma: no cover - Windows
        kwargs = {"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP}
    with open(work / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                close_fds=True, env=env, cwd=str(work), **kwargs)
    _STARTED.append(proc)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = server_status(work)
        if info is not None and info.pid == proc.pid:
            return info
        if proc.poll() is not None:
            break
        time.sleep(_POLL_S)
    else:
        proc.kill()
    raise InputError(f"the pyquint server did not start (see {work / LOG_FILE}): {_log_tail(work)}")


def _log_tail(work: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in (work / LOG_FILE).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return " | ".join(lines[-n:]) or "empty log"


def _send(work: Path, fields: dict[str, object]) -> str:
    request_id = f"{os.getpid()}-{time.monotonic_ns()}"
    with contextlib.suppress(FileNotFoundError):
        (work / ANSWER_FILE).unlink()
    text = "".join(f"{k}={v}\n" for k, v in ({"id": request_id} | fields).items())
    part = work / f".{REQUEST_FILE}.part"
    part.write_text(text, encoding="utf-8")
    os.replace(part, work / REQUEST_FILE)
    return request_id


def _await(work: Path, request_id: str, timeout: float) -> dict[str, str] | None:
    """The answer to ``request_id``; None when the server went away first."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            answer = _read_request(work / ANSWER_FILE)
            if answer.get("id") == request_id:
                return answer
        if server_status(work) is None:
            return None
        if time.monotonic() > deadline:
            raise InputError(f"the pyquint server of {work} did not answer within {timeout:g} s "
                             f"(see {work / LOG_FILE}; stop it with: pyquint interactive stop {work})")
        time.sleep(_POLL_S)


def request_step(image_path: str | os.PathLike, labels_path: str | os.PathLike | None = None, *,
                 work_dir: str | os.PathLike | None = None, timeout: float = 120.0,
                 **options: object) -> dict[str, str]:
    """Ask the running server for one :func:`~pyquint.interactive.run_step` (what the macro does).

    ``options`` are the request's fields (``class_names="a,b"``, ``show_class``,
    ``suggestions``, ``suggestion_size``, ``trees``, ``seed``, ``trainer``).

    Returns
    -------
    dict
        The answer's fields (``status``, ``message``, ``seconds``).

    Raises
    ------
    InputError
        No server runs for the folder, it stopped before answering, or ``timeout`` passed.
    """
    image = Path(image_path)
    work = Path(work_dir) if work_dir is not None else work_dir_for(image)
    if server_status(work) is None:
        raise InputError(f"no pyquint server runs for {work} (start one: pyquint interactive serve --detach)")
    fields = {"image": str(image.resolve()), "labels": str(Path(labels_path).resolve()) if labels_path else ""}
    request_id = _send(work, fields | {k: v for k, v in options.items() if v is not None})
    answer = _await(work, request_id, timeout)
    if answer is None:
        raise InputError(f"the pyquint server of {work} stopped before answering (see {work / LOG_FILE})")
    return answer


def stop_server(work_dir: str | os.PathLike, *, timeout: float = 10.0) -> bool:
    """Stop the server of ``work_dir``: a stop request, then SIGTERM, then SIGKILL.

    Signals go only to the process of a fresh heartbeat (so never to an unrelated process
    that reused the id of a dead server). Returns True if a server was running; a stale
    ``server.json`` is removed.
    """
    work = Path(work_dir)
    info = server_status(work)
    if info is None:
        with contextlib.suppress(OSError):
            (work / SERVER_FILE).unlink()
        return False
    stop_id = _send(work, {"command": "stop"})
    # a polling server claims the request within milliseconds; one that is busy (or hung) gets
    # SIGTERM, which ends it after the request in hand
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and (work / REQUEST_FILE).exists() and server_status(work) is not None:
        time.sleep(_POLL_S)
    deadline = time.monotonic() + timeout / 2
    while (time.monotonic() < deadline and not (work / REQUEST_FILE).exists()
           and server_status(work) is not None):
        time.sleep(_POLL_S)
    if server_status(work) is not None and _pid_alive(info.pid):
        with contextlib.suppress(OSError):
            os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and server_status(work) is not None:
            time.sleep(_POLL_S)
    if server_status(work) is not None and os.name != "nt":  # stuck in compiled code
        with contextlib.suppress(OSError):
            os.kill(info.pid, signal.SIGKILL)
            time.sleep(0.2)
    if server_status(work) is not None and _pid_alive(info.pid):
        raise InputError(f"the pyquint server {info.pid} of {work} did not stop; end process {info.pid}")
    with contextlib.suppress(OSError):
        if _read_request(work / REQUEST_FILE).get("id") == stop_id:  # never claimed: not for the next one
            (work / REQUEST_FILE).unlink()
    if _owner(work) == info.token:
        with contextlib.suppress(OSError):
            (work / SERVER_FILE).unlink()
    return True
