"""pyquint against steinbock's own Python API, when steinbock is installed.

Optional: ``pip install steinbock==0.16.5 pandas`` (steinbock's CLI also needs napari and
readimc; only ``steinbock.classification.ilastik`` and ``steinbock.io`` are used here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

sb_ilastik = pytest.importorskip(
    "steinbock.classification.ilastik",
    reason="steinbock is not installed (pip install steinbock==0.16.5 pandas) - direct comparison skipped",
)
sb_io = pytest.importorskip("steinbock.io")

from pyquint.steinbock import (  # noqa: E402
    channel_groups,
    create_ilastik_crop,
    create_ilastik_image,
    fix,
    prepare,
    read_panel,
    read_steinbock_image,
)


@pytest.fixture(scope="module")
def inputs(reference_dir: Path) -> Path:
    return reference_dir / "steinbock" / "inputs"


@pytest.mark.parametrize(
    ("dtype", "aggr", "mean", "scale"),
    [("float32", "mean", True, 2), ("float32", "median", False, 3), ("uint16", "mean", True, 2),
     ("uint16", "max", False, 2), ("float32", "sum", True, 1), ("float64", "mean", True, 4)],
)
def test_ilastik_images_equal_steinbock(inputs: Path, dtype: str, aggr: str, mean: bool, scale: int) -> None:
    sb_groups = sb_io.read_panel(inputs / "panel.csv")["ilastik"].values
    groups = channel_groups(read_panel(inputs / "panel.csv"))
    np.testing.assert_array_equal(groups, sb_groups.astype(float))
    for img_file in sorted((inputs / "img").glob("*.tiff")):
        img = read_steinbock_image(img_file)
        np.testing.assert_array_equal(img, sb_io.read_image(img_file, native_dtype=True))
        img = (img * 10).astype(dtype)
        theirs = sb_ilastik.create_ilastik_image(img, channel_groups=sb_groups, aggr_func=getattr(np, aggr),
                                                 prepend_mean=mean, mean_factor=100.0, scale_factor=scale)
        ours = create_ilastik_image(img, groups, aggr, mean=mean, mean_factor=100.0, scale=scale)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert np.array_equal(ours, theirs), (img_file.name, dtype, aggr)


def test_crops_equal_steinbock() -> None:
    rng_data = np.random.default_rng(5)
    shapes = [(2, 60, 80), (2, 50, 50), (2, 40, 90), (2, 90, 50), (2, 120, 130)]
    ours_rng, their_rng = np.random.default_rng(11), np.random.default_rng(11)
    for shape in shapes:
        img = rng_data.random(shape, dtype=np.float32)
        x, y, crop = sb_ilastik.create_ilastik_crop(img, 50, their_rng)
        drawn = create_ilastik_crop(img, 50, ours_rng)
        if crop is None:
            assert drawn is None
            continue
        assert drawn[:2] == (x, y) and np.array_equal(drawn[2], crop)


def test_project_equals_steinbock(tmp_path: Path, inputs: Path) -> None:
    shutil.copytree(inputs, tmp_path, dirs_exist_ok=True)
    result = prepare(tmp_path / "img", tmp_path / "panel.csv", tmp_path / "ours.ilp", crop_size=50, seed=3,
                     img_out=tmp_path / "ilastik_img", crop_out=tmp_path / "ilastik_crops")
    sb_ilastik.create_and_save_ilastik_project(result.crop_files, tmp_path / "theirs.ilp")

    def describe(path: Path) -> dict:
        out = {}
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if name.endswith(("datasetId", "time", "ClassifierFactory")):
                    return
                if isinstance(obj, h5py.Dataset):
                    out[name] = (obj.dtype.str, obj.shape, h5py.check_string_dtype(obj.dtype),
                                 np.asarray(obj[()]).tolist(), dict(obj.attrs))
                else:
                    out[name] = "group"
            f.visititems(visit)
        return out

    ours, theirs = describe(tmp_path / "ours.ilp"), describe(tmp_path / "theirs.ilp")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert repr(ours[key]) == repr(theirs[key]), key


def test_fix_equals_steinbock_on_legacy_case(tmp_path: Path, inputs: Path, reference_dir: Path) -> None:
    import runpy
    import sys

    folders = []
    for name in ("ours", "theirs"):
        d = tmp_path / name
        shutil.copytree(inputs, d)
        prepare(d / "img", d / "panel.csv", d / "pixel_classifier.ilp", crop_size=50, seed=123,
                img_out=d / "ilastik_img", crop_out=d / "ilastik_crops", dataset_id="same-id")
        argv, sys.argv = sys.argv, ["x", str(d)]
        try:
            runpy.run_path(str(reference_dir / "steinbock" / "make_legacy_fix_case.py"), run_name="__main__")
        finally:
            sys.argv = argv
        folders.append(d)
    ours, theirs = folders
    fix(ours / "pixel_classifier.ilp", ours / "ilastik_crops", ours / "ilastik_probabilities", backup=False)
    crop_files = sb_ilastik.list_ilastik_crop_files(theirs / "ilastik_crops")
    shapes, transposes = {}, []
    for crop_file, crop_transpose, crop in sb_ilastik.try_fix_ilastik_crops_from_disk(crop_files):
        sb_ilastik.write_ilastik_crop(crop, crop_file)
        shapes[crop_file.stem] = crop.shape
        transposes.append(crop_transpose)
    transpose = transposes[-1]
    sb_ilastik.fix_ilastik_project_file_inplace(theirs / "pixel_classifier.ilp", theirs / "ilastik_crops",
                                                theirs / "ilastik_probabilities", shapes, transpose)
    for crop in sorted((ours / "ilastik_crops").glob("*.h5")):
        assert crop.read_bytes() == (theirs / "ilastik_crops" / crop.name).read_bytes()
    with h5py.File(ours / "pixel_classifier.ilp", "r") as a, h5py.File(theirs / "pixel_classifier.ilp", "r") as b:
        names_a, names_b = [], []
        a.visit(names_a.append)
        b.visit(names_b.append)
        assert names_a == names_b
        for name in names_a:
            if name == "time":  # creation time of each prepare
                continue
            if isinstance(a[name], h5py.Dataset):
                assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
                assert np.asarray(a[name][()]).tolist() == np.asarray(b[name][()]).tolist(), name
                assert dict(a[name].attrs) == dict(b[name].attrs), name
