"""LUT lookup by name and the `pyquint lut` command line, end to end."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pyquint.cli import main
from pyquint.errors import InputError
from pyquint.lut import PYQUINT_LUT_DIR, builtin_lut, find_lut, load_lut, read_lut


@pytest.fixture()
def fiji_app(tmp_path, lut_files):
    """A Fiji.app layout whose luts/ holds three Glasbey files in Fiji's formats (in tmp only)."""
    luts = tmp_path / "Fiji.app" / "luts"
    luts.mkdir(parents=True)
    for f in lut_files.glob("*.lut"):
        (luts / f.name).write_bytes(f.read_bytes())
    return tmp_path / "Fiji.app"


@pytest.fixture()
def runner(monkeypatch):
    monkeypatch.delenv("FIJI_HOME", raising=False)
    monkeypatch.delenv("PYQUINT_FIJI", raising=False)
    return CliRunner()


def test_find_lut_order_and_names(fiji_app, tmp_path, monkeypatch, lut_files):
    monkeypatch.delenv("FIJI_HOME", raising=False)
    monkeypatch.delenv("PYQUINT_FIJI", raising=False)
    assert find_lut("glasbey") == PYQUINT_LUT_DIR / "glasbey.lut"
    assert find_lut("Glasbey On Dark") == PYQUINT_LUT_DIR / "glasbey_on_dark.lut"
    assert find_lut("glasbey_inverted.lut") == PYQUINT_LUT_DIR / "glasbey_inverted.lut"
    assert find_lut("glasbey on dark", fiji_app) == fiji_app / "luts" / "glasbey_on_dark.lut"
    assert find_lut("glasbey", fiji_app / "luts") == fiji_app / "luts" / "glasbey.lut"
    monkeypatch.setenv("FIJI_HOME", str(fiji_app))
    assert find_lut("GLASBEY") == fiji_app / "luts" / "glasbey.lut"
    explicit = lut_files / "glasbey.lut"
    assert find_lut(explicit) == explicit
    with pytest.raises(InputError, match="not found"):
        find_lut("nosuchlut")
    with pytest.raises(InputError, match="no such LUT file"):
        find_lut(tmp_path / "missing.lut")
    with pytest.raises(InputError, match="does not exist"):
        find_lut("glasbey", tmp_path / "nofiji")
    with pytest.raises(InputError, match="luts/"):
        find_lut("glasbey", tmp_path)


def test_load_lut_builtin_and_generated(monkeypatch):
    monkeypatch.delenv("FIJI_HOME", raising=False)
    monkeypatch.delenv("PYQUINT_FIJI", raising=False)
    grays = load_lut("grays")
    assert np.array_equal(grays.table, np.repeat(np.arange(256)[:, None], 3, 1))
    assert load_lut("red").color(200) == (200, 0, 0)
    assert builtin_lut("3-3-2 RGB").color(0xFF) == (0xE0, 0xE0, 0xC0)
    assert load_lut("red/green").color(130) == (0, 4, 0)
    assert builtin_lut("glasbey") is None
    # a glasbey file missing everywhere is generated instead
    monkeypatch.setattr("pyquint.lut.library.PYQUINT_LUT_DIR", PYQUINT_LUT_DIR / "nonexistent")
    monkeypatch.setattr("pyquint.lut.glasbey.glasbey_palette", lambda *a, **k: np.zeros((256, 3), np.uint8))
    monkeypatch.setattr("pyquint.lut.glasbey._glasbey_table", lambda: np.zeros((256, 3), np.uint8))
    assert load_lut("glasbey").name == "glasbey"


def _labels(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    arrays = []
    for i in range(1, n + 1):
        lab = rng.integers(0, 4, (20, 30)).astype(np.uint8)
        Image.fromarray(lab).save(folder / f"brain_s{i:03d}.png")
        arrays.append(lab)
    return arrays


def test_apply_folder_resume_overwrite(runner, tmp_path):
    arrays = _labels(tmp_path / "seg")
    out = tmp_path / "out"
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "--lut", "glasbey", "-o", str(out)])
    assert res.exit_code == 0, res.output
    fiji = read_lut(PYQUINT_LUT_DIR / "glasbey.lut")  # Fiji's first entries (white, blue, red, green)
    for i, lab in enumerate(arrays, 1):
        with Image.open(out / f"brain_s{i:03d}.png") as im:
            assert im.mode == "P" and np.array_equal(np.asarray(im), lab)
            assert np.array_equal(np.array(im.getpalette()).reshape(-1, 3)[:4], fiji.table[:4])
    stamp = (out / "brain_s001.png").stat().st_mtime_ns
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(out)])
    assert res.exit_code == 0 and "0 written, 2 skipped" in res.output
    assert (out / "brain_s001.png").stat().st_mtime_ns == stamp
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(out), "--overwrite", "--rgb",
                               "--set", "2=1,2,3"])
    assert res.exit_code == 0 and "2 written" in res.output
    with Image.open(out / "brain_s001.png") as im:
        rgb = np.asarray(im)
    assert im.mode == "RGB" and tuple(rgb[arrays[0] == 2][0]) == (1, 2, 3)
    assert tuple(rgb[arrays[0] == 1][0]) == (0, 0, 255)


def test_apply_never_over_input_and_bad_inputs(runner, tmp_path):
    _labels(tmp_path / "seg", 1)
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(tmp_path / "seg")])
    assert res.exit_code != 0 and "overwrite an input" in res.output
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "rgb.png"), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "3 channels" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o" / "rgb.png").exists()
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(tmp_path / "o"), "--set", "2=300,0,0"])
    assert res.exit_code != 0 and "--set" in res.output
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(tmp_path / "o"), "--lut", "nolut"])
    assert res.exit_code != 0 and "not found" in res.output


def test_apply_16bit_warns(runner, tmp_path):
    lab = np.array([[0, 1, 2], [3, 2, 1]], np.uint16)
    Image.fromarray(lab).save(tmp_path / "l_s001.png")
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "l_s001.png"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 0 and "rescale" in res.output
    with Image.open(tmp_path / "o" / "l_s001.png") as im:
        assert np.array_equal(np.asarray(im), lab)


def test_apply_check_names(runner, tmp_path):
    folder = tmp_path / "seg"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "brain-1.png")
    res = runner.invoke(main, ["lut", "apply", str(folder), "-o", str(tmp_path / "o"), "--check-names"])
    assert res.exit_code != 0 and "brain-1.png" in res.output and "section id" in res.output
    assert not (tmp_path / "o").exists()


def test_apply_imagej_engine_missing(runner, tmp_path, monkeypatch):
    _labels(tmp_path / "seg", 1)
    import pyquint

    monkeypatch.setitem(sys.modules, "pyquint.imagej", None)  # import fails
    monkeypatch.delattr(pyquint, "imagej", raising=False)     # even if imported earlier
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(tmp_path / "o"), "--engine", "imagej"])
    assert res.exit_code != 0 and "pyquint.imagej" in res.output


def test_apply_imagej_engine_hook(runner, tmp_path, monkeypatch):
    import types

    _labels(tmp_path / "seg", 2)
    calls = []
    fake = types.ModuleType("pyquint.imagej")
    fake.apply_lut_imagej = lambda src, lut_path, dst: calls.append((read_lut(lut_path).color(2), dst.name))
    monkeypatch.setitem(sys.modules, "pyquint.imagej", fake)
    monkeypatch.setattr("pyquint.imagej", fake, raising=False)
    res = runner.invoke(main, ["lut", "apply", str(tmp_path / "seg"), "-o", str(tmp_path / "o"), "--engine", "imagej",
                               "--set", "2=9,9,9"])
    assert res.exit_code == 0, res.output
    assert calls == [((9, 9, 9), "brain_s001.png"), ((9, 9, 9), "brain_s002.png")]


def test_show_convert(runner, tmp_path, lut_files):
    res = runner.invoke(main, ["lut", "show", "glasbey on dark", "-o", str(tmp_path / "ramp.png")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "ramp.png") as im:
        assert im.size == (256, 32) and im.mode == "P"
        assert np.array_equal(np.asarray(im)[5], np.arange(256))
        assert np.array_equal(np.array(im.getpalette()).reshape(-1, 3), read_lut(PYQUINT_LUT_DIR / "glasbey_on_dark.lut").table)
    src = lut_files / "glasbey.lut"
    res = runner.invoke(main, ["lut", "convert", str(src), str(tmp_path / "g.lut"), "--set", "2=0,0,0"])
    assert res.exit_code == 0, res.output
    assert os.path.getsize(tmp_path / "g.lut") == 768 and read_lut(tmp_path / "g.lut").color(2) == (0, 0, 0)
    res = runner.invoke(main, ["lut", "convert", str(tmp_path / "g.lut"), str(tmp_path / "g.txt"), "--format", "text"])
    assert res.exit_code == 0 and read_lut(tmp_path / "g.txt").table.tolist() == read_lut(tmp_path / "g.lut").table.tolist()
    res = runner.invoke(main, ["lut", "convert", str(tmp_path / "g.lut"), str(tmp_path / "g.lut")])
    assert res.exit_code != 0 and "overwrite the input" in res.output
    res = runner.invoke(main, ["lut", "convert", str(src), str(tmp_path / "g.txt")])
    assert res.exit_code != 0 and "--overwrite" in res.output


def test_make_glasbey_cli(runner, tmp_path):
    res = runner.invoke(main, ["lut", "make-glasbey", "--out", str(tmp_path), "--variant", "glasbey"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "glasbey.lut").read_bytes() == (PYQUINT_LUT_DIR / "glasbey.lut").read_bytes()


def test_nutil_table_and_check_names_cli(runner, tmp_path):
    res = runner.invoke(main, ["lut", "nutil-table", "--class", "1=background", "--class", "2=cells",
                               "-o", str(tmp_path / "t.json"), "--legend", str(tmp_path / "legend.png")])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[1]["nutil_rgb"] == "255,0,0" and rows[1]["pynutil_pixel_id"] == [0, 0, 255]
    with Image.open(tmp_path / "legend.png") as im:
        assert im.mode == "RGB" and im.size[1] == 6 + 2 * 30
    (tmp_path / "names").mkdir()
    for n in ("a_s001.png", "b_s001.png", "c.png"):
        (tmp_path / "names" / n).write_bytes(b"")
    res = runner.invoke(main, ["lut", "check-names", str(tmp_path / "names")])
    assert res.exit_code == 1 and "b_s001.png" in res.output and "c.png" in res.output
    res = runner.invoke(main, ["lut", "check-names", str(tmp_path / "names" / "a_s001.png")])
    assert res.exit_code == 0


def test_help_texts(runner):
    for cmd in ("apply", "show", "convert", "make-glasbey", "nutil-table", "check-names"):
        res = runner.invoke(main, ["lut", cmd, "--help"])
        assert res.exit_code == 0 and len(res.output) > 200


def test_apply_warns_about_names_nutil_refuses_and_renames(runner, tmp_path):
    seg = tmp_path / "seg"
    seg.mkdir()
    lab = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    Image.fromarray(lab).save(seg / "brain_s001_Simple Segmentation.png")
    res = runner.invoke(main, ["lut", "apply", str(seg), "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "space in the name; Nutil needs names without spaces" in res.output
    assert "--nutil-names" in res.output and "brain_s001.png" in res.output
    assert (tmp_path / "a" / "brain_s001_Simple Segmentation.png").is_file()
    res = runner.invoke(main, ["lut", "apply", str(seg), "-o", str(tmp_path / "b"), "--nutil-names",
                               "--classes", "2"])
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    with Image.open(tmp_path / "b" / "brain_s001.png") as im:  # only class 2 keeps its index
        assert np.array_equal(np.asarray(im), np.where(lab == 2, 2, 0))
    res = runner.invoke(main, ["lut", "apply", str(seg), "-o", str(tmp_path / "c"), "--check-names"])
    assert res.exit_code == 1 and "space in the name" in res.output and not (tmp_path / "c").exists()
    res = runner.invoke(main, ["lut", "apply", str(seg), "-o", str(tmp_path / "d"), "--classes", "0"])
    assert res.exit_code == 2 and "label values 1..255" in res.output


def test_nutil_name():
    from pyquint.lut import nutil_name

    assert nutil_name("brain_s001_Simple Segmentation.png") == "brain_s001.png"
    assert nutil_name("tg 2.3_s012_Object Predictions.tif") == "tg_2_3_s012.png"
    assert nutil_name("brain_s001.png") == "brain_s001.png"
