"""Writing minimal Pixel Classification projects and copying label sets."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pyquint.errors import InputError
from pyquint.features import FeatureSelection
from pyquint.ilastik import copy_labels, read_project, write_project


def _image_and_labels(seed: int = 0, shape=(300, 280)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    labels = np.zeros(shape, np.uint8)
    labels[10:20, 30:50] = 1
    labels[250:270, 260:275] = 2  # in another 256-tile than the first
    labels[100, 100] = 3
    return image, labels


def test_round_trip_arrays(tmp_path: Path) -> None:
    image, labels = _image_and_labels()
    sel = FeatureSelection.steinbock()
    path = write_project(tmp_path / "p.ilp", [image], [labels], sel,
                         label_names=["bg", "cell", "streak"], label_colors=[[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    # independent h5py read of the layout
    with h5py.File(path, "r") as f:
        assert f["ilastikVersion"][()] == b"1.4.0"
        assert f["workflowName"][()] == b"Pixel Classification"
        assert f["Input Data/StorageVersion"][()] == b"0.2"
        assert f["Input Data/Role Names"][()].tolist() == [b"Raw Data", b"Prediction Mask"]
        raw = f["Input Data/infos/lane0000/Raw Data"]
        assert raw["location"][()] == b"ProjectInternal"
        inner = raw["filePath"][()].decode()
        assert np.array_equal(f[inner][()], image)
        assert json.loads(raw["axistags"][()])["axes"][0]["key"] == "y"
        assert np.array_equal(f["FeatureSelections/SelectionMatrix"][()], sel.matrix)
        assert f["FeatureSelections/Scales"][()].tolist() == list(sel.scales)
        assert f["PixelClassification/LabelNames"][()].tolist() == [b"bg", b"cell", b"streak"]
        assert f["PixelClassification/LabelColors"][()].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
        blocks = f["PixelClassification/LabelSets/labels000"]
        dense = np.zeros(labels.shape + (1,), np.uint8)
        for name in blocks:
            text = blocks[name].attrs["blockSlice"]
            (y0, y1), (x0, x1), (c0, c1) = [tuple(map(int, r.split(":"))) for r in text.strip("[]").split(",")]
            assert (c0, c1) == (0, 1)
            dense[y0:y1, x0:x1] = blocks[name][()]
        assert np.array_equal(dense[..., 0], labels)
        assert "ClassifierForests" not in f["PixelClassification"]
    # and through the reader
    p = read_project(path)
    assert np.array_equal(p.label_image(0)[..., 0], labels)
    assert p.feature_selection() == sel
    assert p.label_names == ["bg", "cell", "streak"]
    raw, axes = p.read_lane(0)
    assert axes == "yx" and np.array_equal(raw, image)
    assert p.label_counts().tolist() == [200, 300, 1]


def test_referenced_image_relative_path(tmp_path: Path) -> None:
    image, labels = _image_and_labels(1)
    (tmp_path / "imgs").mkdir()
    png = tmp_path / "imgs" / "section_s001.png"
    Image.fromarray(image).save(png)
    path = write_project(tmp_path / "p.ilp", [png], [labels], FeatureSelection.all(), store_raw=False)
    with h5py.File(path, "r") as f:
        raw = f["Input Data/infos/lane0000/Raw Data"]
        assert raw["filePath"][()] == b"imgs/section_s001.png"
        assert raw["nickname"][()] == b"section_s001"
        assert raw["location"][()] == b"FileSystem"
        assert len(f["Input Data/local_data"]) == 0
    p = read_project(path)
    assert p.lanes[0].exists and p.missing_files == []
    data, axes = p.read_lane(0)
    assert axes == "yxc" and np.array_equal(data[..., 0], image)
    png.rename(tmp_path / "elsewhere.png")
    assert read_project(path).missing_files == ["imgs/section_s001.png"]


def test_default_names_colours_and_no_selection(tmp_path: Path) -> None:
    image, labels = _image_and_labels()
    p = read_project(write_project(tmp_path / "p.ilp", image, labels, None))
    assert p.label_names == ["Label 1", "Label 2", "Label 3"]
    assert p.label_colors.tolist()[:2] == [[255, 225, 25], [0, 130, 200]]  # as in pc.ilp
    assert p.feature_selection() is None


def test_pc_ilp_labels_written_back_unchanged(pc_ilp: Path, tmp_path: Path) -> None:
    src = read_project(pc_ilp)
    raw, axes = src.read_lane(0)
    # 1) rebuilt from the read project: same labels, selection, names, colours
    rebuilt = write_project(tmp_path / "rebuilt.ilp", [raw], [src.label_image(0)], src.feature_selection(),
                            src.label_names, src.label_colors, axes=axes)
    again = read_project(rebuilt)
    assert np.array_equal(again.label_image(0), src.label_image(0))
    assert again.feature_selection() == src.feature_selection()
    assert (again.label_names, again.label_colors.tolist()) == (src.label_names, src.label_colors.tolist())
    # 2) copy_labels: the stored blocks byte for byte, with their attributes
    blank = write_project(tmp_path / "blank.ilp", [raw], None, src.feature_selection(), axes=axes)
    out = copy_labels(src, blank, tmp_path / "copied.ilp")
    with h5py.File(pc_ilp, "r") as a, h5py.File(out, "r") as b:
        sa, sb = a["PixelClassification/LabelSets/labels000"], b["PixelClassification/LabelSets/labels000"]
        assert sorted(sa) == sorted(sb) == [f"block{i:04d}" for i in range(5)]
        for name in sa:
            assert sa[name][()].tobytes() == sb[name][()].tobytes()
            assert dict(sa[name].attrs) == dict(sb[name].attrs)
    assert np.array_equal(read_project(out).label_image(0), src.label_image(0))
    # the target was not modified, and in-place needs overwrite=True
    assert read_project(blank).label_blocks == []
    with pytest.raises(InputError, match="in place"):
        copy_labels(src, blank)


def test_copy_labels_refuses_blocks_outside_target(forested_ilp: Path, tmp_path: Path) -> None:
    small = write_project(tmp_path / "small.ilp", [np.zeros((100, 100), np.uint8)], None, None)
    with pytest.raises(InputError, match="outside the image"):
        copy_labels(forested_ilp, small, tmp_path / "out.ilp")
    assert not (tmp_path / "out.ilp").exists()


def test_export_settings_stored_as_numbers(tmp_path: Path) -> None:
    settings = {"OutputFormat": "tiff", "ExportDtype": "uint16", "InputMin": 0.0, "InputMax": 1.0,
                "ExportMin": 0, "ExportMax": 65535}
    image, labels = _image_and_labels()
    p = read_project(write_project(tmp_path / "p.ilp", image, labels, None, export_settings=settings))
    for key, value in settings.items():
        assert p.export_settings[key] == value


@pytest.mark.parametrize(
    ("labels", "match"),
    [(np.zeros((10, 10), np.uint8), "has shape"), (np.full((300, 280), 300, np.int32), "0..255"),
     (np.zeros((300, 280), np.float32), "integers")],
)
def test_bad_labels(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    image, _ = _image_and_labels()
    with pytest.raises(InputError, match=match):
        write_project(tmp_path / "p.ilp", [image], [labels], None)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_bad_arguments(tmp_path: Path) -> None:
    image, labels = _image_and_labels()
    path = write_project(tmp_path / "p.ilp", [image], [labels], None)
    with pytest.raises(InputError, match="already exists"):
        write_project(path, [image], [labels], None)
    write_project(path, [image], [labels], None, overwrite=True)
    with pytest.raises(InputError, match="label names"):
        write_project(tmp_path / "q.ilp", [image], [labels], None, label_names=["a"])
    with pytest.raises(InputError, match="2 images but 1 label"):
        write_project(tmp_path / "q.ilp", [image, image], [labels], None)
    with pytest.raises(InputError, match="RGB"):
        write_project(tmp_path / "q.ilp", [image], [labels], None, label_colors=[[0, 0, 300]] * 3)
