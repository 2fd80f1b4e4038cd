"""The call sites switched to the shared helpers behave as the code they replaced.

Export PNGs go through ``io.write_png``; training folders pair through ``naming.pair_by_name``;
the batch's two-inputs-one-output check is ``naming.check_distinct_outputs``; ``PixelClassifier``
accepts every rounding of ``features.ROUNDINGS``; the pixel CLI reads ``--features`` with
``ilastik.load_feature_selection`` (an ``.ilp`` too).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pyquint.errors import InputError
from pyquint.export import export_array
from pyquint.export import nickname as export_nickname
from pyquint.features import DEFAULT_ROUNDING, ROUNDINGS, FeatureSelection, compute_features
from pyquint.ilastik import read_feature_selection, write_project
from pyquint.io import write_png
from pyquint.naming import check_distinct_outputs, input_file, nickname
from pyquint.pixel import PixelClassifier
from pyquint.pixel_batch import ExportSpec, label_names, pair_training_folders, plan_outputs

RNG = np.random.default_rng(3)


# --------------------------------------------------------------------------- names and PNG
def test_export_names_are_naming_s():
    for raw in ("a/b.h5/vol/data", "sections/brain_s001.png", "x/img.zarr/0"):
        assert export_nickname(raw) == nickname(raw)
    assert nickname("a/b.h5/vol/data") == "b-vol-data"
    assert input_file("a/b.h5/vol/data") == Path("a/b.h5")


@pytest.mark.parametrize("data", [
    RNG.integers(0, 256, (9, 13)).astype(np.uint8),
    RNG.integers(0, 256, (9, 13, 2)).astype(np.uint8),
    RNG.integers(0, 256, (9, 13, 3)).astype(np.uint8),
    RNG.integers(0, 65536, (9, 13)).astype(np.uint16),
], ids=["grey", "grey+alpha", "rgb", "16-bit"])
def test_export_png_is_io_write_png(tmp_path, data):
    axes = "yx" if data.ndim == 2 else "yxc"
    out = export_array(tmp_path / "e.png", data, axes, "png")
    assert out.read_bytes() == write_png(io.BytesIO(), data).getvalue()
    np.testing.assert_array_equal(np.asarray(Image.open(out)), data)


# --------------------------------------------------------------------------- pairing
def _png(path: Path, value: int = 0) -> Path:
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def test_training_folders_pair_by_name(tmp_path):
    imgs, labs = tmp_path / "img", tmp_path / "lab"
    imgs.mkdir(), labs.mkdir()
    for name in ("brain_s001", "brain_s002", "plain"):
        _png(imgs / f"{name}.png")
    _png(labs / "brain_labels_s001.png")  # Nutil's section id stays last
    _png(labs / "brain_s002_labels.png")
    _png(labs / "plain.png")              # the same name in another folder
    images, labels = pair_training_folders(imgs, labs)
    assert [p.name for p in images] == ["brain_s001.png", "brain_s002.png", "plain.png"]
    assert [p.name for p in labels] == ["brain_labels_s001.png", "brain_s002_labels.png", "plain.png"]
    assert label_names("brain_s001.png")[:2] == ["brain_s001", "brain_s001_labels"]
    (labs / "plain.png").unlink()
    with pytest.raises(InputError, match=r"plain\.png: no label image for it"):
        pair_training_folders(imgs, labs)


def test_training_pairs_from_one_folder(tmp_path):
    for name in ("a", "a_labels", "b"):  # b has no labels: not a training image here
        _png(tmp_path / f"{name}.png")
    images, labels = pair_training_folders(tmp_path, tmp_path)
    assert [p.name for p in images] == ["a.png"] and [p.name for p in labels] == ["a_labels.png"]
    (tmp_path / "a_labels.png").unlink()
    with pytest.raises(InputError, match="no image in .* has a label image"):
        pair_training_folders(tmp_path, tmp_path)


def test_two_inputs_on_one_output_are_refused_one_input_may_repeat(tmp_path):
    check_distinct_outputs([tmp_path / "a.png", tmp_path / "a.png"], [tmp_path / "o.h5"] * 2)
    with pytest.raises(InputError, match=r"a\.png and .*b\.tif would both be written to"):
        check_distinct_outputs(["a.png", "b.tif"], [tmp_path / "o.h5", Path(os.path.relpath(tmp_path / "o.h5"))])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _png(tmp_path / "a" / "x.png"), _png(tmp_path / "b" / "x.png")
    spec = ExportSpec(output_dir=tmp_path / "out")
    with pytest.raises(InputError, match="would both be written to"):
        plan_outputs([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], spec)
    # several sources of one input into one file is one input's business, not a collision
    spec = ExportSpec(sources=("Probabilities", "Uncertainty"), output_dir=tmp_path / "out",
                      filename_format="{dataset_dir}/{nickname}")
    plan = plan_outputs([tmp_path / "a" / "x.png"], spec)
    assert len(set(next(iter(plan.values())).values())) == 1


# --------------------------------------------------------------------------- roundings
def test_pixel_classifier_takes_every_feature_rounding(tmp_path):
    assert PixelClassifier().rounding == DEFAULT_ROUNDING
    image = RNG.normal(100, 5, (40, 40)).astype(np.float32)
    image[:, 20:] += 40
    labels = np.zeros((40, 40), np.uint8)
    labels[5, 2:15], labels[30, 25:38] = 1, 2
    sel = FeatureSelection(np.eye(6, 2, dtype=bool), (1.0, 1.6))
    assert "vigra" in ROUNDINGS
    clf = PixelClassifier(features=sel, n_trees=5, seed=1, rounding="vigra").fit(image, labels)
    np.testing.assert_array_equal(clf.transform(image),
                                  compute_features(image, sel, rounding="vigra"))
    loaded = PixelClassifier.load(clf.save(tmp_path / "m.h5"))
    assert loaded.rounding == "vigra"
    np.testing.assert_array_equal(loaded.predict_proba(image), clf.predict_proba(image))
    with pytest.raises(InputError, match="rounding must be one of"):
        PixelClassifier(features=sel, rounding="approx").fit(image, labels)


def test_cli_train_reads_features_from_an_ilp(tmp_path):
    image = RNG.integers(0, 200, (48, 48)).astype(np.uint8)
    image[:, 24:] += 50
    labels = np.zeros((48, 48), np.uint8)
    labels[6, 2:20], labels[40, 28:46] = 1, 2
    Image.fromarray(image).save(tmp_path / "s.png")
    Image.fromarray(labels).save(tmp_path / "s_labels.png")
    # a project whose selection is neither a default nor "all": three features at two scales
    matrix = np.zeros((6, 3), bool)
    matrix[0, 0] = matrix[3, 1] = matrix[5, 2] = True
    pc_ilp = write_project(tmp_path / "sel.ilp", [image], [labels],
                           FeatureSelection(matrix, (0.7, 1.6, 3.5)), ["a", "b"], axes="yx")
    model = tmp_path / "m.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "pyquint", "pixel", "train", "--images-dir", str(tmp_path),
         "--labels-dir", str(tmp_path), "--features", str(pc_ilp), "--trees", "3", "--seed", "0",
         "-o", str(model)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYQUINT_NO_PROGRESS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert PixelClassifier.load(model).features.to_dict() == read_feature_selection(pc_ilp).to_dict()
    with h5py.File(model, "r") as f:  # a real model file
        assert "forest" in f
    proc = subprocess.run(
        [sys.executable, "-m", "pyquint", "pixel", "train", "--images-dir", str(tmp_path),
         "--labels-dir", str(tmp_path), "--features", "bogus", "-o", str(tmp_path / "n.h5")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYQUINT_NO_PROGRESS": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: --features 'bogus': use 'all', 'steinbock', a JSON object, a .json file or an "
        ".ilp project"]
