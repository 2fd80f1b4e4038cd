"""Every generated IJ1 macro run by a real ImageJ (-batch under Xvfb), and the runner's errors.

Each run is a fresh ImageJ subprocess (about 1-3 s). Outputs are compared with pyquint's
Python path where the operation is the same (palette PNGs), else with what ImageJ's own
rules predict (downscale sizes) or with arrays built by hand (ROI label images).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image
from test_imagej import assert_same_palette_png, parse_lut_independently, python_palette_png

from pyquint.cli import main
from pyquint.errors import ImageJError
from pyquint.imagej import find_xvfb, prepare_home, run_macro
from pyquint.macros import generate_macro

GLASBEY_FILES = {"glasbey": "glasbey.lut", "glasbey on dark": "glasbey_on_dark.lut",
                 "glasbey inverted": "glasbey_inverted.lut"}


@pytest.fixture(scope="session")
def macro_home(require_imagej, tmp_path_factory, lut_files) -> Path:
    """An ImageJ home (plugins/ + luts/) holding three Glasbey LUT files in Fiji's formats."""
    if find_xvfb() is None and not os.environ.get("DISPLAY"):
        reason = "ImageJ macro tests need xvfb-run or a DISPLAY (apt-get install xvfb xauth)"
        if os.environ.get("PYQUINT_REQUIRE_IMAGEJ") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("ijhome")
    return prepare_home(home, fiji_luts=lut_files, glasbey=False)


@pytest.fixture(scope="session")
def fiji_luts(lut_files) -> Path:
    return lut_files


@pytest.fixture(scope="session")
def seg_dir(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Label images as ilastik/pyquint write them: 8-bit PNGs and one 16-bit TIFF."""
    folder = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(11)
    labels = {}
    for k, shape in enumerate([(31, 45), (40, 29), (17, 23)]):
        arr = rng.integers(1, 4, shape, dtype=np.uint8)
        arr[0, 0] = 0
        Image.fromarray(arr).save(folder / f"brain_s00{k + 1}.png")
        labels[f"brain_s00{k + 1}"] = arr
    arr16 = rng.integers(0, 256, (12, 19)).astype(np.uint16)
    arr16[0, :3] = [0, 3, 255]
    tifffile.imwrite(folder / "wide_s009.tif", arr16)
    labels["wide_s009"] = arr16.astype(np.uint8)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    return folder, labels


def write_macro(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.ijm"
    path.write_text(text, encoding="utf-8")
    return path


def assert_palette_outputs(out: Path, labels: dict, table: np.ndarray, tmp_path: Path) -> None:
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(labels)
    assert not list(out.glob(".*"))  # no temporary files left behind
    for stem, arr in labels.items():
        ref = python_palette_png(tmp_path / f"ref_{stem}.png", arr, table)
        assert_same_palette_png(out / f"{stem}.png", ref)


# --------------------------------------------------------------------------- LUT macros
@pytest.mark.parametrize("lut_name", list(GLASBEY_FILES))
def test_glasbey_batch_equals_python_path(macro_home, fiji_luts, seg_dir, tmp_path, lut_name):
    folder, labels = seg_dir
    macro = write_macro(tmp_path, "g", generate_macro("glasbey-batch", "ij1"))
    out = tmp_path / "out"
    result = run_macro(macro, {"inDir": folder, "outDir": out, "lut": lut_name}, home=macro_home, timeout=120)
    assert "4 written, 0 skipped" in result.output
    assert_palette_outputs(out, labels, parse_lut_independently(fiji_luts / GLASBEY_FILES[lut_name]), tmp_path)
    if lut_name == "glasbey":
        # Resume: a second run (positional arguments this time) skips every existing output.
        mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
        again = run_macro(macro, [folder, out], home=macro_home, timeout=120)
        assert "0 written, 4 skipped" in again.output
        assert mtimes == {p: p.stat().st_mtime_ns for p in out.iterdir()}


def test_lut_file_and_inline_batches_equal_python_path(macro_home, seg_dir, tmp_path):
    folder, labels = seg_dir
    table = np.random.default_rng(5).integers(0, 256, (256, 3), dtype=np.uint8)
    lut_file = tmp_path / "my custom.lut"  # a space in the path on purpose
    lut_file.write_bytes(np.ascontiguousarray(table.T).tobytes())
    by_file = write_macro(tmp_path, "f", generate_macro("lut-batch", "ij1"))
    run_macro(by_file, {"inDir": folder, "outDir": tmp_path / "a", "lutFile": lut_file},
              home=macro_home, timeout=120)
    assert_palette_outputs(tmp_path / "a", labels, table, tmp_path)
    # Inline: the table lives in the macro, templated values, no argument at all.
    inline = generate_macro("lut-inline-batch", "ij1", lut=str(lut_file), inDir=str(folder),
                            outDir=str(tmp_path / "b"))
    run_macro(write_macro(tmp_path, "i", inline), home=macro_home, timeout=120)
    assert_palette_outputs(tmp_path / "b", labels, table, tmp_path)


def test_pyquint_glasbey_home_equals_pyquint_python_path(require_imagej, seg_dir, tmp_path):
    lut_module = pytest.importorskip("pyquint.lut", reason="pyquint.lut (LUT helper) not present yet")
    folder, labels = seg_dir
    home = prepare_home(tmp_path / "home")  # pyquint's own generated Glasbey files
    macro = write_macro(tmp_path, "g", generate_macro("glasbey-batch", "ij1", lut="glasbey on dark"))
    run_macro(macro, {"inDir": folder, "outDir": tmp_path / "out"}, home=home, timeout=120)
    table = np.asarray(lut_module.glasbey_lut("glasbey_on_dark").table)
    assert_palette_outputs(tmp_path / "out", labels, table, tmp_path)


# --------------------------------------------------------------------------- downscale
def expected_size(n: int, factor: float) -> int:
    return max(1, math.floor(n * factor + 0.5))  # ImageJ macro round(): half up


def test_downscale_batch_sizes(macro_home, tmp_path):
    folder = tmp_path / "sections"
    folder.mkdir()
    rng = np.random.default_rng(2)
    shapes = {"a_s001": (101, 147), "b_s002": (64, 33), "c_s003": (5, 3)}
    for stem, shape in shapes.items():
        Image.fromarray(rng.integers(0, 256, shape + (3,), dtype=np.uint8)).save(folder / f"{stem}.png")
    Image.fromarray(np.full((40, 60), 77, np.uint8)).save(folder / "flat_s004.png")
    shapes["flat_s004"] = (40, 60)
    factor = 0.15
    macro = write_macro(tmp_path, "d", generate_macro("downscale-batch", "ij1", factor=factor))
    result = run_macro(macro, {"inDir": folder, "outDir": tmp_path / "out"}, home=macro_home, timeout=120)
    assert "4 written" in result.output
    for stem, (h, w) in shapes.items():
        with Image.open(tmp_path / "out" / f"{stem}.png") as im:
            assert im.size == (expected_size(w, factor), expected_size(h, factor)), stem
            assert im.mode == ("L" if stem == "flat_s004" else "RGB")
            if stem == "flat_s004":
                assert np.all(np.asarray(im) == 77)  # averaging a constant keeps it


def test_fiji_flavour_runs_on_plain_imagej_via_bound_parameters(macro_home, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "x_s001.tif", np.arange(50 * 70, dtype=np.uint16).reshape(50, 70))
    macro = write_macro(tmp_path, "fiji", generate_macro("downscale-batch", "fiji", factor=0.1))
    run_macro(macro, {"inDir": str(folder), "outDir": str(tmp_path / "out"), "format": "TIFF",
                      "interpolation": "None", "average": False}, home=macro_home, timeout=120)
    out = tifffile.imread(tmp_path / "out" / "x_s001.tif")
    assert out.shape == (5, 7) and out.dtype == np.uint16


# --------------------------------------------------------------------------- pyquint via exec()
def test_classify_macro_execs_the_pyquint_cli(macro_home, tmp_path):
    version = generate_macro("pyquint-classify", "ij1", python=sys.executable, command="--version", options="")
    result = run_macro(write_macro(tmp_path, "v", version), home=macro_home, timeout=120)
    assert re.search(r"pyquint, version \d", result.output)
    assert "[pyquint exit status 0]" in result.output
    # A failing pyquint command becomes an ImageJError carrying pyquint's own message.
    bogus = tmp_path / "model.h5"
    bogus.write_bytes(b"not a model")
    failing = generate_macro("pyquint-classify", "ij1", python=sys.executable, model=str(bogus),
                             inDir=str(tmp_path), outDir=str(tmp_path / "seg"))
    with pytest.raises(ImageJError, match=r"pyquint pixel predict failed: \[pyquint exit status [1-9]\] Error"):
        run_macro(write_macro(tmp_path, "c", failing), home=macro_home, timeout=120)
    # A Python without pyquint (or none at all) is reported, not silently ignored.
    with pytest.raises(ImageJError, match="could not run pyquint"):
        run_macro(write_macro(tmp_path, "n", generate_macro(
            "pyquint-classify", "ij1", python=str(tmp_path / "no-python"), command="--version")),
            home=macro_home, timeout=120)


def test_classify_macro_runs_pixel_prediction(macro_home, tmp_path):
    pixel = pytest.importorskip("pyquint.pixel")
    from pyquint.features import FeatureSelection

    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (24, 30)).clip(0, 255).astype(np.uint8)
    image[6:14, 8:18] = 220
    labels = np.zeros_like(image)
    labels[0:3, :] = 1
    labels[8:12, 10:16] = 2
    matrix = np.zeros((6, 2), bool)
    matrix[0, :] = True
    clf = pixel.PixelClassifier(features=FeatureSelection(matrix, (0.7, 1.6)), n_trees=5, seed=0)
    clf.fit([image], [labels])
    model = tmp_path / "model.h5"
    clf.save(model)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(image).save(folder / "sec_s001.png")
    macro = generate_macro("pyquint-classify", "ij1", python=sys.executable, model=str(model),
                           inDir=str(folder), outDir=str(tmp_path / "seg"))
    run_macro(write_macro(tmp_path, "p", macro), home=macro_home, timeout=300)
    outputs = list((tmp_path / "seg").glob("*.png"))
    assert len(outputs) == 1
    seg = np.asarray(Image.open(outputs[0]))
    assert set(np.unique(seg)) <= {1, 2}
    assert seg[10, 13] == 2 and seg[1, 1] == 1


# --------------------------------------------------------------------------- ROI labels
ROI_SETUP = """
newImage("train_s001", "8-bit ramp", 40, 30, 1);
makeRectangle(2, 3, 10, 6);
roiManager("add");
roiManager("select", 0);
roiManager("rename", "background");
makeRectangle(20, 10, 8, 12);
roiManager("add");
roiManager("select", 1);
roiManager("rename", "cell-1");
makeRectangle(24, 18, 10, 8);
roiManager("add");
roiManager("select", 2);
roiManager("rename", "Cell 2");
"""


def expected_roi_labels() -> np.ndarray:
    expected = np.zeros((30, 40), np.uint8)
    expected[3:9, 2:12] = 1
    expected[10:22, 20:28] = 2
    expected[18:26, 24:34] = 2  # later ROIs paint over earlier ones
    return expected


def test_roi_labels_from_the_roi_manager(macro_home, tmp_path):
    body = generate_macro("roi-labels", "ij1", outDir=str(tmp_path / "labels"))
    run_macro(ROI_SETUP + body, home=macro_home, timeout=120)
    with Image.open(tmp_path / "labels" / "train_s001_labels.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), expected_roi_labels())


def test_roi_labels_folder_mode_and_unknown_class(macro_home, tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    save = ROI_SETUP + f'saveAs("PNG", "{folder}/train_s001.png");\nroiManager("save", "{folder}/train_s001.zip");\n'
    run_macro(save, home=macro_home, timeout=120)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "unlabelled_s002.png")  # no ROI set
    macro = write_macro(tmp_path, "r", generate_macro("roi-labels", "ij1"))
    result = run_macro(macro, {"inDir": folder, "outDir": tmp_path / "labels", "classes": "background, cell"},
                       home=macro_home, timeout=120)
    assert "no ROI set" in result.output and "1 label images written" in result.output
    with Image.open(tmp_path / "labels" / "train_s001_labels.png") as im:
        np.testing.assert_array_equal(np.asarray(im), expected_roi_labels())
    with pytest.raises(ImageJError, match="ROI 'cell-1' of train_s001.png matches none of the classes"):
        run_macro(macro, {"inDir": folder, "outDir": tmp_path / "l2", "classes": "background,nucleus"},
                  home=macro_home, timeout=120)


# --------------------------------------------------------------------------- errors, never a hang
def test_macro_syntax_error_carries_imagej_message(macro_home):
    start = time.monotonic()
    with pytest.raises(ImageJError, match=r"Macro Error.*in line 2") as err:
        run_macro('print("a");\nx = ;\n', home=macro_home, timeout=60)
    assert "x = " in str(err.value)
    assert time.monotonic() - start < 55  # the dialog was caught, not waited out


def test_unknown_lut_name_missing_folder_and_unknown_argument(macro_home, seg_dir, tmp_path):
    folder, _ = seg_dir
    macro = write_macro(tmp_path, "g", generate_macro("glasbey-batch", "ij1"))
    with pytest.raises(ImageJError, match='Unrecognized command: "no such lut"'):
        run_macro(macro, {"inDir": folder, "outDir": tmp_path / "o", "lut": "no such lut"},
                  home=macro_home, timeout=60)
    with pytest.raises(ImageJError, match="input folder not found: .*nowhere"):
        run_macro(macro, {"inDir": tmp_path / "nowhere", "outDir": tmp_path / "o"}, home=macro_home, timeout=60)
    with pytest.raises(ImageJError, match="unknown argument 'inDirr=x'"):
        run_macro(macro, "inDirr=x|outDir=y", home=macro_home, timeout=60)


def test_dialog_waiting_for_user_is_an_error(macro_home):
    with pytest.raises(ImageJError, match="Click OK when ready"):
        run_macro('waitForUser("Click OK when ready");\n', home=macro_home, timeout=60)


def test_hung_imagej_is_killed_at_the_timeout(macro_home):
    start = time.monotonic()
    with pytest.raises(ImageJError, match="did not finish within 4 s"):
        run_macro("wait(120000);\n", home=macro_home, timeout=4)
    assert time.monotonic() - start < 30


def test_plain_java_engine_output_and_hang(macro_home, seg_dir, tmp_path):
    folder, labels = seg_dir
    macro = write_macro(tmp_path, "g", generate_macro("glasbey-batch", "ij1"))
    result = run_macro(macro, {"inDir": folder, "outDir": tmp_path / "out"}, home=macro_home,
                       timeout=120, engine="java")
    assert result.command[-3:-1] == ["-batch", str(macro.resolve())] and "-Dplugins.dir=" + str(macro_home) in result.command
    assert "4 written" in result.output
    # With plain `java -jar ij.jar -batch`, a macro error is a modal dialog: only the timeout ends it.
    start = time.monotonic()
    with pytest.raises(ImageJError, match="did not finish"):
        run_macro("x = ;\n", home=macro_home, timeout=3, engine="java")
    assert time.monotonic() - start < 30


def test_run_macro_cli(macro_home, seg_dir, tmp_path):
    folder, labels = seg_dir
    macro = write_macro(tmp_path, "g", generate_macro("glasbey-batch", "ij1"))
    runner = CliRunner()
    result = runner.invoke(main, ["imagej", "run-macro", str(macro), f"inDir={folder}", f"outDir={tmp_path / 'o'}",
                                  "lut=glasbey inverted", "--home", str(macro_home), "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert "4 written" in result.output
    result = runner.invoke(main, ["imagej", "run-macro", str(macro), f"inDir={tmp_path / 'none'}",
                                  "outDir=x", "--home", str(macro_home), "--timeout", "60"])
    assert result.exit_code == 1 and "input folder not found" in result.output
