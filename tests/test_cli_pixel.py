"""``pyquint pixel train`` / ``predict`` end to end on small synthetic sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pyquint.cli import main
from pyquint.data import write_sample_dataset
from pyquint.io import read_image, to_canonical
from pyquint.pixel import PixelClassifier

FEATURES = json.dumps({"matrix": [[1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1]],
                       "scales": [0.3, 1.0, 1.6]})


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pix")
    write_sample_dataset(root, n_sections=2, seed=3, shape=(96, 112))
    model = root / "model.h5"
    run("pixel", "train", "--images-dir", root / "sections", "--labels-dir", root / "labels",
        "--features", FEATURES, "--trees", 12, "--seed", 5, "--class-names", "Background,Stain",
        "-o", model)
    return root, model


def _api_model(root):
    imgs, labs = [], []
    for name in ("brain_s001.png", "brain_s002.png"):
        imgs.append(to_canonical(*read_image(root / "sections" / name))[0])
        labs.append(to_canonical(*read_image(root / "labels" / name))[0])
    from pyquint.features import FeatureSelection

    sel = FeatureSelection.from_dict(json.loads(FEATURES))
    return PixelClassifier(sel, n_trees=12, seed=5, class_names=["Background", "Stain"]).fit(imgs, labs), imgs


def test_train_writes_the_same_model_as_the_api(dataset):
    root, model = dataset
    clf = PixelClassifier.load(model)
    api, _ = _api_model(root)
    assert clf.forest_ == api.forest_
    assert clf.class_names_ == ["Background", "Stain"] and clf.seed_ == 5
    with h5py.File(model, "r") as f:
        assert f.attrs["kind"] == "pixel"


def test_predict_end_to_end_and_resume(dataset, tmp_path):
    root, model = dataset
    out = tmp_path / "out"
    r = run("pixel", "predict", model, root / "sections", "--export-source", "Simple Segmentation",
            "--export-source", "probabilities", "--export-source", "UNCERTAINTY",
            "--output-format", "png", "-o", out)
    assert "wrote 6 file(s)" in r.output
    clf = PixelClassifier.load(model)
    image = to_canonical(*read_image(root / "sections" / "brain_s002.png"))[0]
    proba = clf.predict_proba(image)
    with Image.open(out / "brain_s002_Simple Segmentation.png") as im:
        seg = np.asarray(im)
    assert np.array_equal(seg, proba.argmax(-1) + 1) and set(np.unique(seg)) <= {1, 2}
    truth = np.asarray(Image.open(root / "truth" / "brain_s002.png"))
    assert ((seg == 2) == (truth > 0)).mean() > 0.9
    with Image.open(out / "brain_s002_Probabilities.png") as im:
        assert im.mode == "LA"  # 2 channels -> grey + alpha, as vigra writes them
    # resume: nothing is recomputed; --overwrite recomputes
    before = os.stat(out / "brain_s001_Uncertainty.png").st_mtime_ns
    r = run("pixel", "predict", model, root / "sections", "--export-source", "Simple Segmentation",
            "--export-source", "probabilities", "--export-source", "UNCERTAINTY",
            "--output-format", "png", "-o", out)
    assert "wrote 0 file(s), skipped 6" in r.output
    (out / "brain_s001_Uncertainty.png").unlink()
    r = run("pixel", "predict", model, root / "sections", "--export-source", "uncertainty",
            "--output-format", "png", "-o", out)
    assert "wrote 1 file(s), skipped 1" in r.output
    r = run("pixel", "predict", model, root / "sections" / "brain_s001.png", "--export-source",
            "uncertainty", "--output-format", "png", "-o", out, "--overwrite")
    assert "wrote 1 file(s)" in r.output and os.stat(out / "brain_s001_Uncertainty.png").st_mtime_ns != before


def test_predict_h5_default_names_beside_inputs(dataset, tmp_path):
    root, model = dataset
    src = tmp_path / "in"
    src.mkdir()
    for name in ("brain_s001.png", "brain_s002.png"):
        (src / name).write_bytes((root / "sections" / name).read_bytes())
    run("pixel", "predict", model, src, "--export_source", "Probabilities", "--export_source", "Features")
    clf = PixelClassifier.load(model)
    image = to_canonical(*read_image(src / "brain_s001.png"))[0]
    with h5py.File(src / "brain_s001_Probabilities.h5", "r") as f:
        ds = f["exported_data"]
        assert np.array_equal(ds[()], clf.predict_proba(image))
        assert "".join(a["key"] for a in json.loads(ds.attrs["axistags"])["axes"]) == "yxc"
    with h5py.File(src / "brain_s001_Features.h5", "r") as f:
        assert f["exported_data"].shape == image.shape[:2] + (len(clf.feature_names_),)
    # the folder now holds earlier outputs; they are not taken as new inputs
    r = run("pixel", "predict", model, src, "--export-source", "Probabilities", "--export-source", "Features")
    assert "wrote 0 file(s), skipped 4" in r.output
    r = run("pixel", "predict", model, src, "--export-source", "Uncertainty", "--output-format", "tiff")
    assert "wrote 2 file(s)" in r.output


def test_predict_never_writes_over_inputs(dataset, tmp_path):
    root, model = dataset
    src = tmp_path / "in"
    src.mkdir()
    (src / "brain_s001.png").write_bytes((root / "sections" / "brain_s001.png").read_bytes())
    before = (src / "brain_s001.png").read_bytes()
    r = run("pixel", "predict", model, src, "-o", src, "--output-filename-format",
            "{dataset_dir}/{nickname}", "--output-format", "png", ok=False)
    assert "would overwrite an input" in r.output
    assert (src / "brain_s001.png").read_bytes() == before


def test_cli_errors_are_clear(dataset, tmp_path):
    root, model = dataset
    r = run("pixel", "predict", model, root / "sections", "--export-source", "segmentation", ok=False)
    assert "unknown export source" in r.output
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    r = run("pixel", "predict", bad, root / "sections", ok=False)
    assert "bad.h5" in r.output and "Traceback" not in r.output
    r = run("pixel", "train", root / "sections" / "brain_s001.png", "-o", tmp_path / "m.h5", ok=False)
    assert "0 label image" in r.output
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    r = run("pixel", "train", root / "sections" / "brain_s001.png", "-l", small, "-o",
            tmp_path / "m.h5", ok=False)
    assert "does not match" in r.output
    r = run("pixel", "train", "--images-dir", root / "sections", "--labels-dir", tmp_path, "-o",
            tmp_path / "m.h5", ok=False)
    assert "no label image" in r.output or "no files" in r.output
    r = run("pixel", "train", "--images-dir", root / "sections", "--labels-dir", root / "labels",
            "-o", model, ok=False)
    assert "--overwrite" in r.output
    r = run("pixel", "train", "--images-dir", root / "sections", "--labels-dir", root / "labels",
            "--features", "{\"matrix\": 3}", "-o", tmp_path / "m.h5", ok=False)
    assert "matrix" in r.output
    # a 3-channel image for a 1-channel model: reported per input, exit code non-zero
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(rgb / "c.png")
    r = run("pixel", "predict", model, rgb, ok=False)
    assert "1 input(s) failed" in r.output and "3 channel" in r.output
    assert not (rgb / "c_Probabilities.h5").exists()


def test_help_texts():
    r = run("pixel", "--help")
    assert "train" in r.output and "predict" in r.output
    r = run("pixel", "predict", "--help")
    for word in ("--export-source", "--output-format", "--output-filename-format", "--overwrite",
                 "{nickname}"):
        assert word in r.output
    r = run("pixel", "train", "--help")
    assert "--labels-dir" in r.output and "--seed" in r.output


def test_console_script_runs(dataset, tmp_path):
    root, model = dataset
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-c", "from pyquint.cli import main; main()", "pixel", "predict", str(model),
         str(root / "sections" / "brain_s001.png"), "--export-source", "simple segmentation",
         "--output-format", "tif", "-o", str(out)],
        capture_output=True, text=True, env={**os.environ, "PYQUINT_NO_PROGRESS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    data, axes = read_image(out / "brain_s001_Simple Segmentation.tif")
    assert data.dtype == np.uint8 and set(np.unique(data)) <= {1, 2}
