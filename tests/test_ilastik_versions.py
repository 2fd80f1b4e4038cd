"""Older ilastik project layouts (1.2, 1.3.x, 1.4 betas): lanes (copied into the project as
``txyzc`` / linked), label blocks by each version's axis rule, the stored forest evaluated,
retraining from the labels. The layouts are built from a pyquint-written project with a stored
vigra-layout forest (``forested_ilp``); the root-threshold oracle, whose subject is ilastik's own
forest, uses the real pc.ilp."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyquint.ilastik import ProjectPredictor, default_rounding, read_project
from pyquint.io import axistags_json

CROP = (slice(300, 780), slice(160, 700))  # holds pc.ilp's labels plus the features' reach


def _blocks(f: h5py.File, crop: tuple[slice, slice]
            ) -> list[tuple[np.ndarray, tuple[int, int], tuple[int, int]]]:
    y, x = (s.start or 0 for s in crop)
    out = []
    for blk in f["PixelClassification/LabelSets/labels000"].values():
        (y0, y1), (x0, x1), _ = [tuple(map(int, s.split(":"))) for s in
                                 blk.attrs["blockSlice"].strip("[]").split(",")]
        out.append((blk[()][..., 0], (y0 - y, y1 - y), (x0 - x, x1 - x)))
    return out


def legacy_project(pc_ilp: Path, out: Path, version: str, *, frames: bool = False,
                   crop: tuple[slice, slice] = CROP) -> Path:
    """A copy of pc.ilp (cropped to ``crop``, optionally as 2 time points with the labels in t = 1)
    in the layout ``version`` wrote.

    - < 1.3.3post2: label blocks 5-D ``txyzc`` without axistags.
    - 1.3.3post2 ... 1.4.0b7: blocks in the raw data's original axis order, no axistags.
    - 1.2: raw data copied into the project as ``txyzc``, named by datasetId, filePath = the
      original file, no ComputeIn2d. 1.3 / 1.4 betas: raw data linked (a ``tyxc``/``yxc`` HDF5
      file beside the project, relative path).
    """
    from pyquint.ilastik._version import parse_version

    shutil.copyfile(pc_ilp, out)
    v = parse_version(version)
    with h5py.File(out, "a") as f:
        raw = f["Input Data/local_data"][next(iter(f["Input Data/local_data"]))][()][crop]
        if raw.ndim == 2:  # a grey lane stored as yx: the layouts below have a channel axis
            raw = raw[..., np.newaxis]
        blocks = _blocks(f, crop)
        series = np.stack([raw[::-1, ::-1], raw]) if frames else raw[None]
        del f["ilastikVersion"], f["Input Data"], f["PixelClassification/LabelSets"]
        f["ilastikVersion"] = version.encode()
        lane = f.create_group("Input Data/infos/lane0000/Raw Data")
        f.create_group("Input Data/infos/lane0000/Prediction Mask")
        lane["nickname"] = b"cells"
        lane["allowLabels"] = True
        if v < (1, 3):
            data, axes = series.transpose(0, 2, 1, 3)[:, :, :, None, :], "txyzc"
            f["Input Data/local_data/0f0e-legacy"] = data
            lane["filePath"] = b"/gone/cells.h5/data"
            lane["location"] = b"ProjectInternal"
            lane["datasetId"] = b"0f0e-legacy"
            del f["FeatureSelections/ComputeIn2d"]
        else:
            data, axes = (series, "tyxc") if frames else (series[0], "yxc")
            with h5py.File(out.parent / "cells.h5", "w") as g:
                g.create_dataset("data", data=data).attrs["axistags"] = axistags_json(axes)
            lane["filePath"] = b"cells.h5/data"
            lane["location"] = b"FileSystem"
            lane["__class__"] = b"RelativeFilesystemDatasetInfo"
        lane["axistags"] = axistags_json(axes).encode()
        lane["shape"] = np.asarray(data.shape)
        sets = f.create_group("PixelClassification/LabelSets/labels000")
        t = 1 if frames else 0
        for k, (block, (y0, y1), (x0, x1)) in enumerate(blocks):
            if v < (1, 3, 3, 1, 2):
                stored = block.T[None, :, :, None, None]
                text = f"[{t}:{t + 1},{x0}:{x1},{y0}:{y1},0:1,0:1]"
            elif frames:
                stored, text = block[None, ..., None], f"[{t}:{t + 1},{y0}:{y1},{x0}:{x1},0:1]"
            else:
                stored, text = block[..., None], f"[{y0}:{y1},{x0}:{x1},0:1]"
            sets.create_dataset(f"block{k:04d}", data=stored).attrs["blockSlice"] = text
    return out


WHOLE = (slice(None), slice(None))


@pytest.fixture(scope="module")
def base(forested_ilp: Path) -> Path:
    """The project the older layouts are made from (its whole image is the crop)."""
    return forested_ilp


@pytest.fixture(scope="module")
def reference(base: Path):
    """The base project itself: stored-forest probabilities (exact features, so that every
    layout is compared with the same arithmetic)."""
    project = read_project(base)
    raw, axes = project.read_lane(0)
    crop = raw[WHOLE] if raw.ndim == 3 else raw[WHOLE][..., np.newaxis]  # yxc
    labels = project.label_image(0)[WHOLE]
    stored = ProjectPredictor(project, rounding="exact").fit()
    return crop, labels, stored.predict_proba(crop, "yxc")


VERSIONS = ["1.2.0rc10", "1.3.3post1", "1.3.3post3", "1.4.0b5"]


@pytest.mark.parametrize("version", VERSIONS)
def test_older_layouts_read_and_evaluate(base: Path, tmp_path: Path, reference, version: str) -> None:
    crop, labels, expected = reference
    ilp = legacy_project(base, tmp_path / "old.ilp", version, crop=WHOLE)
    project = read_project(ilp)
    assert project.lanes[0].exists
    assert np.array_equal(project.label_image(0), labels)
    assert default_rounding(project) == ("fast" if version.startswith("1.4") else "muladd")
    predictor = ProjectPredictor(project, rounding="exact").fit()
    raw, axes = project.read_lane(0)
    assert np.array_equal(predictor.predict_proba(raw, axes), expected)


def test_older_2d_t_layout_stored_forest_per_frame(base: Path, tmp_path: Path, reference) -> None:
    crop, labels, expected = reference
    ilp = legacy_project(base, tmp_path / "old.ilp", "1.2.0rc10", frames=True, crop=WHOLE)
    project = read_project(ilp)
    assert project.lanes[0].canonical_axes == "tyxc"
    assert sorted(project.frame_label_counts(0)) == [1]
    dense = project.label_image(0)
    assert not dense[0].any() and np.array_equal(dense[1], labels)
    predictor = ProjectPredictor(project, rounding="exact").fit()
    raw, axes = project.read_lane(0)
    assert axes == "txyzc"
    proba = predictor.predict_proba(raw, axes)
    assert np.array_equal(proba[1], expected)
    flipped = ProjectPredictor(read_project(base), rounding="exact").fit()
    assert np.array_equal(proba[0], flipped.predict_proba(crop[::-1, ::-1], "yxc"))
    # retraining draws its samples from the labelled frame only: same forest as from the crop
    retrained = ProjectPredictor(project, retrain=True, seed=0, n_trees=8, rounding="exact").fit()
    assert retrained.classifier_.training_info_["n_images"] == 1
    assert retrained.classifier_.training_info_["n_samples"] == int((labels > 0).sum())


def test_root_oracle_on_older_layout(pc_ilp: Path, tmp_path: Path, shared_dir: Path) -> None:
    """ilastik's own root thresholds, checked on features exported from a 1.2-layout project in
    its ``txyzc`` order (the oracle reads the project's 5-D blocks itself)."""
    tool = shared_dir / "tools" / "ilp_roots.py"
    # the whole image: a crop changes σ = 10 features of labelled pixels near its edges
    ilp = legacy_project(pc_ilp, tmp_path / "old.ilp", "1.2.0rc10", crop=(slice(None),) * 2)
    project = read_project(ilp)
    predictor = ProjectPredictor(project, rounding="exact").fit()
    raw, axes = project.read_lane(0)
    feats = predictor.compute(raw, axes, ["Features"])["Features"]  # canonical yxc
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("f", data=feats.transpose(1, 0, 2)[None, :, :, None, :])
        ds.attrs["axistags"] = axistags_json("txyzc")
    res = subprocess.run([sys.executable, str(tool), str(ilp), f"{path}/f", "txyzc"],
                         capture_output=True, text=True, timeout=300)
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "100 % of root thresholds" in res.stdout
