"""The interactive server (``pyquint interactive serve``): start, answer, same files as the
one-shot step, idle exit, stale servers, timeouts, stop. Every server runs as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyquint.data import make_section
from pyquint.errors import InputError
from pyquint.interactive_server import SERVER_FILE, request_step, server_status, stop_server
from pyquint.pixel import PixelClassifier

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYQUINT_NO_PROGRESS="1")
OPTIONS = {"class_names": "Background,Stain", "trees": 10, "suggestions": 3, "seed": 2}
OUTPUTS = ("labels.png", "probability.png", "segmentation.png", "uncertainty.png", "suggestions.csv")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyquint", "interactive", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


@pytest.fixture()
def picture(tmp_path):
    """An image and two label images (a poor first scribble, then the rest) in a folder."""
    section = make_section(3)
    folder = tmp_path / "view"
    folder.mkdir()
    Image.fromarray(section.image).save(folder / "brain_s003.png")
    first = np.zeros_like(section.labels)
    for c in (1, 2):
        ys, xs = np.nonzero(section.labels == c)
        first[ys[:4], xs[:4]] = c
    Image.fromarray(first).save(tmp_path / "l1.png")
    Image.fromarray(section.labels).save(tmp_path / "l2.png")
    yield folder / "brain_s003.png"
    for beat in tmp_path.rglob(SERVER_FILE):  # never leave a server behind
        stop_server(beat.parent)


def _start(image: Path, *extra: str) -> int:
    res = _cli("serve", "--detach", str(image), *extra)
    assert res.returncode == 0, res.stderr
    info = server_status(image.parent / f"{image.stem}_pyquint")
    assert info is not None and f"pyquint server {info.pid} serves" in res.stdout
    return info.pid


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"server {pid} still runs")


def _fake_server(work: Path, pid: int) -> threading.Event:
    """A server.json for ``pid`` whose heartbeat a thread keeps fresh: a server that never answers."""
    work.mkdir(parents=True, exist_ok=True)
    (work / SERVER_FILE).write_text(json.dumps({"pid": pid, "token": "fake", "protocol": 1, "image": ""}))
    done = threading.Event()

    def beat() -> None:
        while not done.wait(0.2):
            if (work / SERVER_FILE).exists():
                os.utime(work / SERVER_FILE)

    threading.Thread(target=beat, daemon=True).start()
    return done


def test_server_answers_with_the_files_of_the_one_shot_step(picture, tmp_path):
    work = picture.parent / "brain_s003_pyquint"
    pid = _start(picture)
    assert _start(picture) == pid  # a second start finds the running one
    answers = [request_step(picture, tmp_path / lab, timeout=120, **OPTIONS) for lab in ("l1.png", "l2.png")]
    assert [a["status"] for a in answers] == ["0", "0"]
    assert answers[1]["message"].startswith("iteration 2: trained on class 1:")
    assert json.loads((work / "step.json").read_text())["features_cached"] is True  # computed once

    # the same two iterations as one-shot processes, on a copy of the image elsewhere
    other = tmp_path / "oneshot"
    other.mkdir()
    shutil.copy(picture, other / picture.name)
    for lab in ("l1.png", "l2.png"):
        res = _cli("step", str(other / picture.name), str(tmp_path / lab), "--class-names", "Background,Stain",
                   "--trees", "10", "--suggestions", "3", "--seed", "2")
        assert res.returncode == 0, res.stderr
    for name in OUTPUTS:
        assert (work / name).read_bytes() == (other / "brain_s003_pyquint" / name).read_bytes(), name
    served, once = PixelClassifier.load(work / "model.h5"), PixelClassifier.load(other / "brain_s003_pyquint" / "model.h5")
    for name in ("feature", "threshold", "left", "right", "value", "roots"):
        np.testing.assert_array_equal(getattr(served.forest_, name), getattr(once.forest_, name))
    assert served.metadata() == once.metadata()

    # bad input: answered with pyquint's message, and the server goes on
    bad = request_step(picture, tmp_path / "missing.png", timeout=60, **OPTIONS)
    assert bad["status"] == "1" and "missing.png" in bad["message"]
    assert request_step(picture, None, timeout=60, **OPTIONS)["status"] == "0"

    res = _cli("stop", str(picture))
    assert res.returncode == 0 and "stopped the pyquint server" in res.stdout
    _wait_gone(pid)
    assert not (work / SERVER_FILE).exists() and server_status(work) is None
    assert "no pyquint server runs" in _cli("stop", str(work)).stdout


def test_idle_server_exits_by_itself(picture):
    work = picture.parent / "brain_s003_pyquint"
    proc = subprocess.Popen([sys.executable, "-m", "pyquint", "interactive", "serve", str(picture),
                             "--idle-timeout", "1"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "idle for 1 s: exiting" in out
    assert not (work / SERVER_FILE).exists()


def test_stale_server_files_are_no_server(picture, tmp_path):
    work = picture.parent / "brain_s003_pyquint"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, timeout=60)
    work.mkdir()
    (work / SERVER_FILE).write_text(json.dumps({"pid": int(dead.stdout), "token": "t", "protocol": 1}))
    assert server_status(work) is None  # fresh heartbeat, but the process is gone
    (work / SERVER_FILE).write_text(json.dumps({"pid": os.getpid(), "token": "t", "protocol": 1}))
    assert server_status(work) is not None
    old = time.time() - 60
    os.utime(work / SERVER_FILE, (old, old))
    assert server_status(work) is None  # a live process, but no heartbeat for a minute
    with pytest.raises(InputError, match="no pyquint server runs"):
        request_step(picture, tmp_path / "l2.png")
    pid = _start(picture)  # takes the folder over
    assert pid != os.getpid() and json.loads((work / SERVER_FILE).read_text())["token"] != "t"
    assert request_step(picture, tmp_path / "l2.png", timeout=120, **OPTIONS)["status"] == "0"


def test_server_that_does_not_answer_times_out(picture, tmp_path):
    work = picture.parent / "brain_s003_pyquint"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    done = _fake_server(work, sleeper.pid)
    try:
        with pytest.raises(InputError, match=r"did not answer within 0.5 s .*pyquint interactive stop"):
            request_step(picture, tmp_path / "l1.png", timeout=0.5, **OPTIONS)
        # stop: the request is never claimed, so the process gets SIGTERM
        assert stop_server(work) is True
        assert sleeper.wait(timeout=30) != 0 and not (work / SERVER_FILE).exists()
        assert not (work / "request.txt").exists()  # no stale request for the next server
    finally:
        done.set()
        sleeper.kill()
        sleeper.wait()


def test_a_server_that_lost_its_folder_stops(picture):
    pid = _start(picture)
    (picture.parent / "brain_s003_pyquint" / SERVER_FILE).unlink()  # e.g. the folder was deleted
    _wait_gone(pid)


def test_serve_bad_input(tmp_path):
    res = _cli("serve", "--detach", str(tmp_path / "none.png"))
    assert res.returncode == 1 and "no such image" in res.stderr and "Traceback" not in res.stderr
