"""The built wheel carries pyquint's LUT files (package data), so no install regenerates them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_lut_files(tmp_path):
    pytest.importorskip("wheel", reason="building a wheel offline needs the 'wheel' package (dev extra)")
    # Build from a copy: the checkout gets no build/ or egg-info folders.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "pyquint", src / "pyquint",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel_file,) = (tmp_path / "dist").glob("pyquint-*.whl")
    with zipfile.ZipFile(wheel_file) as zf:
        names = set(zf.namelist())
        for variant in ("glasbey", "glasbey_on_dark", "glasbey_inverted"):
            member = f"pyquint/lut/tables/{variant}.lut"
            assert member in names
            assert zf.read(member) == (ROOT / member).read_bytes()
        assert "pyquint/py.typed" in names
