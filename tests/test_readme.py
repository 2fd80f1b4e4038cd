"""The README's QUINT tutorial (and docs/quint.md) run as written.

Every ``bash`` block between ``<!-- readme-test: start -->`` and ``<!-- readme-test: end -->``
is run, in order, by bash in a fresh folder holding a copy of ``sample_data/``, with
``pyquint`` on the PATH meaning this checkout's package; then the files the text promises
are checked.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def command_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    parts = text.split("<!-- readme-test: start -->")
    assert len(parts) >= 2, f"{path} has no '<!-- readme-test: start -->' marker"
    blocks = []
    for part in parts[1:]:
        body = part.split("<!-- readme-test: end -->")[0]
        blocks.extend(BLOCK.findall(body))
    return blocks


@pytest.fixture()
def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    bindir = tmp_path / ".bin"
    bindir.mkdir()
    shim = bindir / "pyquint"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pyquint "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PYQUINT_NO_PROGRESS="1")
    return tmp_path, env


def _run_blocks(blocks: list[str], cwd: Path, env: dict[str, str]) -> str:
    log = []
    for block in blocks:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=600)
        log.append(result.stdout + result.stderr)
        assert result.returncode == 0, f"README block failed:\n{block}\n---\n{result.stdout}{result.stderr}"
    return "\n".join(log)


def test_readme_tutorial_runs_as_written(workdir):
    cwd, env = workdir
    blocks = command_blocks(ROOT / "README.md")
    assert len(blocks) >= 6
    joined = "\n".join(blocks)
    for step in ("pixel train", "pixel predict", "lut apply", "objects train", "objects predict", "quint run"):
        assert f"pyquint {step}" in joined
    output = _run_blocks(blocks, cwd, env)
    assert "Nutil will refuse" not in output  # --nutil-names made every name acceptable
    truth = np.asarray(Image.open(cwd / "sample_data" / "truth" / "brain_s001.png"))
    # the step-by-step object path ends in a Nutil-ready palette PNG: cells red, nothing else
    with Image.open(cwd / "nutil_objects" / "brain_s001.png") as im:
        assert im.mode == "P"
        rgb = np.asarray(im.convert("RGB"))
    red = (rgb == (255, 0, 0)).all(-1)
    assert set(np.unique(np.asarray(Image.open(cwd / "nutil_objects" / "brain_s001.png")))) <= {0, 1}
    f1 = 2 * np.sum(red & (truth == 1)) / (red.sum() + np.sum(truth == 1))
    assert f1 > 0.75 and np.sum(red & (truth == 2)) < 0.25 * np.sum(truth == 2)
    assert sorted(p.name for p in (cwd / "nutil").iterdir()) == [f"brain_s00{i}.png" for i in (1, 2, 3)]
    assert "255,0,0" in (cwd / "nutil_colours.csv").read_text()
    assert sorted(p.name for p in (cwd / "quint_out" / "segmentations").iterdir()) == [
        f"brain_s00{i}.png" for i in (1, 2, 3)]
    assert "segmentations" in output.splitlines()[-1]  # the last message says where the PNGs are


def test_docs_quint_runs_as_written(workdir):
    cwd, env = workdir
    blocks = command_blocks(ROOT / "docs" / "quint.md")
    assert blocks
    _run_blocks(blocks, cwd, env)
    assert (cwd / "fluo_out" / "segmentations" / "brain_s001.png").is_file()
