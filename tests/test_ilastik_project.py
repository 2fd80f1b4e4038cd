"""Reading ilastik projects: pc.ilp (1.4.0b11), steinbock's 1.3.3 template, legacy layouts, bad files."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.ilastik import read_project
from pyquint.ilastik._version import parse_version
from pyquint.io import axistags_json


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def made_copy(made_ilp: Path, tmp_path: Path) -> Path:
    """A copy of a pyquint-written project, for tests that alter a project to break it."""
    dst = tmp_path / "made.ilp"
    shutil.copyfile(made_ilp, dst)
    return dst


@pytest.fixture
def made_steinbock_ilp(tmp_path: Path) -> Path:
    """A project as `steinbock prepare` writes it (pyquint's byte-compatible prepare), crops absent."""
    from synth import steinbock_project_without_crops

    return steinbock_project_without_crops(tmp_path)


@pytest.fixture
def steinbock_ilp(reference_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "sb" / "pixel_classifier.ilp"
    dst.parent.mkdir()
    with gzip.open(reference_dir / "steinbock" / "run_default" / "pixel_classifier.ilp.gz") as src:
        dst.write_bytes(src.read())
    return dst


# --------------------------------------------------------------------------- pc.ilp
def test_pc_ilp_contents(pc_ilp: Path) -> None:
    before = _sha(pc_ilp)
    p = read_project(pc_ilp)
    assert p.version == "1.4.0b11" and p.kind == "pixel" and p.workflow == "Pixel Classification"
    assert p.label_names == ["Label 1", "Label 2"]
    assert p.label_colors.tolist() == [[255, 225, 25], [0, 130, 200]]
    assert p.pmap_colors.tolist() == [[255, 225, 25], [0, 130, 200]]
    assert len(p.label_blocks) == 5
    assert [b.name for b in p.label_blocks] == [f"block{i:04d}" for i in range(5)]
    # blockSlice of block0000 is "[329:396,288:494,0:1]" in the file
    b0 = p.label_blocks[0]
    assert (b0.start, b0.stop, b0.axes) == ((329, 288, 0), (396, 494, 1), "yxc")
    values = set(np.unique(np.concatenate([b.data.ravel() for b in p.label_blocks])).tolist())
    assert values == {0, 1, 2}
    counts = p.label_counts()
    # vigra recorded 1132 training samples (_ext_param/row_count_) for this forest
    assert counts.sum() == 1132 and len(counts) == 2 and counts.min() > 0
    labels = p.label_image(0)
    assert labels.shape == (1024, 1344, 1) and labels.dtype == np.uint8
    assert np.count_nonzero(labels) == 1132
    with h5py.File(pc_ilp, "r") as f:  # independent read of one block
        blk = f["PixelClassification/LabelSets/labels000/block0003"][()]
    assert np.array_equal(labels[370:503, 504:660], blk)
    # lane: raw data inside the project
    assert len(p.lanes) == 1 and p.lanes[0].is_internal and p.missing_files == []
    raw, axes = p.read_lane(0)
    assert raw.shape == (1024, 1344, 1) and axes == "yxc" and raw.dtype == np.uint8
    # forests and export settings
    assert p.forest_info["n_forests"] == 4 and p.forest_info["tree_counts"] == [25] * 4
    assert p.forest_info["n_features"] == 49 and p.forest_info["known_labels"] == [1, 2]
    assert p.export_settings["OutputFormat"] == "hdf5"
    assert p.export_settings["OutputFilenameFormat"] == "{dataset_dir}/{nickname}_{result_type}"
    assert _sha(pc_ilp) == before  # never modified


def test_pc_ilp_feature_selection(pc_ilp: Path) -> None:
    from pyquint.features import feature_names

    p = read_project(pc_ilp)
    sel = p.feature_selection()
    assert sel.scales == (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
    assert sel.n_channels(1, 2) == 49
    assert int(sel.matrix.sum()) == 37 and sel.matrix[0].all() and not sel.matrix[1:, 0].any()
    # names of the forest's feature columns, as ilastik saved them
    assert feature_names(sel, 1, 2) == p.forest_info["feature_names"]


def test_read_only_file_and_locked_by_writer(forested_ilp: Path, tmp_path: Path) -> None:
    pc_copy = tmp_path / "forested.ilp"
    shutil.copyfile(forested_ilp, pc_copy)
    with h5py.File(forested_ilp, "r") as f:  # labelled pixels, counted straight from the blocks
        n_labelled = sum(int((b[()] > 0).sum()) for b in f["PixelClassification/LabelSets/labels000"].values())
        n_blocks = len(f["PixelClassification/LabelSets/labels000"])
    os.chmod(pc_copy, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # 0444
    before = _sha(pc_copy)
    p = read_project(pc_copy)
    assert len(p.label_blocks) == n_blocks and p.forest().n_trees == 100
    assert _sha(pc_copy) == before
    os.chmod(pc_copy, 0o644)
    # another process holds the project open for writing (as ilastik does)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import h5py, sys
            f = h5py.File({str(pc_copy)!r}, "a")
            print("open", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        p = read_project(pc_copy)
        assert len(p.label_blocks) == n_blocks and p.label_counts().sum() == n_labelled > 0
    finally:
        holder.communicate("", timeout=30)


# --------------------------------------------------------------------------- steinbock / legacy
def test_steinbock_template(steinbock_ilp: Path) -> None:
    p = read_project(steinbock_ilp)
    assert p.version == "1.3.3post3" and p.kind == "pixel"
    assert p.label_names == ["Nucleus", "Cytoplasm", "Background"]
    assert p.pmap_colors.tolist()[1] == [0, 225, 0]  # steinbock's quirk, read as stored
    assert p.selection_matrix is None and p.feature_selection() is None  # empty group
    assert not p.has_labels and not p.has_forest and p.label_blocks == []
    assert [lane.axes for lane in p.lanes] == ["cyx"] * 3
    assert p.lanes[0].file_path == "ilastik_crops/synth_a_x2_y102_w50_h50.h5/crop"
    assert p.lanes[0].canonical_axes == "yxc"
    # the crops are not beside the project: each is listed as missing
    assert len(p.missing_files) == 3 and all(m.startswith("ilastik_crops/") for m in p.missing_files)
    with pytest.raises(InputError, match="no labels"):
        p.training_data()
    with pytest.raises(InputError, match="missing"):
        p.read_lane(0)


def _add_blocks(path: Path, blocks: list[tuple[np.ndarray, str, str | None]], lane: int = 0) -> None:
    with h5py.File(path, "a") as f:
        sets = f["PixelClassification"].require_group("LabelSets")
        if f"labels{lane:03d}" in sets:
            del sets[f"labels{lane:03d}"]
        g = sets.create_group(f"labels{lane:03d}")
        for k, (data, slice_text, tags) in enumerate(blocks):
            ds = g.create_dataset(f"block{k:04d}", data=data)
            ds.attrs["blockSlice"] = slice_text.encode()
            if tags is not None:
                ds.attrs["axistags"] = tags


def _set(path: Path, key: str, value: str) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        f.create_dataset(key, data=value.encode())


def test_block_axis_rules_of_each_version(made_steinbock_ilp: Path, tmp_path: Path) -> None:
    """The same 10x20 label patch at y 5:15, x 7:27, stored as each ilastik version did."""
    patch = np.zeros((10, 20), np.uint8)
    patch[:, :5], patch[:, 5:12], patch[:, 12:] = 1, 2, 3
    expected = np.zeros((50, 50), np.uint8)
    expected[5:15, 7:27] = patch

    # 1.3.3post3 without axistags, lane in cyx (steinbock after `fix`): original order
    _add_blocks(made_steinbock_ilp, [(patch[np.newaxis], "[0:1,5:15,7:27]", None)])
    p = read_project(made_steinbock_ilp)
    assert p.label_blocks[0].stored_axes == "cyx"
    assert np.array_equal(p.label_image(0)[..., 0], expected)

    # same version, lane in yxc (legacy steinbock crops before `fix`)
    with h5py.File(made_steinbock_ilp, "a") as f:
        rd = f["Input Data/infos/lane0000/Raw Data"]
        del rd["axistags"], rd["shape"]
        rd.create_dataset("axistags", data=axistags_json("yxc").encode())
        rd.create_dataset("shape", data=np.array([50, 50, 3]))
    _add_blocks(made_steinbock_ilp, [(patch[..., np.newaxis], "[5:15,7:27,0:1]", None)])
    p = read_project(made_steinbock_ilp)
    assert p.label_blocks[0].stored_axes == "yxc"
    assert np.array_equal(p.label_image(0)[..., 0], expected)

    # 1.2.0rc10 / 1.3.3post1: 5-D txyzc blocks whatever the data
    _set(made_steinbock_ilp, "ilastikVersion", "1.2.0rc10")
    txyzc = patch.T[np.newaxis, :, :, np.newaxis, np.newaxis]
    _add_blocks(made_steinbock_ilp, [(txyzc, "[0:1,7:27,5:15,0:1,0:1]", None)])
    p = read_project(made_steinbock_ilp)
    assert p.label_blocks[0].stored_axes == "txyzc"
    assert np.array_equal(p.label_image(0)[..., 0], expected)

    # an axistags attribute always wins (1.4.0b11 style), here in xyc order
    _set(made_steinbock_ilp, "ilastikVersion", "1.4.0")
    _add_blocks(made_steinbock_ilp, [(patch.T[..., np.newaxis], "[7:27,5:15,0:1]", axistags_json("xyc"))])
    p = read_project(made_steinbock_ilp)
    assert np.array_equal(p.label_image(0)[..., 0], expected)


def test_lanes_h5_inner_paths_relative_and_missing(made_steinbock_ilp: Path) -> None:
    crops = made_steinbock_ilp.parent / "ilastik_crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    data = rng.random((3, 50, 50)).astype(np.float32)
    with h5py.File(crops / "synth_a_x2_y102_w50_h50.h5", "w") as f:
        f.create_dataset("crop", data=data).attrs["axistags"] = axistags_json("cyx")
    p = read_project(made_steinbock_ilp)
    assert p.lanes[0].exists and not p.lanes[1].exists
    assert p.missing_files == [
        "ilastik_crops/synth_b_x112_y8_w50_h50.h5/crop",
        "ilastik_crops/synth_c_x172_y33_w50_h50.h5/crop",
    ]
    raw, axes = p.read_lane(0)
    assert axes == "cyx" and np.array_equal(raw, data)
    # a moved file is found by name in search_dirs
    moved = made_steinbock_ilp.parent / "moved"
    moved.mkdir()
    with h5py.File(moved / "synth_b_x112_y8_w50_h50.h5", "w") as f:
        f.create_dataset("crop", data=data[::-1])
    raw, _ = p.read_lane(1, search_dirs=(moved,))
    assert np.array_equal(raw, data[::-1])


# --------------------------------------------------------------------------- versions
@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.4.0b11", (1, 4, 0, -2, 11)), ("1.3.3post1", (1, 3, 3, 1, 1)), ("1.2.0rc10", (1, 2, 0, -1, 10)),
     ("1.4.1", (1, 4, 1, 0, 0)), ("1.4.1.post1", (1, 4, 1, 1, 1)), ("1.0", (1, 0, 0, 0, 0))],
)
def test_parse_version(text: str, expected: tuple) -> None:
    assert parse_version(text) == expected


def test_version_order() -> None:
    order = ["1.2.0rc10", "1.3.3", "1.3.3post1", "1.3.3post2", "1.4.0b7", "1.4.0b11", "1.4.0", "1.4.1"]
    assert sorted(order, key=parse_version) == order


# --------------------------------------------------------------------------- bad input
def test_not_hdf5(tmp_path: Path) -> None:
    bad = tmp_path / "notes.ilp"
    bad.write_text("this is not a project\n" * 100)
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_project(bad)
    with pytest.raises(InputError, match="no such project"):
        read_project(tmp_path / "absent.ilp")


def test_truncated(made_ilp: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ilp"
    cut.write_bytes(made_ilp.read_bytes()[: made_ilp.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.ilp"):
        p = read_project(cut)
        p.read_lane(0)  # pragma: no cover - reading must fail earlier or here
        p.forest()  # pragma: no cover


def test_plain_hdf5_is_not_a_project(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputError, match="not an ilastik project"):
        read_project(path)


def test_unknown_workflow(made_copy: Path) -> None:
    _set(made_copy, "workflowName", "Carving")
    with pytest.raises(InputError, match="unknown or unsupported ilastik workflow 'Carving'"):
        read_project(made_copy)


@pytest.mark.parametrize("version", ["0.5.0", "1.6.0", "2.0.1", "banana"])
def test_version_outside_range(made_copy: Path, version: str) -> None:
    _set(made_copy, "ilastikVersion", version)
    with pytest.raises(InputError, match="version"):
        read_project(made_copy)


def test_object_classification_threshold_settings(made_copy: Path) -> None:
    _set(made_copy, "workflowName", "Object Classification (from pixel classification)")
    with h5py.File(made_copy, "a") as f:
        g = f.create_group("ThresholdTwoLevels")
        for key, value in (("CurOperator", 0), ("MinSize", 10), ("MaxSize", 1000000),
                           ("LowThreshold", 0.5), ("HighThreshold", 0.8), ("Channel", 0)):
            g.create_dataset(key, data=value)
        s = g.create_group("SmootherSigma")
        for axis in "xyz":
            s.create_dataset(axis, data=1.0)
    p = read_project(made_copy)
    assert p.kind == "object"
    t = p.threshold_settings
    assert (t["MinSize"], t["MaxSize"], t["LowThreshold"], t["HighThreshold"]) == (10, 1000000, 0.5, 0.8)
    assert t["SmootherSigma"] == {"x": 1.0, "y": 1.0, "z": 1.0}


def test_label_block_outside_image(made_copy: Path) -> None:
    block = np.ones((10, 10, 1), np.uint8)
    _add_blocks(made_copy, [(block, "[1020:1030,0:10,0:1]", axistags_json("yxc"))])
    p = read_project(made_copy)
    with pytest.raises(InputError, match="outside the image"):
        p.label_image(0)
    with pytest.raises(InputError, match="outside the image"):
        p.check_labels_inside()


@pytest.mark.parametrize(
    ("slice_text", "match"),
    [("[0:10,0:10]", "ranges"), ("[0:10,0:12,0:1]", "spans"), ("0:10,0:10,0:1", "unreadable"),
     ("[5:2,0:10,0:1]", "invalid range")],
)
def test_bad_block_slice(made_copy: Path, slice_text: str, match: str) -> None:
    _add_blocks(made_copy, [(np.ones((10, 10, 1), np.uint8), slice_text, axistags_json("yxc"))])
    with pytest.raises(InputError, match=match):
        read_project(made_copy)


def test_inconsistent_feature_selection(made_copy: Path) -> None:
    with h5py.File(made_copy, "a") as f:
        del f["FeatureSelections/Scales"]
        f["FeatureSelections"].create_dataset("Scales", data=np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="FeatureSelections is inconsistent"):
        read_project(made_copy)


def test_info_is_json_friendly(forested_ilp: Path) -> None:
    p = read_project(forested_ilp)
    json.dumps(p.export_settings)
    json.dumps({k: v for k, v in p.forest_info.items()})
