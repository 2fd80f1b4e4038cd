"""Every ``--engine imagej`` command ends by itself: each runs as a subprocess with a timeout.

ImageJ is called from worker threads there (sections in a thread pool); a JVM started off
the main thread used to keep the process alive for ever after the last output was written
(JPype's ``shutdownJVM`` waiting in ``DestroyJavaVM``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyquint.data import write_sample_dataset

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 150


def _pyquint(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYQUINT_NO_PROGRESS="1")
    try:
        return subprocess.run([sys.executable, "-m", "pyquint", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`pyquint {' '.join(args)}` did not exit within {TIMEOUT} s "
                    f"(output: {exc.stdout!r} {exc.stderr!r})")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample_dataset(tmp_path_factory.mktemp("exit-sample"), n_sections=2, seed=1)


def _palette_png(path: Path) -> tuple[np.ndarray, list[int]]:
    with Image.open(path) as im:
        assert im.mode == "P", f"{path}: ImageJ writes palette PNGs, not {im.mode}"
        return np.asarray(im), im.getpalette()


def test_quint_run_engine_imagej_exits(sample, tmp_path, require_imagej):
    args = ["quint", "run", "--sections", str(sample / "sections"), "--labels", str(sample / "labels"),
            "--trees", "8", "--classes", "2", "--workers", "2", "--no-objects"]
    ij = _pyquint(*args, "--engine", "imagej", "-o", str(tmp_path / "ij"), cwd=tmp_path)
    assert ij.returncode == 0, ij.stderr
    py = _pyquint(*args, "--engine", "python", "-o", str(tmp_path / "py"), cwd=tmp_path)
    assert py.returncode == 0, py.stderr
    names = sorted(p.name for p in (tmp_path / "ij" / "segmentations").glob("*.png"))
    assert names == sorted(p.name for p in (sample / "sections").iterdir())
    for name in names:
        a, pal_a = _palette_png(tmp_path / "ij" / "segmentations" / name)
        b, pal_b = _palette_png(tmp_path / "py" / "segmentations" / name)
        np.testing.assert_array_equal(a, b)
        assert pal_a[:9] == pal_b[:9]


def test_demo_engine_imagej_exits(tmp_path, require_imagej):
    res = _pyquint("demo", "--engine", "imagej", "-o", str(tmp_path / "demo"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "mean pixel F1" in res.stdout
    pngs = sorted((tmp_path / "demo" / "segmentations").glob("*.png"))
    assert len(pngs) == 3
    data, palette = _palette_png(pngs[0])
    assert set(np.unique(data)) <= {0, 2} and 2 in data


def test_lut_apply_and_imagej_apply_lut_exit(tmp_path, require_imagej):
    seg = tmp_path / "seg"
    seg.mkdir()
    labels = (np.arange(64 * 48).reshape(48, 64) % 7).astype(np.uint8)
    Image.fromarray(labels).save(seg / "a_s001.png")
    res = _pyquint("lut", "apply", str(seg), "-o", str(tmp_path / "o1"), "--engine", "imagej", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = _pyquint("imagej", "apply-lut", "glasbey", str(seg), "-o", str(tmp_path / "o2"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for out in ("o1", "o2"):
        data, _ = _palette_png(tmp_path / out / "a_s001.png")
        np.testing.assert_array_equal(data, labels)
