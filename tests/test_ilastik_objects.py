"""Object Classification projects headless: a hand-made 1.3.3-style ``.ilp`` (threshold
settings, selected features, object labels) run by ``pyquint ilastik predict``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.ilastik import read_project
from pyquint.ilastik.objects import object_settings, predict_object_project
from pyquint.io import axistags_json
from pyquint.objects import threshold_objects
from pyquint.objects.classifier import ObjectClassifier

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["Count", "Mean", "Variance", "RegionRadii"]


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw image and a 2-channel probability map: round cells and long thin streaks."""
    rng = np.random.default_rng(seed)
    h, w = 120, 140
    yy, xx = np.mgrid[:h, :w]
    fg = np.zeros((h, w), bool)
    for _ in range(6):
        cy, cx = rng.uniform(10, h - 10), rng.uniform(10, w - 10)
        fg |= (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(9, 25)
    for _ in range(3):
        y = int(rng.uniform(5, h - 5))
        x0 = int(rng.uniform(0, w - 60))
        fg[y:y + 2, x0:x0 + 50] = True
    raw = np.clip(40 + 150 * fg + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
    p1 = np.clip(0.05 + 0.9 * fg + rng.normal(0, 0.02, (h, w)), 0, 1).astype(np.float32)
    return raw, np.stack([1 - p1, p1], -1)


def _write_inputs(folder: Path, name: str, seed: int) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    from PIL import Image

    raw, proba = _scene(seed)
    raw_path = folder / f"{name}.png"
    Image.fromarray(raw).save(raw_path)
    pm = folder / f"{name}_Probabilities.h5"
    with h5py.File(pm, "w") as f:
        ds = f.create_dataset("exported_data", data=proba)
        ds.attrs["axistags"] = axistags_json("yxc")
    return raw_path, pm, raw, proba


THRESHOLD = {"CurOperator": 0, "Channel": 1, "CoreChannel": 1, "LowThreshold": 0.5,
             "HighThreshold": 0.8, "MinSize": 5, "MaxSize": 100000}


def _object_groups(f: h5py.File, labels: dict[int, int], n_objects: int) -> None:
    """The threshold settings, selected features and object labels of an OC project."""
    t = f.create_group("ThresholdTwoLevels")
    for key, value in THRESHOLD.items():
        t[key] = value
    for a in "xyz":
        t[f"SmootherSigma/{a}"] = 1.0
    oc = f.create_group("ObjectClassification")
    for name in FEATURES:
        oc.create_group(f"SelectedFeatures/Standard Object Features/{name}")
    oc["LabelNames"] = np.array([b"label", b"artefact"])
    values = np.zeros(n_objects + 1, np.float32)
    for oid, cls in labels.items():
        values[oid] = cls
    oc["LabelInputs/0000/0"] = values


def _oc_project(path: Path, raw_path: Path, pm: Path, labels: dict[int, int], n_objects: int) -> Path:
    with h5py.File(path, "w") as f:
        f["ilastikVersion"] = b"1.3.3post1"
        f["workflowName"] = b"Object Classification (from prediction image)"
        for role, target in (("Raw Data", raw_path), ("Prediction Maps", pm)):
            g = f.create_group(f"Input Data/infos/lane0000/{role}")
            g["filePath"] = (target.name + ("/exported_data" if target.suffix == ".h5" else "")).encode()
            g["location"] = b"FileSystem"
            g["nickname"] = target.stem.encode()
            g["axistags"] = axistags_json("yxc").encode()
        _object_groups(f, labels, n_objects)
    return path


def test_object_project_retrained_and_exported(tmp_path: Path) -> None:
    train_raw, train_pm, raw, proba = _write_inputs(tmp_path, "train", 1)
    settings = dict(method="simple", channel=1, core_channel=1, threshold=0.5, high_threshold=0.8,
                    min_size=5, max_size=100000, sigma=(1.0, 1.0))
    objects = threshold_objects(proba, axes="yxc", **settings)
    n = int(objects.max())
    sizes = np.bincount(objects.ravel())[1:]
    counts = {}
    for oid in range(1, n + 1):
        ys, xs = np.nonzero(objects == oid)
        elongated = (xs.max() - xs.min() + 1) > 3 * (ys.max() - ys.min() + 1)
        counts[oid] = 2 if elongated else 1
    assert set(counts.values()) == {1, 2} and sizes.min() >= 5
    ilp = _oc_project(tmp_path / "oc.ilp", train_raw, train_pm, counts, n)

    project = read_project(ilp)
    read = object_settings(project)
    assert read.threshold == settings
    assert read.features == sorted(FEATURES)  # one plugin: sorted names
    assert read.labels == {(0, 0): counts} and not read.has_forest

    test_raw, test_pm, raw2, proba2 = _write_inputs(tmp_path, "test", 2)
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "pyquint", "ilastik", "predict", str(ilp), "--raw_data", str(test_raw),
         "--prediction_maps", str(test_pm), "--export_source", "Object Predictions",
         "--export_source", "Object Probabilities", "--seed", "0", "--table"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    clf = ObjectClassifier(features=FEATURES, seed=0, class_names=["label", "artefact"]).fit(
        raw, objects, counts)
    objects2 = threshold_objects(proba2, axes="yxc", **settings)
    classes = clf.predict(raw2, objects2)
    with h5py.File(tmp_path / "test_Object Predictions.h5", "r") as f:
        pred = f["exported_data"][()][..., 0]
    expected = np.concatenate([[0], classes])[objects2]
    assert np.array_equal(pred, expected)
    assert set(np.unique(pred)) == {0, 1, 2}
    with h5py.File(tmp_path / "test_Object Probabilities.h5", "r") as f:
        assert f["exported_data"].shape == objects2.shape + (2,)
    with open(tmp_path / "test_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == int(objects2.max())
    assert [r["Predicted Class"] for r in rows] == [["label", "artefact"][c - 1] for c in classes]


def test_stored_object_forest_must_fit(tmp_path: Path, forested_ilp: Path) -> None:
    """A stored object forest whose inputs do not fit the selected features is refused (here
    a pyquint-written project's 49-feature pixel forest, in vigra's layout, stands in for an
    object forest)."""
    raw_path, pm, _, _ = _write_inputs(tmp_path, "img", 3)
    ilp = _oc_project(tmp_path / "oc.ilp", raw_path, pm, {1: 1, 2: 2}, 2)
    with h5py.File(ilp, "a") as f, h5py.File(forested_ilp, "r") as pc:
        pc.copy(pc["PixelClassification/ClassifierForests"], f["ObjectClassification"],
                name="ClassifierForests")
    assert object_settings(read_project(ilp)).has_forest
    with pytest.raises(InputError, match="use --retrain"):
        predict_object_project(ilp, [raw_path], [pm])
    assert not (tmp_path / "img_Object Predictions.h5").exists()


def test_pixel_and_object_project_makes_its_own_prediction_maps(tmp_path: Path) -> None:
    """A Pixel + Object Classification project: without --prediction_maps its pixel part
    (retrained from its pixel labels, seeded) makes the probabilities that are thresholded."""
    from PIL import Image

    from pyquint.features import FeatureSelection
    from pyquint.ilastik import ProjectPredictor, write_project

    raw, proba = _scene(7)
    pixel_labels = np.zeros(raw.shape, np.uint8)
    pixel_labels[::3, ::3][proba[::3, ::3, 1] < 0.2] = 1
    pixel_labels[::3, ::3][proba[::3, ::3, 1] > 0.8] = 2
    matrix = np.zeros((6, 3), bool)
    matrix[0, :] = matrix[2, 1] = True
    ilp = write_project(tmp_path / "pcoc.ilp", [raw], [pixel_labels],
                        FeatureSelection(matrix, (0.7, 1.0, 1.6)), label_names=["bg", "stain"])
    pixel = ProjectPredictor(read_project(ilp), seed=0).fit()
    settings = dict(method="simple", channel=1, core_channel=1, threshold=0.5, high_threshold=0.8,
                    min_size=5, max_size=100000, sigma=(1.0, 1.0))
    objects = threshold_objects(pixel.predict_proba(raw, "yx"), axes="yxc", **settings)
    n = int(objects.max())
    mapping = {}
    for oid in range(1, n + 1):
        ys, xs = np.nonzero(objects == oid)
        mapping[oid] = 2 if (xs.max() - xs.min() + 1) > 3 * (ys.max() - ys.min() + 1) else 1
    assert set(mapping.values()) == {1, 2}
    with h5py.File(ilp, "a") as f:
        del f["workflowName"]
        f["workflowName"] = b"Object Classification (from pixel classification)"
        _object_groups(f, mapping, n)

    raw2, _ = _scene(8)
    Image.fromarray(raw2).save(tmp_path / "new.png")
    written = predict_object_project(ilp, [tmp_path / "new.png"], [], seed=0,
                                     export_source=["Object Identities", "Object Predictions"])
    clf = ObjectClassifier(features=FEATURES, seed=0, class_names=["label", "artefact"]).fit(
        raw, objects, mapping)
    objects2 = threshold_objects(pixel.predict_proba(raw2, "yx"), axes="yxc", **settings)
    with h5py.File(written[0], "r") as f:
        assert np.array_equal(f["exported_data"][()][..., 0], objects2)
    with h5py.File(written[1], "r") as f:
        expected = np.concatenate([[0], clf.predict(raw2, objects2)])[objects2]
        assert np.array_equal(f["exported_data"][()][..., 0], expected)
