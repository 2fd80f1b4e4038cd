"""``pyquint objects threshold|train|predict`` end to end."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from pyquint.cli import main
from pyquint.data import write_sample_dataset
from pyquint.io import read_image, write_image
from pyquint.objects import load_probabilities, threshold_objects


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("objects_cli")
    write_sample_dataset(root, n_sections=2, seed=0, shape=(128, 160))
    for png in sorted((root / "sections").glob("*.png")):
        image, _ = read_image(png)
        # a stand-in for pixel classification: darkness as "Stain" probability (channel 0)
        proba = np.clip((190.0 - image.astype(np.float32)) / 80.0, 0, 1)
        write_image(root / "proba" / f"{png.stem}_Probabilities.h5/exported_data", proba, "yxc")
    return root


def _invoke(*args: str):
    return CliRunner().invoke(main, ["objects", *args], catch_exceptions=False)


def test_threshold_writes_identities_and_resumes(dataset, tmp_path):
    out = tmp_path / "thr"
    res = _invoke("threshold", str(dataset / "proba"), "-o", str(out), "--threshold", "0.4")
    assert res.exit_code == 0, res.output
    assert "thresholded 2 file(s), skipped 0" in res.output
    path = out / "brain_s001_Object Identities.h5"
    with h5py.File(path) as f:
        labels = f["exported_data"][()][..., 0]
    proba, _ = load_probabilities(dataset / "proba" / "brain_s001_Probabilities.h5")
    np.testing.assert_array_equal(labels, threshold_objects(proba, threshold=0.4))
    assert labels.dtype == np.uint32 and labels.max() > 5
    res = _invoke("threshold", str(dataset / "proba"), "-o", str(out))
    assert "thresholded 0 file(s), skipped 2" in res.output
    res = _invoke("threshold", str(dataset / "proba"), "-o", str(out), "--overwrite")
    assert "thresholded 2 file(s), skipped 0" in res.output


def test_threshold_bad_input(dataset, tmp_path):
    res = _invoke("threshold", str(dataset / "proba"), "-o", str(tmp_path), "--threshold", "1.2")
    assert res.exit_code != 0 and "must lie in [0, 1]" in res.output
    res = _invoke("threshold", str(dataset / "proba"), "-o", str(tmp_path), "--channel", "3")
    assert res.exit_code != 0 and "channel 3 is out of range" in res.output
    res = _invoke("threshold", str(dataset / "proba"), "-o", str(tmp_path), "--min-size", "50",
                  "--max-size", "10")
    assert res.exit_code != 0 and "larger than max_size" in res.output
    # an output may never replace an input
    src = tmp_path / "x_Object Identities.h5"
    write_image(f"{src}/exported_data", np.zeros((8, 8, 1), np.float32), "yxc")
    res = _invoke("threshold", str(src), "-o", str(tmp_path))
    assert res.exit_code != 0 and "would overwrite an input" in res.output


def test_train_predict_exports_and_table(dataset, tmp_path):
    model = tmp_path / "objects.h5"
    res = _invoke("train", "--raw", str(dataset / "sections"), "--proba", str(dataset / "proba"),
                  "--labels", str(dataset / "object_labels"), "-m", str(model), "--seed", "3",
                  "--threshold", "0.45")
    assert res.exit_code == 0, res.output
    assert "trained on" in res.output and model.exists()
    out = tmp_path / "pred"
    args = ["predict", "--raw", str(dataset / "sections"), "--proba", str(dataset / "proba"), "-m",
            str(model), "-o", str(out), "--export-source", "Object Predictions", "--export-source",
            "object probabilities", "--export-source", "Object Identities",
            "--labels", str(dataset / "object_labels")]
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    assert "predicted 2 image(s), skipped 0" in res.output
    with h5py.File(out / "brain_s001_Object Identities.h5") as f:
        ident = f["exported_data"][()][..., 0]
    # the model remembered its threshold (0.45)
    proba, _ = load_probabilities(dataset / "proba" / "brain_s001_Probabilities.h5")
    np.testing.assert_array_equal(ident, threshold_objects(proba, threshold=0.45))
    with h5py.File(out / "brain_s001_Object Predictions.h5") as f:
        pred = f["exported_data"][()][..., 0]
    with h5py.File(out / "brain_s001_Object Probabilities.h5") as f:
        prob = f["exported_data"][()]
    assert pred.dtype == np.uint8 and set(np.unique(pred)) <= {0, 1, 2}
    assert np.all(pred[ident == 0] == 0) and prob.shape == ident.shape + (2,)
    np.testing.assert_array_equal(pred[ident > 0], np.argmax(prob[ident > 0], axis=1) + 1)
    with open(out / "brain_s001_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == ident.max()
    assert list(rows[0])[:7] == ["object_id", "timestep", "labelimage_oid", "User Label",
                                 "Predicted Class", "Probability of label", "Probability of artefact"]
    counts = np.bincount(ident.ravel())[1:]
    assert [int(r["Size in pixels"]) for r in rows] == counts.tolist()
    assert {r["User Label"] for r in rows} >= {"0", "label", "artefact"}
    for r in rows:
        oid = int(r["labelimage_oid"])
        assert r["Predicted Class"] == ("label", "artefact")[pred[ident == oid][0] - 1]
    # resume: nothing to do; a different threshold on the command line overrides the model
    assert "skipped 2" in _invoke(*args).output
    res = _invoke(*args, "--threshold", "0.6", "--overwrite")
    assert res.exit_code == 0, res.output
    with h5py.File(out / "brain_s001_Object Identities.h5") as f:
        np.testing.assert_array_equal(f["exported_data"][()][..., 0], threshold_objects(proba, threshold=0.6))


def test_predict_from_ready_objects_and_shape_mismatch(dataset, tmp_path):
    model = tmp_path / "m.h5"
    objects_dir = tmp_path / "objects"
    for png in sorted((dataset / "sections").glob("*.png")):
        proba, _ = load_probabilities(dataset / "proba" / f"{png.stem}_Probabilities.h5")
        write_image(objects_dir / f"{png.stem}.tif", threshold_objects(proba), "yx")
    res = _invoke("train", "--raw", str(dataset / "sections"), "--objects", str(objects_dir),
                  "--labels", str(dataset / "object_labels"), "-m", str(model), "--seed", "1",
                  "--features", "Size in pixels,Convexity,Mean")
    assert res.exit_code == 0, res.output
    res = _invoke("predict", "--raw", str(dataset / "sections"), "--objects", str(objects_dir),
                  "-m", str(model), "-o", str(tmp_path / "out"), "--format", "png")
    assert res.exit_code == 0, res.output
    pred, axes = read_image(tmp_path / "out" / "brain_s002_Object Predictions.png")
    assert pred.dtype == np.uint8 and set(np.unique(pred)) <= {0, 1, 2}
    # a probability map of another shape than the raw image
    bad = tmp_path / "badproba"
    write_image(bad / "brain_s001_Probabilities.h5/exported_data", np.zeros((64, 64, 1), np.float32), "yxc")
    res = _invoke("predict", "--raw", str(dataset / "sections" / "brain_s001.png"), "--proba", str(bad),
                  "-m", str(model), "-o", str(tmp_path / "out2"))
    assert res.exit_code != 0 and "does not match the raw image" in res.output
    res = _invoke("predict", "--raw", str(dataset / "sections"), "--proba", str(bad),
                  "-m", str(model), "-o", str(tmp_path / "out3"))
    assert res.exit_code != 0 and "no probability file with the name of" in res.output
    res = _invoke("predict", "--raw", str(dataset / "sections"), "-m", str(model), "-o", str(tmp_path))
    assert res.exit_code != 0 and "either --proba" in res.output


def test_predict_with_no_objects_writes_empty_outputs(dataset, tmp_path):
    model = tmp_path / "m.h5"
    res = _invoke("train", "--raw", str(dataset / "sections"), "--proba", str(dataset / "proba"),
                  "--labels", str(dataset / "object_labels"), "-m", str(model), "--seed", "1")
    assert res.exit_code == 0, res.output
    empty = tmp_path / "empty"
    write_image(empty / "brain_s001_Probabilities.h5/exported_data", np.zeros((128, 160, 1), np.float32), "yxc")
    res = _invoke("predict", "--raw", str(dataset / "sections" / "brain_s001.png"), "--proba", str(empty),
                  "-m", str(model), "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert "no objects found" in res.output
    with h5py.File(tmp_path / "out" / "brain_s001_Object Predictions.h5") as f:
        assert f["exported_data"][()].max() == 0
    assert len((tmp_path / "out" / "brain_s001_table.csv").read_text().splitlines()) == 1


def test_list_features_and_help():
    res = _invoke("list-features")
    assert res.exit_code == 0 and "Size in pixels" in res.output and "Convexity" in res.output
    res = _invoke("predict", "--help")
    assert "--export-source" in res.output and "resume" in res.output


def test_channel_counts_classes_from_one(dataset, tmp_path):
    """--channel is a class number as in label images and `quint run --object-channel`."""
    two = tmp_path / "proba2"
    for src in sorted((dataset / "proba").glob("*.h5")):
        stain, _ = load_probabilities(src)
        write_image(f"{two / src.name}/exported_data", np.concatenate([1 - stain, stain], -1), "yxc")
    stain, _ = load_probabilities(dataset / "proba" / "brain_s001_Probabilities.h5")
    both = np.concatenate([1 - stain, stain], -1)
    for args, channel in (((), 1), (("--channel", "2"), 1), (("--channel", "1"), 0)):
        out = tmp_path / f"thr{len(args)}{channel}"
        res = _invoke("threshold", str(two), "-o", str(out), *args)
        assert res.exit_code == 0, res.output
        with h5py.File(out / "brain_s001_Object Identities.h5") as f:
            np.testing.assert_array_equal(f["exported_data"][()][..., 0], threshold_objects(both, channel=channel))
    res = _invoke("threshold", str(two), "-o", str(tmp_path / "x"), "--channel", "0")
    assert res.exit_code == 2 and "0 is not in the range x>=1" in res.output
    res = _invoke("threshold", str(two), "-o", str(tmp_path / "x"), "--channel", "3")
    assert res.exit_code == 1 and "--channel 3 is out of range" in res.output and "classes 1..2" in res.output
    # train stores the class it thresholded (0-based inside the model, as ilastik stores it)
    model = tmp_path / "m.h5"
    res = _invoke("train", "--raw", str(dataset / "sections"), "--proba", str(two),
                  "--labels", str(dataset / "object_labels"), "-m", str(model), "--seed", "0")
    assert res.exit_code == 0, res.output
    from pyquint.objects import ObjectClassifier

    assert ObjectClassifier.load(model).threshold["channel"] == 1


def test_train_takes_the_majority_of_mixed_strokes(dataset, tmp_path):
    labels_dir = tmp_path / "object_labels"
    proba, _ = load_probabilities(dataset / "proba" / "brain_s001_Probabilities.h5")
    objects = threshold_objects(proba)
    for png in sorted((dataset / "object_labels").glob("*.png")):
        lab = read_image(png)[0][..., 0].copy()
        if png.stem == "brain_s001":
            oid = int(np.bincount(objects.ravel())[1:].argmax()) + 1  # the largest object
            pixels = np.argwhere(objects == oid)
            lab[tuple(pixels[:6].T)] = 1
            lab[tuple(pixels[-2:].T)] = 2
        write_image(labels_dir / png.name, lab, "yx")
    res = CliRunner().invoke(main, ["objects", "train", "--raw", str(dataset / "sections"), "--proba",
                                    str(dataset / "proba"), "--labels", str(labels_dir), "-m",
                                    str(tmp_path / "m.h5"), "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert f"brain_s001.png: object {oid} at (y " in res.output and "taken as class 1" in res.output
