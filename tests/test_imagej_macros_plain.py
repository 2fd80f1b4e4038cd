"""Every shipped macro in imagej_macros/, run exactly as a user types it.

``xvfb-run -a java -jar ij.jar -batch imagej_macros/<flavour>/<name>.ijm "args"`` from a
folder without ``luts/`` and with no ``-Dplugins.dir``: each macro either does its job or
stops at once with a message. A modal dialog would hang ``-batch``: the timeout catches it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_imagej import assert_same_palette_png, python_palette_png

ROOT = Path(__file__).resolve().parents[1]
MACROS = ROOT / "imagej_macros"
TIMEOUT = 60


@pytest.fixture(scope="module")
def plain_batch(require_imagej):
    """Run a shipped macro with plain ``java -jar ij.jar -batch`` under Xvfb."""
    from pyquint.imagej import find_imagej, find_java, find_xvfb

    xvfb = find_xvfb()
    if xvfb is None:
        pytest.skip("plain -batch macro runs need xvfb-run (apt-get install xvfb xauth)")
    install = find_imagej()
    java = find_java(None, install)

    def run(macro: Path, arg: str, cwd: Path) -> str:
        cmd = [str(xvfb), "-a", str(java), "-jar", str(install.ij_jar), "-batch", str(macro), arg]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYQUINT_NO_PROGRESS="1")
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"{macro.name} did not end within {TIMEOUT} s (a modal dialog?): {out[-1000:]}")
        assert proc.returncode == 0, out
        assert "Exception" not in out, out
        return out

    return run


@pytest.fixture()
def labels_dir(tmp_path):
    folder = tmp_path / "seg"
    folder.mkdir()
    rng = np.random.default_rng(4)
    labels = {f"brain_s00{k}": rng.integers(0, 256, (23, 31), dtype=np.uint8) for k in (1, 2)}
    for stem, arr in labels.items():
        Image.fromarray(arr).save(folder / f"{stem}.png")
    return folder, labels


def _assert_coloured(out: Path, labels: dict, table: np.ndarray, tmp_path: Path) -> None:
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(labels)
    for stem, arr in labels.items():
        assert_same_palette_png(out / f"{stem}.png", python_palette_png(tmp_path / f"ref_{stem}.png", arr, table))


@pytest.mark.parametrize("lut", ["glasbey", "glasbey on dark", "glasbey inverted"])
def test_glasbey_batch_without_luts_folder_uses_embedded_table(plain_batch, labels_dir, tmp_path, lut):
    from pyquint.lut import glasbey_lut

    folder, labels = labels_dir
    out = plain_batch(MACROS / "ij1" / "glasbey_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'out'}|lut={lut}",
                      tmp_path)
    assert "embedded in this macro" in out and "2 written" in out
    _assert_coloured(tmp_path / "out", labels, glasbey_lut(lut).table, tmp_path)


def test_glasbey_batch_unknown_lut_stops_with_a_message(plain_batch, labels_dir, tmp_path):
    folder, _ = labels_dir
    out = plain_batch(MACROS / "ij1" / "glasbey_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'o'}|lut=fire",
                      tmp_path)
    assert 'Unrecognized command: "fire"' in out and "lut-batch" in out
    assert not list((tmp_path / "o").glob("*.png"))


def test_glasbey_batch_prefers_the_luts_folder(plain_batch, labels_dir, tmp_path):
    folder, labels = labels_dir
    table = np.random.default_rng(9).integers(0, 256, (256, 3), dtype=np.uint8)
    (tmp_path / "luts").mkdir()  # ImageJ's luts folder is <cwd>/luts for a bare ij.jar
    (tmp_path / "luts" / "glasbey.lut").write_bytes(np.ascontiguousarray(table.T).tobytes())
    out = plain_batch(MACROS / "ij1" / "glasbey_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'out'}", tmp_path)
    assert "embedded" not in out
    _assert_coloured(tmp_path / "out", labels, table, tmp_path)


def test_lut_batches(plain_batch, labels_dir, tmp_path):
    folder, labels = labels_dir
    table = np.random.default_rng(5).integers(0, 256, (256, 3), dtype=np.uint8)
    lut_file = tmp_path / "mine.lut"
    lut_file.write_bytes(np.ascontiguousarray(table.T).tobytes())
    plain_batch(MACROS / "ij1" / "lut_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'a'}|lutFile={lut_file}",
                tmp_path)
    _assert_coloured(tmp_path / "a", labels, table, tmp_path)
    out = plain_batch(MACROS / "ij1" / "lut_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'b'}", tmp_path)
    assert "LUT file not found" in out
    from pyquint.lut import glasbey_lut

    plain_batch(MACROS / "ij1" / "lut_inline_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'c'}", tmp_path)
    _assert_coloured(tmp_path / "c", labels, glasbey_lut("glasbey").table, tmp_path)


def test_downscale_roi_labels_and_classify(plain_batch, tmp_path):
    folder = tmp_path / "sections"
    folder.mkdir()
    Image.fromarray(np.full((40, 60), 50, np.uint8)).save(folder / "a_s001.png")
    plain_batch(MACROS / "ij1" / "downscale_batch.ijm", f"inDir={folder}|outDir={tmp_path / 'small'}|factor=0.5",
                tmp_path)
    with Image.open(tmp_path / "small" / "a_s001.png") as im:
        assert im.size == (30, 20)
    out = plain_batch(MACROS / "ij1" / "roi_labels.ijm", f"outDir={tmp_path / 'labels'}", tmp_path)
    assert "no image is open" in out
    out = plain_batch(MACROS / "ij1" / "pyquint_classify.ijm", f"python={sys.executable}|command=--version|options=",
                      tmp_path)
    assert "[pyquint exit status 0]" in out
    out = plain_batch(MACROS / "ij1" / "pyquint_classify.ijm", f"model={tmp_path / 'none.h5'}", tmp_path)
    assert "model file not found" in out


@pytest.mark.parametrize("macro", sorted(p.name for p in (MACROS / "fiji").glob("*.ijm")))
def test_fiji_flavour_stops_at_once_on_plain_imagej(plain_batch, tmp_path, macro):
    out = plain_batch(MACROS / "fiji" / macro, "", tmp_path)
    assert "this is the Fiji flavour" in out and f"imagej_macros/ij1/{macro}" in out
