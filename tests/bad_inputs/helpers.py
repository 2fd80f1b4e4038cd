"""Builders of hostile files and the runners shared by the bad-input tests.

Every file is built here, byte by byte where needed (a PNG whose IHDR claims 100000², an .npy
header claiming 100000² float64, an HDF5 dataset declared 40000² with no chunk written, model
files with a 10⁶-deep tree or a ``value`` dataset declared (200000, 2000), ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- running
@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    max_rss_mb: float | None = None
    exception: BaseException | None = None


def env_for(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYQUINT_NO_PROGRESS"] = "1"
    env.pop("PYQUINT_DEBUG", None)
    env.update(extra or {})
    return env


def run_inprocess(args: list[str], env: dict | None = None) -> Run:
    """The CLI in this process (fast): click's runner, stderr kept apart."""
    from click.testing import CliRunner

    from pyquint.cli import main

    runner = CliRunner()
    result = runner.invoke(main, [str(a) for a in args], env=env or {}, catch_exceptions=True)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Run(result.exit_code, result.stdout, result.stderr, None, exc)


def start(args: list[str], env: dict | None = None, ignore_sigint: bool = False,
          cwd: Path | None = None) -> subprocess.Popen:
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    return subprocess.Popen([sys.executable, "-m", "pyquint", *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(env), preexec_fn=preexec, cwd=cwd)


def finish(proc: subprocess.Popen, timeout: float = 90, kill=None) -> Run:
    """Wait for ``proc`` (killed after ``timeout`` s: the test then fails on its exit status)
    and read the child's own peak memory from ``wait4``."""
    out_chunks: dict[str, str] = {}

    def drain(name, stream):
        out_chunks[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(n, s)) for n, s in
               (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, kill or proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, out_chunks.get("out", ""), out_chunks.get("err", ""),
               usage.ru_maxrss / 1024.0)


# A child's ru_maxrss starts from its parent's peak RSS: Linux carries the old address
# space's high-water mark across fork/vfork + exec. The pytest process can be several hundred
# MB by then, so the command runs under this small launcher, which reports its grandchild's
# own peak (the launcher itself stays at ~15 MB).
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_subprocess(args: list[str], env: dict | None = None, timeout: float = 90) -> Run:
    """Run ``pyquint args`` in a fresh process; ``max_rss_mb`` is that process's own peak."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "maxrss"
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(report), sys.executable,
                                 "-m", "pyquint", *[str(a) for a in args]],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env_for(env), start_new_session=True)
        run = finish(proc, timeout, kill=lambda: os.killpg(proc.pid, signal.SIGKILL))
        kib = float(report.read_text()) if report.exists() else None
    return Run(run.code, run.stdout, run.stderr, None if kib is None else kib / 1024.0)


# --------------------------------------------------------------------------- state checks
def hashes(folder: Path, skip: Path | None = None) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (skip is None or skip not in p.parents):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporary files, lock files and JVM crash reports under ``folder``."""
    return [str(p) for p in folder.rglob("*")
            if (p.name.startswith(".") and (".tmp" in p.name or p.name == ".pyquint.lock"))
            or p.name.startswith("hs_err_pid")]


# --------------------------------------------------------------------------- hostile images
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000, color_type: int = 0) -> Path:
    """A valid-looking PNG of ~100 bytes whose IHDR claims ``width`` × ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                     + _chunk(b"IEND", b""))
    return path


def jpeg_bomb(path: Path, good_jpeg: Path, size: int = 65_000) -> Path:
    data = bytearray(good_jpeg.read_bytes())
    i = data.find(b"\xff\xc0")
    assert i > 0, "no SOF0 marker"
    struct.pack_into(">HH", data, i + 5, size, size)
    path.write_bytes(bytes(data))
    return path


def npy_bomb(path: Path, shape=(100_000, 100_000), dtype="<f8") -> Path:
    """A 128-byte .npy file whose header claims ``shape`` (80 GB of float64)."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (118 - len(header) - 1) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
    return path


def tiff_bomb(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A hand-made 1-strip uncompressed TIFF header claiming ``width`` × ``height`` uint8."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 200), (277, 3, 1), (278, 4, height), (279, 4, width * height)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        fmt = "<HHIHH" if typ == 3 else "<HHII"
        ifd += struct.pack(fmt, tag, typ, 1, value, 0) if typ == 3 else struct.pack(fmt, tag, typ, 1, value)
    ifd += struct.pack("<I", 0)
    body = b"II*\x00" + struct.pack("<I", 8) + ifd
    path.write_bytes(body + b"\0" * (210 - len(body)))
    return path


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * fraction))])
    return dst


def h5_unwritten(path: Path, shape=(40_000, 40_000), chunks: bool = True) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", shape=shape, dtype="f4", chunks=(256, 256) if chunks else None)
    return path


# --------------------------------------------------------------------------- hostile models
def copy_model(src: Path, dst: Path, edit) -> Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def edit_metadata(change):
    def edit(f):
        meta = json.loads(f.attrs["metadata"])
        change(meta)
        f.attrs["metadata"] = json.dumps(meta)
    return edit


def replace_arrays(f, arrays: dict, declared: dict | None = None) -> None:
    """Replace forest datasets: real ``arrays`` (gzip), and ``declared`` {name: (shape, dtype)}
    datasets that are declared but never written."""
    g = f["forest"]
    for name, arr in arrays.items():
        del g[name]
        g.create_dataset(name, data=arr, compression="gzip", shuffle=True)
    for name, (shape, dtype) in (declared or {}).items():
        del g[name]
        g.create_dataset(name, shape=shape, dtype=dtype, chunks=True, compression="gzip")


def deep_chain(depth: int, n_features: int, n_classes: int) -> dict:
    """One tree: a chain of ``depth`` splits, each with a leaf on the left; every pixel walks to the bottom."""
    n = 2 * depth + 1
    left = np.full(n, -1, np.int32)
    right = np.full(n, -1, np.int32)
    k = np.arange(depth) * 2
    left[k] = k + 1
    right[k] = k + 2
    value = np.zeros((n, n_classes))
    value[:, 0] = 1
    return {"feature": np.where(left >= 0, 0, -1).astype(np.int32),
            "threshold": np.where(left >= 0, -1e9, 0.0), "left": left, "right": right,
            "value": value, "roots": np.array([0], np.int32)}
