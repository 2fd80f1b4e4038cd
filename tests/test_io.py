"""pyquint.io: axes, readers/writers round trips through real readers, bad files, atomic writes."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from pyquint.errors import InputError
from pyquint.io import (
    atomic_output,
    axistags_json,
    guess_axes,
    parse_axistags,
    read_image,
    reorder_axes,
    split_h5_path,
    to_canonical,
    write_image,
)


@pytest.fixture
def grey():
    return (np.arange(24 * 31) % 251).astype(np.uint8).reshape(24, 31)


def test_split_h5_path():
    assert split_h5_path("a/b/img.h5/volume/data") == (__import__("pathlib").Path("a/b/img.h5"), "volume/data")
    assert split_h5_path("x.png")[1] is None
    assert split_h5_path("proj.ilp")[1] is None


@pytest.mark.parametrize("shape,axes", [((5, 6), "yx"), ((5, 6, 3), "yxc"), ((7, 5, 6), "zyx"),
                                         ((7, 5, 6, 2), "zyxc"), ((2, 7, 5, 6, 2), "tzyxc")])
def test_guess_axes(shape, axes):
    assert guess_axes(shape) == axes


def test_axistags_round_trip_matches_vigra_layout():
    text = axistags_json("yxc")
    parsed = json.loads(text)
    assert [a["key"] for a in parsed["axes"]] == ["y", "x", "c"]
    assert [a["typeFlags"] for a in parsed["axes"]] == [2, 2, 1]
    assert parse_axistags(text.encode()) == "yxc"


def test_to_canonical_orders_like_ilastik():
    cyx = np.zeros((3, 4, 5))
    data, axes = to_canonical(cyx, "cyx")
    assert axes == "yxc" and data.shape == (4, 5, 3)
    data, axes = to_canonical(np.zeros((1, 4, 5)), "zyx")
    assert axes == "yxc" and data.shape == (4, 5, 1)
    data, axes = to_canonical(np.zeros((6, 4, 5, 2)), "zyxc")
    assert axes == "zyxc" and data.shape == (6, 4, 5, 2)
    arr = np.arange(60).reshape(3, 4, 5)
    back = reorder_axes(to_canonical(arr, "cyx")[0], "yxc", "cyx")
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize("suffix", ["png", "tif", "h5", "npy"])
def test_write_read_round_trip(tmp_path, grey, suffix):
    path = write_image(tmp_path / f"img.{suffix}", grey, "yx")
    data, axes = read_image(path)
    np.testing.assert_array_equal(data.reshape(grey.shape), grey)
    assert axes in ("yx", "yxc")


def test_png_is_read_by_pillow_and_16bit_kept(tmp_path):
    img16 = (np.arange(12 * 10) * 500).astype(np.uint16).reshape(12, 10)
    write_image(tmp_path / "a.png", img16, "yx")
    with Image.open(tmp_path / "a.png") as im:
        np.testing.assert_array_equal(np.asarray(im).astype(np.uint16), img16)
    data, axes = read_image(tmp_path / "a.png")
    assert data.dtype == np.uint16 and axes == "yxc"


def test_palette_png_indices_and_palette(tmp_path, grey):
    labels = (grey % 4).astype(np.uint8)
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (0, 0, 255)
    write_image(tmp_path / "p.png", labels, "yx", palette=palette)
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), labels)
        assert im.getpalette()[3:6] == [0, 0, 255]
    data, _ = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(data[..., 0], labels)


def test_h5_inner_path_and_axistags(tmp_path):
    vol = np.random.default_rng(0).random((3, 8, 9)).astype(np.float32)
    write_image(f"{tmp_path}/v.h5/volume/data", vol, "cyx", attrs={"drange": (0.0, 1.0)})
    with h5py.File(tmp_path / "v.h5", "r") as f:
        ds = f["volume/data"]
        assert parse_axistags(ds.attrs["axistags"]) == "cyx"
        assert tuple(ds.attrs["drange"]) == (0.0, 1.0)
    data, axes = read_image(f"{tmp_path}/v.h5/volume/data")
    assert axes == "cyx"
    np.testing.assert_array_equal(data, vol)
    # a single dataset may be found without naming it
    assert read_image(tmp_path / "v.h5")[1] == "cyx"


def test_h5_without_axistags_is_guessed(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["d"] = np.zeros((4, 5, 6), np.uint8)
    assert read_image(f"{tmp_path}/g.h5/d")[1] == "zyx"
    assert read_image(f"{tmp_path}/g.h5/d", axes="cyx")[1] == "cyx"


def test_tiff_axes_from_tifffile(tmp_path):
    data = np.zeros((3, 10, 12), np.float32)
    tifffile.imwrite(tmp_path / "s.tiff", data[None, None, :, :, :, None], imagej=True)
    arr, axes = read_image(tmp_path / "s.tiff")
    assert axes == "cyx" and arr.shape == (3, 10, 12)
    rgb = np.zeros((10, 12, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_image(tmp_path / "rgb.tif")[1] == "yxc"


@pytest.mark.parametrize("suffix", ["png", "tif", "h5"])
def test_truncated_and_corrupt_files(tmp_path, grey, suffix):
    path = write_image(tmp_path / f"t.{suffix}", grey, "yx")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(InputError, match="t."):
        read_image(path)
    path.write_bytes(b"not an image at all" * 10)
    with pytest.raises(InputError):
        read_image(path)


def test_missing_file_folder_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "x.xyz").write_bytes(b"123")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "x.xyz")


def test_bad_axes_and_dtypes(tmp_path):
    with pytest.raises(InputError, match="dimensions"):
        read_image(write_image(tmp_path / "a.npy", np.zeros((4, 5)), "yx"), axes="zyx")
    with pytest.raises(InputError, match="invalid axes"):
        to_canonical(np.zeros((4, 5)), "ab")
    np.save(tmp_path / "c.npy", np.zeros((4, 5), np.complex64))
    with pytest.raises(InputError, match="unsupported pixel type"):
        read_image(tmp_path / "c.npy")
    with pytest.raises(InputError, match="uint8 or uint16"):
        write_image(tmp_path / "f.png", np.zeros((4, 5), np.float32), "yx")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_output_interrupt_as_signals_are_released_leaves_nothing(tmp_path, monkeypatch):
    # a Ctrl-C held back while the temp file is made arrives as the hold ends: it must still
    # be inside the cleanup's reach (it was not, once: the temp file leaked)
    import contextlib

    from pyquint import _outputs

    @contextlib.contextmanager
    def held_then_interrupted():
        yield
        raise KeyboardInterrupt  # what a pending SIGINT does at the unblock

    monkeypatch.setattr(_outputs, "_signals_held", held_then_interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "out.h5") as tmp:
        tmp.write_bytes(b"never reached")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_permissions_follow_umask(tmp_path, grey):
    path = write_image(tmp_path / "perm.png", grey, "yx")
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
