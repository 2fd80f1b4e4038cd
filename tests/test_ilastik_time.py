"""ilastik projects with a time axis (2D+t, 3D+t): per-frame features, labels in their frames,
exports that keep ``t``; projects from pyquint's writer and hand-made in ilastik 1.2's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyquint.features import FeatureSelection
from pyquint.ilastik import ProjectPredictor, read_project, write_project
from pyquint.io import axistags_json, parse_axistags
from pyquint.pixel import PixelClassifier

ROOT = Path(__file__).resolve().parents[1]
SCALES = (0.7, 1.0, 1.6)
N_TREES = 12


def _selection(compute_in_2d: tuple[bool, ...] | None = None) -> FeatureSelection:
    matrix = np.zeros((6, len(SCALES)), bool)
    matrix[0, :] = True  # Gaussian smoothing
    matrix[2, 1] = True  # gradient magnitude σ 1
    matrix[5, 2] = True  # Hessian eigenvalues σ 1.6
    return FeatureSelection(matrix, SCALES, compute_in_2d=compute_in_2d)


def _series(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames with blobs in different places (so filtering across t would change results) and
    labels: background = 1, blob cores = 2, in every frame but the second."""
    rng = np.random.default_rng(seed)
    t = shape[0]
    grids = np.meshgrid(*[np.arange(n) for n in shape[1:]], indexing="ij")
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    for k in range(t):
        for _ in range(4):
            centre = [rng.uniform(4, n - 4) for n in shape[1:]]
            dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre)))
            image[k] += 200 * np.exp(-(dist / 3.0) ** 2)
            if k != 1:
                labels[k][dist < 1.5] = 2
        image[k] += rng.normal(20, 5, shape[1:])
        if k != 1:
            labels[k][(image[k] < 25) & (rng.random(shape[1:]) < 0.05)] = 1
    return np.clip(image, 0, 255).astype(np.uint8), labels


def _reference(series: np.ndarray, labels: np.ndarray, sel, rounding: str, **kw) -> np.ndarray:
    """Per-frame prediction with a classifier trained on the labelled frames, one by one."""
    keep = [k for k in range(series.shape[0]) if labels[k].any()]
    clf = PixelClassifier(features=sel, n_trees=kw.get("n_trees", N_TREES), seed=0,
                          rounding=rounding, class_names=["bg", "blob"])
    clf.fit([series[k][..., None] for k in keep], [labels[k] for k in keep])
    return np.stack([clf.predict_proba(series[k][..., None]) for k in range(series.shape[0])])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pyquint", "ilastik", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def series2d() -> tuple[np.ndarray, np.ndarray]:
    return _series((3, 40, 48), seed=1)


def test_2d_t_project_predicts_frame_by_frame(series2d, tmp_path: Path) -> None:
    series, labels = series2d
    sel = _selection()
    path = write_project(tmp_path / "t.ilp", [series[..., None]], [labels], sel,
                         label_names=["bg", "blob"], axes="tyxc")
    project = read_project(path)
    assert project.lanes[0].canonical_axes == "tyxc"
    # labels sit in their frames
    dense = project.label_image(0)[..., 0]
    assert np.array_equal(dense, labels)
    frames = project.frame_label_counts(0)
    assert sorted(frames) == [0, 2]
    assert frames[2] == [int((labels[2] == 1).sum()), int((labels[2] == 2).sum())]

    predictor = ProjectPredictor(project, n_trees=N_TREES, seed=0).fit()
    assert predictor.classifier_.ndim_ == 2
    assert predictor.classifier_.training_info_["n_images"] == 2  # frames 0 and 2
    proba = predictor.predict_proba(series[..., None], "tyxc")
    expected = _reference(series, labels, sel, predictor.rounding_)
    assert proba.shape == series.shape + (2,)
    assert np.array_equal(proba, expected)
    # a forest trained on the whole series as 3-D data would differ: frames are independent
    seg = predictor.predict(series[..., None], "tyxc")
    assert np.array_equal(seg, np.argmax(expected, -1) + 1)


def test_2d_t_cli_export_keeps_time_axis(series2d, tmp_path: Path) -> None:
    series, labels = series2d
    sel = _selection()
    ilp = write_project(tmp_path / "t.ilp", [series[..., None]], [labels], sel,
                        label_names=["bg", "blob"], axes="tyxc")
    data = tmp_path / "movie.h5"
    with h5py.File(data, "w") as f:
        ds = f.create_dataset("data", data=series[..., None])
        ds.attrs["axistags"] = axistags_json("tyxc")
    res = _cli("predict", str(ilp), f"{data}/data", "--export_source", "Probabilities",
               "--export_source", "Simple Segmentation", "--seed", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    expected = _reference(series, labels, sel, "fast", n_trees=100)
    with h5py.File(tmp_path / "movie-data_Probabilities.h5", "r") as f:
        ds = f["exported_data"]
        assert parse_axistags(ds.attrs["axistags"]) == "tyxc"
        assert json.loads(ds.attrs["axistags"])["axes"][0]["typeFlags"] == 8
        assert np.array_equal(ds[()], expected)
    with h5py.File(tmp_path / "movie-data_Simple Segmentation.h5", "r") as f:
        assert np.array_equal(f["exported_data"][()][..., 0], np.argmax(expected, -1) + 1)

    info = _cli("info", str(ilp), "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    lane = json.loads(info.stdout)["lanes"][0]
    assert lane["axes"] == "tyxc" and lane["canonical_axes"] == "tyxc"
    assert sorted(lane["frame_labels"]) == ["0", "2"]
    text = _cli("info", str(ilp), cwd=tmp_path).stdout
    assert "frame t=2: bg " in text and "frame t=1" not in text


def test_3d_t_project(tmp_path: Path) -> None:
    series, labels = _series((2, 8, 24, 28), seed=2)
    labels[1] = 0
    labels[1, 3:5, 2:6, 2:6] = 1
    labels[1, 4, 10:12, 10:12] = 2
    sel = _selection(compute_in_2d=(False, True, False))  # mixed 2-D/3-D scales
    path = write_project(tmp_path / "tz.ilp", [series[..., None]], [labels], sel,
                         label_names=["bg", "blob"], axes="tzyxc")
    project = read_project(path)
    assert project.lanes[0].canonical_axes == "tzyxc"
    assert sorted(project.frame_label_counts(0)) == [0, 1]
    predictor = ProjectPredictor(project, n_trees=N_TREES, seed=0).fit()
    assert predictor.classifier_.ndim_ == 3
    got = predictor.compute(series[..., None], "tzyxc", ["Probabilities"])["Probabilities"]
    expected = _reference(series, labels, sel, predictor.rounding_)
    assert got.shape == series.shape + (2,)
    assert np.array_equal(got, expected)

    data = tmp_path / "vol.h5"
    with h5py.File(data, "w") as f:
        f.create_dataset("raw", data=series[..., None]).attrs["axistags"] = axistags_json("tzyxc")
    res = _cli("predict", str(path), f"{data}/raw", "--seed", "0", "--export_source",
               "Simple Segmentation", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "vol-raw_Simple Segmentation.h5", "r") as f:
        assert parse_axistags(f["exported_data"].attrs["axistags"]) == "tzyxc"
        assert f["exported_data"].shape == series.shape + (1,)


def _ilastik12_project(path: Path, series: np.ndarray, labels: np.ndarray, sel) -> Path:
    """A 2D+t project in ilastik 1.2's layout: raw data copied into the project as ``txyzc``
    (named by datasetId, filePath = the original file), 5-D ``txyzc`` label blocks without
    axistags, no ComputeIn2d."""
    raw = series.transpose(0, 2, 1)[..., None, None]  # t x y z c
    with h5py.File(path, "w") as f:
        f["ilastikVersion"] = b"1.2.0rc10"
        f["workflowName"] = b"Pixel Classification"
        lane = f.create_group("Input Data/infos/lane0000/Raw Data")
        f.create_group("Input Data/infos/lane0000/Prediction Mask")
        f["Input Data/local_data/abc-123"] = raw
        lane["filePath"] = b"/somewhere/else/movie.h5/data"
        lane["location"] = b"ProjectInternal"
        lane["datasetId"] = b"abc-123"
        lane["nickname"] = b"movie"
        lane["allowLabels"] = True
        lane["axistags"] = axistags_json("txyzc").encode()
        fs = f.create_group("FeatureSelections")
        fs["FeatureIds"] = np.array([s.encode() for s in sel.feature_ids])
        fs["Scales"] = np.asarray(sel.scales)
        fs["SelectionMatrix"] = sel.matrix
        pc = f.create_group("PixelClassification")
        pc["LabelNames"] = np.array([b"bg", b"blob"])
        pc["LabelColors"] = np.array([[255, 0, 0], [0, 255, 0]])
        sets = pc.create_group("LabelSets/labels000")
        for k, t in enumerate((0, 2)):
            ys, xs = np.nonzero(labels[t])
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            block = labels[t, y0:y1, x0:x1].T[None, :, :, None, None]  # t x y z c
            ds = sets.create_dataset(f"block{k:04d}", data=block)
            ds.attrs["blockSlice"] = f"[{t}:{t + 1},{x0}:{x1},{y0}:{y1},0:1,0:1]"
    return path


def test_ilastik12_txyzc_project(series2d, tmp_path: Path) -> None:
    series, labels = series2d
    sel = _selection()
    ilp = _ilastik12_project(tmp_path / "old.ilp", series, labels, sel)
    project = read_project(ilp)
    assert project.lanes[0].is_internal and project.lanes[0].canonical_axes == "tyxc"
    assert np.array_equal(project.label_image(0)[..., 0], labels)
    predictor = ProjectPredictor(project, n_trees=N_TREES, seed=0).fit()
    assert predictor.rounding_ == "muladd"
    # the input carries no axistags: the project's stored txyzc order is used
    data = tmp_path / "movie.h5"
    with h5py.File(data, "w") as f:
        f["data"] = series.transpose(0, 2, 1)[..., None, None]
    from pyquint.ilastik import predict_project

    out = predict_project(None, [f"{data}/data"], predictor=predictor,
                          export_source="Probabilities")
    expected = _reference(series, labels, sel, "muladd")
    with h5py.File(out[0], "r") as f:
        ds = f["exported_data"]
        assert parse_axistags(ds.attrs["axistags"]) == "txyzc"
        got = ds[()][:, :, :, 0, :].transpose(0, 2, 1, 3)
    assert np.array_equal(got, expected)


def test_pixel_cli_predicts_time_series_frame_by_frame(series2d, tmp_path: Path) -> None:
    series, labels = series2d
    sel = _selection()
    clf = PixelClassifier(features=sel, n_trees=N_TREES, seed=0, class_names=["bg", "blob"])
    clf.fit([series[0][..., None]], [labels[0]])
    model = clf.save(tmp_path / "model.h5")
    data = tmp_path / "movie.h5"
    with h5py.File(data, "w") as f:
        f.create_dataset("data", data=series[..., None]).attrs["axistags"] = axistags_json("tyxc")
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "pyquint", "pixel", "predict", str(model),
                          f"{data}/data", "-o", str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "movie-data_Probabilities.h5", "r") as f:
        assert parse_axistags(f["exported_data"].attrs["axistags"]) == "tyxc"
        got = f["exported_data"][()]
    for t in range(series.shape[0]):
        assert np.array_equal(got[t], clf.predict_proba(series[t][..., None]))


def test_ilastik122_blocks_in_lane_order(tmp_path: Path) -> None:
    """ilastik 1.2.2 wrote 5-D blocks of a tzyxc lane in the lane's order, without axistags
    (its test project PixelClassification5t3d2c.ilp): the order that fits the image wins."""
    series, labels = _series((2, 8, 24, 28), seed=2)
    labels[:] = 0
    labels[1, 3:5, 2:12, 2:12] = 1
    labels[1, 4, 14:16, 14:16] = 2
    path = write_project(tmp_path / "tz.ilp", [series[..., None]], [labels], _selection(),
                         axes="tzyxc")
    with h5py.File(path, "a") as f:
        del f["ilastikVersion"]
        f["ilastikVersion"] = b"1.2.2rc4"
        for block in f["PixelClassification/LabelSets/labels000"].values():
            del block.attrs["axistags"]
    project = read_project(path)
    assert {b.stored_axes for b in project.label_blocks} == {"tzyxc"}
    assert np.array_equal(project.label_image(0)[..., 0], labels)
