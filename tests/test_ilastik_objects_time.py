"""Object Classification projects on time series: objects thresholded, labelled and measured
per frame (ids restart in every frame), object labels read per frame, exports with ``t`` and
one CSV table with ilastik's ``timestep`` / ``labelimage_oid`` / running ``object_id`` columns;
checked against per-frame 2-D runs."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from pyquint.ilastik import read_project
from pyquint.ilastik.objects import object_settings
from pyquint.io import axistags_json, parse_axistags
from pyquint.objects import threshold_objects
from pyquint.objects.classifier import ObjectClassifier

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["Count", "Mean", "RegionRadii"]
SETTINGS = dict(method="simple", channel=1, core_channel=1, threshold=0.5, high_threshold=0.8,
                min_size=5, max_size=100000, sigma=(1.0, 1.0))


def _series(seed: int, t: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``tyx`` raw frames and ``tyxc`` probabilities: round cells and thin streaks that move."""
    rng = np.random.default_rng(seed)
    h, w = 70, 90
    yy, xx = np.mgrid[:h, :w]
    raws, probas = [], []
    for _ in range(t):
        fg = np.zeros((h, w), bool)
        for _ in range(4):
            cy, cx = rng.uniform(8, h - 8), rng.uniform(8, w - 8)
            fg |= (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(9, 20)
        for _ in range(2):
            y, x0 = int(rng.uniform(4, h - 4)), int(rng.uniform(0, w - 40))
            fg[y:y + 2, x0:x0 + 35] = True
        raws.append(np.clip(40 + 150 * fg + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8))
        p1 = np.clip(0.05 + 0.9 * fg + rng.normal(0, 0.02, (h, w)), 0, 1).astype(np.float32)
        probas.append(np.stack([1 - p1, p1], -1))
    return np.stack(raws), np.stack(probas)


def _classes(objects: np.ndarray) -> dict[int, int]:
    """Streaks (long in x) are class 2, cells class 1."""
    out = {}
    for oid in range(1, int(objects.max()) + 1):
        ys, xs = np.nonzero(objects == oid)
        out[oid] = 2 if (xs.max() - xs.min() + 1) > 3 * (ys.max() - ys.min() + 1) else 1
    return out


def _write(folder: Path, name: str, raw: np.ndarray, proba: np.ndarray) -> tuple[Path, Path]:
    raw_path, pm = folder / f"{name}.h5", folder / f"{name}_Probabilities.h5"
    with h5py.File(raw_path, "w") as f:
        f.create_dataset("data", data=raw).attrs["axistags"] = axistags_json("tyx")
    with h5py.File(pm, "w") as f:
        f.create_dataset("exported_data", data=proba).attrs["axistags"] = axistags_json("tyxc")
    return raw_path, pm


def _project(path: Path, raw_path: Path, pm: Path, labels: dict[int, dict[int, int]],
             method: int = 0) -> Path:
    with h5py.File(path, "w") as f:
        f["ilastikVersion"] = b"1.3.3post1"
        f["workflowName"] = b"Object Classification (from prediction image)"
        for role, target, axes in (("Raw Data", f"{raw_path.name}/data", "tyx"),
                                   ("Prediction Maps", f"{pm.name}/exported_data", "tyxc")):
            g = f.create_group(f"Input Data/infos/lane0000/{role}")
            g["filePath"] = target.encode()
            g["location"] = b"FileSystem"
            g["nickname"] = target.split(".")[0].encode()
            g["axistags"] = axistags_json(axes).encode()
        t = f.create_group("ThresholdTwoLevels")
        for key, value in {"CurOperator": method, "Channel": 1, "CoreChannel": 1, "LowThreshold": 0.5,
                           "HighThreshold": 0.8, "MinSize": 5, "MaxSize": 100000}.items():
            t[key] = value
        for a in "xyz":
            t[f"SmootherSigma/{a}"] = 1.0
        oc = f.create_group("ObjectClassification")
        for name in FEATURES:
            oc.create_group(f"SelectedFeatures/Standard Object Features/{name}")
        oc["LabelNames"] = np.array([b"cell", b"streak"])
        for frame, mapping in labels.items():  # one label array per time point, as ilastik
            values = np.zeros(max(mapping) + 1, np.float32)
            for oid, cls in mapping.items():
                values[oid] = cls
            oc[f"LabelInputs/0000/{frame}"] = values
    return path


def test_object_project_time_series(tmp_path: Path) -> None:
    raw, proba = _series(1)
    objects = [threshold_objects(p, axes="yxc", **SETTINGS) for p in proba]
    labels = {0: _classes(objects[0]), 2: _classes(objects[2])}  # frame 1 unlabelled
    assert all(set(m.values()) == {1, 2} for m in labels.values())
    ilp = _project(tmp_path / "oc.ilp", *_write(tmp_path, "train", raw, proba), labels)
    assert object_settings(read_project(ilp)).labels == {(0, 0): labels[0], (0, 2): labels[2]}

    raw2, proba2 = _series(2)
    test_raw, test_pm = _write(tmp_path, "test", raw2, proba2)
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "pyquint", "ilastik", "predict", str(ilp), "--raw_data",
            f"{test_raw}/data", "--prediction_maps", str(test_pm), "--seed", "0"]
    res = subprocess.run(base + ["--export_source", "Object Predictions", "--export_source",
                                 "Object Identities", "--table"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    # the reference: 2-D runs, frame by frame, a forest trained on the labelled frames
    clf = ObjectClassifier(features=FEATURES, seed=0, class_names=["cell", "streak"]).fit(
        [raw[0], raw[2]], [objects[0], objects[2]], [labels[0], labels[2]])
    objects2 = [threshold_objects(p, axes="yxc", **SETTINGS) for p in proba2]
    classes = [clf.predict(r, o) for r, o in zip(raw2, objects2)]
    with h5py.File(tmp_path / "test-data_Object Identities.h5", "r") as f:
        assert parse_axistags(f["exported_data"].attrs["axistags"]) == "tyxc"
        assert np.array_equal(f["exported_data"][()][..., 0], np.stack(objects2))
    with h5py.File(tmp_path / "test-data_Object Predictions.h5", "r") as f:
        expected = np.stack([np.concatenate([[0], c])[o] for c, o in zip(classes, objects2)])
        assert np.array_equal(f["exported_data"][()][..., 0], expected)
        assert set(np.unique(expected)) == {0, 1, 2}
    with open(tmp_path / "test-data_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    counts = [int(o.max()) for o in objects2]
    assert len(rows) == sum(counts)
    assert [int(r["object_id"]) for r in rows] == list(range(sum(counts)))  # running over frames
    assert [(int(r["timestep"]), int(r["labelimage_oid"])) for r in rows] == \
        [(t, i) for t, n in enumerate(counts) for i in range(1, n + 1)]  # ids restart per frame
    assert [r["Predicted Class"] for r in rows] == \
        [["cell", "streak"][k - 1] for c in classes for k in c]
    sizes = [float(r["Size in pixels"]) for r in rows if r["timestep"] == "1"]
    assert sizes == np.bincount(objects2[1].ravel())[1:].astype(float).tolist()

    # PNG holds one frame: one file per time point, named as ilastik pads sequences
    res = subprocess.run(base + ["--export_source", "Object Predictions", "--output_format", "png"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for t in range(3):
        got = np.asarray(Image.open(tmp_path / f"test-data_Object Predictions_{t}.png"))
        assert np.array_equal(got, expected[t])


def test_graph_cut_and_ipht_are_refused(tmp_path: Path) -> None:
    raw, proba = _series(3, t=1)
    raw_path, pm = _write(tmp_path, "img", raw, proba)
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    for method, name in ((2, "Graph-Cut"), (3, "IPHT")):
        ilp = _project(tmp_path / f"m{method}.ilp", raw_path, pm, {0: {1: 1, 2: 2}}, method)
        res = subprocess.run([sys.executable, "-m", "pyquint", "ilastik", "predict", str(ilp),
                              "--raw_data", f"{raw_path}/data", "--prediction_maps", str(pm)],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 1 and name in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*Object*"))
