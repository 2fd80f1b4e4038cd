"""ilastik-style exports: names, conversion, and round trips through h5py, tifffile and Pillow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from pyquint.errors import InputError
from pyquint.export import (
    EXPORT_SOURCES,
    convert_for_export,
    export_array,
    export_filename,
    nickname,
    normalize_format,
    normalize_source,
    write_export,
)
from pyquint.io import read_image


def _axes_of(ds) -> str:
    return "".join(a["key"] for a in json.loads(ds.attrs["axistags"])["axes"])


# --------------------------------------------------------------------------- names
def test_default_filenames_as_ilastik(tmp_path):
    raw = tmp_path / "data" / "brain_s001.png"
    assert export_filename(raw, "probabilities") == tmp_path / "data" / "brain_s001_Probabilities.h5"
    assert export_filename(raw, "SIMPLE SEGMENTATION", "png").name == "brain_s001_Simple Segmentation.png"
    assert export_filename(raw, "uncertainty", "tiff").suffix == ".tiff"
    assert export_filename(raw, "features", "compressed hdf5").suffix == ".h5"
    assert export_filename(raw, "Labels", "npy").suffix == ".npy"
    # HDF5 inputs: nickname gets the internal path with / -> -
    assert nickname("vol/img.h5/volume/data") == "img-volume-data"
    assert export_filename("vol/img.h5/volume/data", "Probabilities") == Path(
        "vol/img-volume-data_Probabilities.h5")


def test_dots_in_nickname_are_kept_not_truncated():
    # ilastik's splitext bug would give "a.h5"
    assert export_filename("x/a.9_x.png", "Probabilities").name == "a.9_x_Probabilities.h5"
    assert export_filename("x/v1.2.tif", "Simple Segmentation", "png").name == "v1.2_Simple Segmentation.png"
    # an extension written at the end of the pattern is replaced by the format's
    assert export_filename("x/a.9.png", "Probabilities", "png", "out/{nickname}.h5") == Path("out/a.9.png")


def test_filename_placeholders(tmp_path):
    out = export_filename(tmp_path / "img.png", "Probabilities", "hdf5",
                          "{dataset_dir}/res/{nickname}-{result_type}-{x_start}-{x_stop}-{y_stop}",
                          shape=(30, 40, 2), axes="yxc")
    assert out == tmp_path / "res" / "img-Probabilities-0-40-30.h5"
    roi = export_filename("a.png", "Uncertainty", "tif", "{roi}", shape=(3, 4, 1), axes="yxc")
    assert roi.name == "[(0, 0, 0), (3, 4, 1)].tif"
    assert export_filename("a/b.png", "Probabilities", dataset_dir="o") == Path("o/b_Probabilities.h5")
    with pytest.raises(InputError, match=r"unknown placeholder \{bogus\}"):
        export_filename("a.png", "Probabilities", "hdf5", "{bogus}")
    with pytest.raises(InputError, match="x_start"):
        export_filename("a.png", "Probabilities", "hdf5", "{x_start}")  # no shape given
    with pytest.raises(InputError, match="invalid output file name format"):
        export_filename("a.png", "Probabilities", "hdf5", "{nickname")


def test_source_and_format_names():
    assert [normalize_source(s.lower()) for s in EXPORT_SOURCES] == list(EXPORT_SOURCES)
    assert normalize_source("simple_segmentation") == "Simple Segmentation"
    assert normalize_format("Compressed HDF5") == "compressed hdf5"
    with pytest.raises(InputError, match="unknown export source"):
        normalize_source("Segmentation")
    with pytest.raises(InputError, match="unknown output format"):
        normalize_format("jpeg2000")


# --------------------------------------------------------------------------- conversion
def test_convert_linear_map_with_rint():
    p = np.array([0.0, 0.25, 0.5, 1 / 255 * 2.5, 1.0, 1.2], np.float32)
    out, drange = convert_for_export(p, "uint8", "(0.0,1.0)", (0, 255))
    frac = np.float32(255.0)
    expected = np.clip(np.rint(np.float32(0) + (p - np.float32(0)) * frac), 0, 255)
    assert out.dtype == np.uint8 and out.tolist() == expected.astype(np.uint8).tolist()
    assert out.tolist()[:3] == [0, 64, 128]  # 63.75 -> 64, 127.5 -> 128 (half to even)
    assert out[-1] == 255 and drange == (0.0, 255.0)  # clipped
    half = convert_for_export(np.array([2.5, 3.5, -1.0], np.float32), "uint8")[0]
    assert half.tolist() == [2, 4, 0]  # rint: half to even; negative clipped
    same, drange = convert_for_export(p, source="Probabilities")
    assert same.dtype == np.float32 and np.array_equal(same, p) and drange == (0.0, 1.0)
    seg, drange = convert_for_export(np.array([1, 2], np.int64), source="Simple Segmentation")
    assert seg.dtype == np.uint8 and drange is None
    flat, _ = convert_for_export(np.ones(3, np.float32), "float32", (1, 1), (0, 255))
    assert not flat.any()  # empty input range -> factor 0, as ilastik
    with pytest.raises(InputError, match="both"):
        convert_for_export(p, "uint8", (0, 1), None)
    with pytest.raises(InputError, match="export dtype"):
        convert_for_export(p, "complex64")
    with pytest.raises(InputError, match="min, max|two finite"):
        convert_for_export(p, "uint8", "(0,1,2)", "(0,255)")


# --------------------------------------------------------------------------- formats
def test_hdf5_round_trip_with_attributes(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((20, 30, 3)).astype(np.float32)
    path = export_array(tmp_path / "p.h5", data, "yxc", drange=(0.0, 1.0))
    with h5py.File(path, "r") as f:
        ds = f["exported_data"]
        assert np.array_equal(ds[()], data) and _axes_of(ds) == "yxc"
        assert json.loads(ds.attrs["axistags"])["axes"][2]["typeFlags"] == 1
        assert ds.attrs["drange"].tolist() == [0.0, 1.0]
        assert [d.label for d in ds.dims] == ["y", "x", "c"]
    path = export_array(tmp_path / "c.h5", data, "yxc", "compressed hdf5", internal_path="a/b",
                        output_axes="cyx")
    with h5py.File(path, "r") as f:
        ds = f["a/b"]
        assert ds.compression == "gzip" and ds.compression_opts == 1
        assert ds.chunks[0] == 1 and _axes_of(ds) == "cyx"
        assert np.array_equal(ds[()], data.transpose(2, 0, 1))
    back, axes = read_image(f"{path}/a/b")
    assert axes == "cyx" and back.shape == (3, 20, 30)


def test_write_export_uses_original_axes_plus_c(tmp_path):
    proba = np.random.default_rng(1).random((4, 10, 12, 2)).astype(np.float32)  # zyxc
    # an input stored as zyx gets zyxc; one stored as xyz (3-D) gets xyzc
    p = write_export(tmp_path / "vol.h5/raw", "Probabilities", proba, "zyxc", "zyx")
    assert p == tmp_path / "vol-raw_Probabilities.h5"
    with h5py.File(p, "r") as f:
        assert _axes_of(f["exported_data"]) == "zyxc" and f["exported_data"].shape == (4, 10, 12, 2)
        assert f["exported_data"].attrs["drange"].tolist() == [0, 1]
    p = write_export(tmp_path / "vol2.tif", "Probabilities", proba, "zyxc", "xyz")
    with h5py.File(p, "r") as f:
        assert _axes_of(f["exported_data"]) == "xyzc"
        assert np.array_equal(f["exported_data"][()], proba.transpose(2, 1, 0, 3))
    # a PNG input (yxc) with a 2-D segmentation: yxc, uint8, values unchanged
    seg = np.array([[1, 2], [2, 1]], np.int64)
    p = write_export(tmp_path / "a.png", "Simple Segmentation", seg, "yx", "yxc")
    with h5py.File(p, "r") as f:
        ds = f["exported_data"]
        assert ds.dtype == np.uint8 and ds.shape == (2, 2, 1) and ds[..., 0].tolist() == seg.tolist()
        assert "drange" not in ds.attrs
    # singleton t from the original axes is restored; explicit --output_axis_order wins
    p = write_export(tmp_path / "t.h5", "Uncertainty", np.zeros((5, 6, 1), np.float32), "yxc",
                     "tyx", fmt="npy")
    assert np.load(p).shape == (1, 5, 6, 1)
    p = write_export(tmp_path / "o.png", "Uncertainty", np.zeros((5, 6, 1), np.float32), "yxc",
                     output_axes="cxy", fmt="tiff")
    arr = tifffile.imread(p)
    assert arr.shape == (1, 6, 5)


def test_png_export_like_vigra(tmp_path):
    seg = np.array([[1, 2, 3], [3, 2, 1]], np.uint8)[..., None]
    p = export_array(tmp_path / "seg.png", seg, "yxc")
    with Image.open(p) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), seg[..., 0])  # 1..N, unchanged
    f = np.array([[0.2, 0.4], [0.6, 0.7]], np.float32)[..., None]
    p = export_array(tmp_path / "f.png", f, "yxc")
    # own min..max -> 0..255, rounded half up: (x - 0.2) * 255 / 0.5
    expected = np.floor((f[..., 0].astype(np.float64) - 0.2) * (255 / 0.5) + 0.5)
    with Image.open(p) as im:
        assert np.array_equal(np.asarray(im), expected.astype(np.uint8))
        assert np.asarray(im).min() == 0 and np.asarray(im).max() == 255
    p = export_array(tmp_path / "const.png", np.full((3, 3, 1), 0.5, np.float32), "yxc")
    with Image.open(p) as im:
        assert not np.asarray(im).any()
    two = np.random.default_rng(0).random((4, 5, 2)).astype(np.float32)
    p = export_array(tmp_path / "two.png", two, "yxc")
    with Image.open(p) as im:
        assert im.mode == "LA" and np.asarray(im).shape == (4, 5, 2)
    u16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    p = export_array(tmp_path / "u16.png", u16, "yx")
    with Image.open(p) as im:
        assert np.array_equal(np.asarray(im).astype(np.uint16), u16)
    # 5 channels, or a 3-D result, do not fit a PNG: clear error, no file left behind
    with pytest.raises(InputError, match="1 to 4 channels"):
        export_array(tmp_path / "five.png", np.zeros((4, 4, 5), np.float32), "yxc")
    with pytest.raises(InputError, match="2-D"):
        export_array(tmp_path / "vol.png", np.zeros((3, 4, 4, 1), np.float32), "zyxc")
    assert not (tmp_path / "five.png").exists() and not (tmp_path / "vol.png").exists()
    assert not [n for n in os.listdir(tmp_path) if "tmp" in n]


def test_tiff_and_npy_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    proba = rng.random((7, 9, 3)).astype(np.float32)
    p = export_array(tmp_path / "p.tiff", proba, "yxc")
    with tifffile.TiffFile(p) as tif:
        assert tif.series[0].axes in ("YXS", "YXC")
        assert np.array_equal(tif.series[0].asarray(), proba)
    back, axes = read_image(p)
    assert axes == "yxc" and np.array_equal(back, proba)
    seg = rng.integers(1, 3, (7, 9, 1)).astype(np.uint8)
    p = export_array(tmp_path / "s.tif", seg, "yxc")
    assert np.array_equal(tifffile.imread(p), seg[..., 0])
    vol = rng.random((3, 7, 9, 1)).astype(np.float32)
    p = export_array(tmp_path / "v.tiff", vol, "zyxc")
    assert np.array_equal(tifffile.imread(p), vol[..., 0])
    p = export_array(tmp_path / "v.npy", vol, "zyxc")
    assert np.array_equal(np.load(p), vol)


def test_export_array_argument_errors(tmp_path):
    with pytest.raises(InputError, match="do not match"):
        export_array(tmp_path / "a.h5", np.zeros((3, 3)), "yxc")
    with pytest.raises(InputError, match="output axis order"):
        export_array(tmp_path / "a.h5", np.zeros((3, 3, 1)), "yxc", output_axes="yxq")
    with pytest.raises(InputError, match="unknown output format"):
        export_array(tmp_path / "a.gif", np.zeros((3, 3, 1)), "yxc")
