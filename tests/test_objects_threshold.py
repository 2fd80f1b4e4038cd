"""Threshold and size filter (specs/ilastik.md §5, §8 item 10)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.io import axistags_json, write_image
from pyquint.objects import gaussian_kernel, load_probabilities, smooth, threshold_objects


def _blank(shape=(20, 20)):
    return np.zeros(shape, np.float32)


# --------------------------------------------------------------------------- §8 item 10
def test_threshold_is_inclusive():
    p = _blank()
    p[2:6, 2:6] = 0.5  # exactly the threshold
    p[10:14, 10:14] = np.nextafter(np.float32(0.5), np.float32(0))  # just below
    labels = threshold_objects(p, sigma=0.0)
    assert labels.dtype == np.uint32
    assert labels.max() == 1
    assert np.all(labels[2:6, 2:6] == 1) and np.all(labels[10:14, 10:14] == 0)


def test_size_9_dropped_10_kept_and_max_inclusive():
    p = _blank()
    p[1:4, 1:4] = 1.0  # 9 pixels
    p[10:12, 5:10] = 1.0  # 10 pixels
    labels = threshold_objects(p, sigma=0.0)
    assert labels.max() == 1
    assert (labels == 1).sum() == 10 and np.all(labels[10:12, 5:10] == 1)
    assert threshold_objects(p, sigma=0.0, min_size=9).max() == 2
    assert threshold_objects(p, sigma=0.0, min_size=1, max_size=10).max() == 2
    only_small = threshold_objects(p, sigma=0.0, min_size=1, max_size=9)
    assert only_small.max() == 1 and (only_small == 1).sum() == 9


def test_diagonal_pixels_are_two_objects_2d_and_3d():
    p = _blank((6, 6))
    p[1, 1] = p[2, 2] = 1.0
    labels = threshold_objects(p, sigma=0.0, min_size=1)
    assert labels.max() == 2 and labels[1, 1] != labels[2, 2]
    q = np.zeros((3, 4, 4, 1), np.float32)  # zyxc
    q[0, 1, 1, 0] = q[1, 2, 1, 0] = 1.0  # diagonal in z-y: not 6-connected
    q[2, 0, 0, 0] = q[2, 0, 1, 0] = 1.0  # face neighbours: one object
    labels3 = threshold_objects(q, sigma=(0.0, 0.0, 0.0), min_size=1)
    assert labels3.shape == (3, 4, 4) and labels3.max() == 3
    assert labels3[2, 0, 0] == labels3[2, 0, 1]


def test_ids_in_scan_order():
    p = _blank((8, 12))
    p[0, 9:12] = 1.0  # starts first in C order although further right
    p[1:4, 0:2] = 1.0
    p[6:8, 5:7] = 1.0
    labels = threshold_objects(p, sigma=0.0, min_size=1)
    assert labels[0, 10] == 1 and labels[2, 0] == 2 and labels[7, 6] == 3


def test_uint8_and_uint16_probabilities_are_rescaled():
    p = np.zeros((10, 10), np.uint8)
    p[1:5, 1:5] = 128  # 128/255 = 0.502 >= 0.5
    p[6:10, 6:10] = 127  # 127/255 = 0.498 < 0.5
    labels = threshold_objects(p, sigma=0.0, min_size=1)
    assert labels.max() == 1 and labels[2, 2] == 1 and labels[7, 7] == 0
    # 128/255 is just above 0.502 but below 0.5022: the division really is by 255
    assert threshold_objects(p, sigma=0.0, min_size=1, threshold=0.5019).max() == 1
    with pytest.warns(UserWarning, match="no objects"):
        assert threshold_objects(p, sigma=0.0, min_size=1, threshold=0.5021).max() == 0
    q = np.zeros((10, 10), np.uint16)
    q[1:5, 1:5] = 32768  # 0.500008 >= 0.5
    q[6:10, 6:10] = 32767
    labels16 = threshold_objects(q, sigma=0.0, min_size=1)
    assert labels16.max() == 1 and labels16[2, 2] == 1


def test_probability_files(tmp_path):
    p = np.zeros((12, 14, 2), np.float32)
    p[2:6, 2:6, 1] = 0.9
    h5 = tmp_path / "img_Probabilities.h5"
    with h5py.File(h5, "w") as f:
        ds = f.create_dataset("exported_data", data=p)
        ds.attrs["axistags"] = axistags_json("yxc")
    data, axes = load_probabilities(h5)
    assert axes == "yxc" and data.dtype == np.float32 and np.array_equal(data, p)
    # a drange attribute rescales like ilastik's threshold applet
    with h5py.File(tmp_path / "scaled.h5", "w") as f:
        ds = f.create_dataset("exported_data", data=p * 255)
        ds.attrs["axistags"] = axistags_json("yxc")
        ds.attrs["drange"] = np.array([0.0, 255.0])
    scaled, _ = load_probabilities(tmp_path / "scaled.h5")
    np.testing.assert_allclose(scaled, p, atol=1e-6)
    png = tmp_path / "p.png"
    u8 = (p[..., 1] * 255).astype(np.uint8)
    write_image(png, u8, "yx")
    from_png, axes = load_probabilities(png)
    assert axes == "yxc"
    np.testing.assert_allclose(from_png[..., 0], u8 / 255.0, atol=1e-7)
    write_image(tmp_path / "p.tif", p, "yxc")
    from_tif, _ = load_probabilities(tmp_path / "p.tif")
    np.testing.assert_array_equal(from_tif, p)


# --------------------------------------------------------------------------- smoothing
def _mirror(i: int, n: int) -> int:
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def test_smoothing_sigma_1_window_2_against_hand_built_kernel():
    taps = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
    taps /= taps.sum()  # radius floor(2*1 + 0.5) = 2: five taps
    np.testing.assert_allclose(gaussian_kernel(1.0), taps, rtol=1e-12)
    assert gaussian_kernel(0.7).size == 3 and gaussian_kernel(1.6).size == 7
    rng = np.random.default_rng(1)
    img = rng.random((7, 9)).astype(np.float32)
    expected = np.zeros((7, 9))
    for y in range(7):
        for x in range(9):
            expected[y, x] = sum(
                taps[dy + 2] * taps[dx + 2] * img[_mirror(y + dy, 7), _mirror(x + dx, 9)]
                for dy in range(-2, 3) for dx in range(-2, 3))
    out = smooth(img, (1.0, 1.0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=2e-7)
    # thresholding uses exactly this smoothed map
    p = np.zeros((30, 30), np.float32)
    p[10:14, 8:20] = 0.8
    p[20, 20] = 1.0
    labels = threshold_objects(p, threshold=0.3, min_size=1)
    np.testing.assert_array_equal(labels > 0, smooth(p, 1.0) >= np.float32(0.3))


def test_smoothing_skipped_when_any_sigma_below_0_1():
    p = _blank((10, 10))
    p[4, 4] = 1.0
    np.testing.assert_array_equal(smooth(p, (1.0, 0.09)), p)
    assert threshold_objects(p, sigma=(0.05, 2.0), min_size=1).max() == 1
    with pytest.warns(UserWarning, match="no objects"):  # 0.16 after smoothing
        assert threshold_objects(p, sigma=(1.0, 1.0), min_size=1).max() == 0


# --------------------------------------------------------------------------- hysteresis
def test_hysteresis_keeps_objects_with_a_core():
    p = _blank((20, 30))
    p[2:8, 2:8] = 0.6
    p[4:7, 4:7] = 0.95  # core of 9 px
    p[12:18, 12:18] = 0.6  # no core
    p[2:8, 20:26] = 0.6
    p[3, 21] = 0.95  # core of 1 px: removed by the size filter on cores
    labels = threshold_objects(p, method="hysteresis", sigma=0.0, min_size=5)
    assert labels.max() == 1 and np.all(labels[2:8, 2:8] == 1)
    assert labels[15, 15] == 0 and labels[4, 22] == 0
    # simple keeps all three
    assert threshold_objects(p, sigma=0.0, min_size=5).max() == 3


def test_hysteresis_with_another_core_channel_sums_channels():
    p = np.zeros((16, 16, 2), np.float32)
    p[2:8, 2:8, 0] = 0.3
    p[2:8, 2:8, 1] = 0.3
    p[4:6, 4:6, 1] = 0.9  # core in channel 1
    labels = threshold_objects(p, method="hysteresis", channel=0, core_channel=1, sigma=0.0, min_size=1)
    # final mask = p0 + p1 >= 0.5: the whole 6x6 square
    assert labels.max() == 1 and (labels == 1).sum() == 36
    same = threshold_objects(p, method="hysteresis", channel=1, core_channel=1, sigma=0.0, min_size=1)
    assert (same == 1).sum() == 4  # p1 alone is >= 0.5 only in the core


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"channel": 2}, "channel 2 is out of range"),
    ({"channel": -1}, "out of range"),
    ({"method": "hysteresis", "core_channel": 5}, "core_channel 5"),
    ({"threshold": 1.5}, r"threshold 1.5 must lie in \[0, 1\]"),
    ({"threshold": -0.1}, "must lie in"),
    ({"threshold": float("nan")}, "must lie in"),
    ({"high_threshold": 2.0}, "high_threshold"),
    ({"min_size": 20, "max_size": 10}, "min_size \\(20\\) is larger than max_size \\(10\\)"),
    ({"method": "graphcut"}, "method"),
    ({"sigma": (1.0, 1.0, 1.0, 1.0)}, "sigma"),
])
def test_bad_parameters(kwargs, match):
    p = np.zeros((8, 8, 2), np.float32)
    with pytest.raises(InputError, match=match):
        threshold_objects(p, **kwargs)


def test_no_objects_is_valid_with_a_warning():
    with pytest.warns(UserWarning, match="no objects"):
        labels = threshold_objects(np.zeros((10, 10), np.float32))
    assert labels.shape == (10, 10) and labels.dtype == np.uint32 and labels.max() == 0


def test_more_than_65535_objects_get_uint32_ids():
    p = np.zeros((600, 600), np.float32)
    p[::2, ::2] = 1.0  # 300 x 300 isolated pixels
    labels = threshold_objects(p, sigma=0.0, min_size=1)
    assert labels.dtype == np.uint32 and labels.max() == 90_000
    assert labels[0, 0] == 1 and labels[0, 2] == 2 and labels[2, 0] == 301 and labels[598, 598] == 90_000
    assert np.unique(labels).size == 90_001


def test_unreadable_probability_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="bad.h5"):
        load_probabilities(bad)
    ints = tmp_path / "ints.npy"
    np.save(ints, np.zeros((4, 4), np.int32))
    with pytest.raises(InputError, match="no known range"):
        load_probabilities(ints)
