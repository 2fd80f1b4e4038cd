"""Object features against hand computation (specs/ilastik.md §5, §8 item 11)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pyquint.errors import InputError
from pyquint.objects import FEATURES, column_names, compute_object_features, feature_matrix


@pytest.fixture()
def squares():
    """Object 1: a 4x4 square (rows 2..5, cols 3..6); object 2: a 2x8 rectangle."""
    labels = np.zeros((20, 30), np.uint32)
    labels[2:6, 3:7] = 1
    labels[10:12, 15:23] = 2
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 255, labels.shape).astype(np.uint8)
    return raw, labels


def test_count_center_bbox_intensity_moments(squares):
    raw, labels = squares
    f = compute_object_features(raw, labels, [
        "Count", "RegionCenter", "Coord<Minimum>", "Coord<Maximum>", "Sum", "Mean", "Variance",
        "Skewness", "Kurtosis", "Minimum", "Maximum"])
    np.testing.assert_array_equal(f["Count"][:, 0], [16, 16])
    # RegionCenter in vigra order (x, y): square x = 3..6 -> 4.5, y = 2..5 -> 3.5
    np.testing.assert_allclose(f["RegionCenter"], [[4.5, 3.5], [18.5, 10.5]])
    np.testing.assert_array_equal(f["Coord<Minimum>"], [[3, 2], [15, 10]])
    np.testing.assert_array_equal(f["Coord<Maximum>"], [[7, 6], [23, 12]])  # exclusive
    for i, sl in enumerate([(slice(2, 6), slice(3, 7)), (slice(10, 12), slice(15, 23))]):
        v = raw[sl].astype(np.float64).ravel()
        assert f["Sum"][i, 0] == v.sum()
        assert f["Mean"][i, 0] == pytest.approx(v.mean())
        assert f["Variance"][i, 0] == pytest.approx(v.var(ddof=0))  # population variance
        assert f["Skewness"][i, 0] == pytest.approx(stats.skew(v, bias=True))
        assert f["Kurtosis"][i, 0] == pytest.approx(stats.kurtosis(v, fisher=True, bias=True))  # excess
        assert f["Minimum"][i, 0] == v.min() and f["Maximum"][i, 0] == v.max()


def test_kurtosis_is_excess_on_a_two_value_object():
    labels = np.zeros((4, 4), np.uint8)
    labels[0, :] = 1
    raw = np.zeros((4, 4), np.float32)
    raw[0, :2] = 1.0  # values 1, 1, 0, 0: symmetric two-point distribution
    f = compute_object_features(raw, labels, ["Variance", "Skewness", "Kurtosis"])
    # two equal point masses: m2 = 1/4, m4 = 1/16 -> kurtosis 1, excess -2; skewness 0
    assert f["Variance"][0, 0] == pytest.approx(0.25)
    assert f["Skewness"][0, 0] == pytest.approx(0.0)
    assert f["Kurtosis"][0, 0] == pytest.approx(-2.0)


def test_radii_and_axes_of_a_rectangle(squares):
    raw, labels = squares
    f = compute_object_features(raw, labels, ["RegionRadii", "RegionAxes"])
    # a run of L pixels has coordinate variance (L^2 - 1) / 12
    np.testing.assert_allclose(f["RegionRadii"][1], [np.sqrt(63 / 12), np.sqrt(3 / 12)])
    np.testing.assert_allclose(f["RegionRadii"][0], [np.sqrt(15 / 12)] * 2)
    # first principal axis of the horizontal rectangle is x: column 0 of the (x, y) matrix
    axes = f["RegionAxes"][1].reshape(2, 2)
    np.testing.assert_allclose(np.abs(axes[:, 0]), [1, 0], atol=1e-12)


def test_convexity_square_is_one_l_shape_below_one():
    labels = np.zeros((12, 12), np.uint8)
    labels[1:5, 1:5] = 1  # square
    labels[6:9, 6] = 2  # L: x = 6, y = 6..8 ...
    labels[8, 6:9] = 2  # ... and y = 8, x = 6..8: 5 pixels
    f = compute_object_features(np.ones((12, 12)), labels,
                                ["Convexity", "HullVolume", "DefectCount", "DefectVolumeMean",
                                 "DefectCenter", "InputVolume"])
    assert f["Convexity"][0, 0] == 1.0 and f["DefectCount"][0, 0] == 0
    # hull of the L = triangle (6,6)-(6,8)-(8,8): pixel centres (6,6) (6,7) (7,7) (6,8) (7,8) (8,8)
    assert f["HullVolume"][1, 0] == 6 and f["InputVolume"][1, 0] == 5
    assert f["Convexity"][1, 0] == pytest.approx(5 / 6)
    assert f["DefectCount"][1, 0] == 1 and f["DefectVolumeMean"][1, 0] == 1
    np.testing.assert_allclose(f["DefectCenter"][1], [7, 7])  # x, y of the one defect pixel


def test_shape_features_separate_round_from_thin():
    yy, xx = np.mgrid[0:40, 0:60]
    labels = np.zeros((40, 60), np.uint8)
    labels[(yy - 10) ** 2 + (xx - 10) ** 2 <= 25] = 1  # disk r = 5
    arc = np.abs(np.hypot(yy - 60, xx - 30) - 35) <= 1.0  # thin curved streak
    labels[arc & (yy < 40)] = 2
    f = compute_object_features(np.ones(labels.shape), labels,
                                ["Convexity", "Total Length", "Count", "RegionRadii"])
    assert f["Convexity"][0, 0] > 0.9 > 0.5 > f["Convexity"][1, 0]
    assert f["Total Length"][1, 0] > 5 * f["Total Length"][0, 0]
    line = np.zeros((5, 30), np.uint8)
    line[2, 3:23] = 1
    assert compute_object_features(np.ones(line.shape), line, ["Total Length"])["Total Length"][0, 0] == 19


def _vigra_quantiles(values, gmin, gmax, bins=64):
    """Literal loop version of vigra's RangeHistogramBase::computeStandardQuantiles."""
    if gmin == gmax:
        gmax += bins * np.finfo(float).eps
    scale = bins / (gmax - gmin)
    hist = np.zeros(bins)
    for v in values:
        m = scale * (v - gmin)
        hist[min(int(m), bins - 1)] += 1
    vmin, vmax, count = min(values), max(values), len(values)
    keypoints, cum = [scale * (vmin - gmin)], [0.0]
    total = 0.0
    for k in range(bins):
        if hist[k] > 0:
            if keypoints[-1] <= k:
                keypoints.append(k)
                cum.append(total)
            total += hist[k]
            keypoints.append(k + 1)
            cum.append(total)
    keypoints[-1], cum[-1] = scale * (vmax - gmin), count
    out = [vmin]
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        qc = count * q
        for p in range(len(cum) - 1):
            if cum[p] < qc <= cum[p + 1]:
                t = (qc - cum[p]) / (cum[p + 1] - cum[p]) * (keypoints[p + 1] - keypoints[p])
                out.append((t + keypoints[p]) / scale + gmin)
                break
    return out + [vmax]


def test_quantiles_follow_vigra_histogram_interpolation():
    rng = np.random.default_rng(7)
    labels = np.zeros((30, 30), np.uint32)
    labels[0:10, 0:10] = 1
    labels[12:20, 3:9] = 2
    labels[22:29, 20:30] = 3
    labels[25, 0] = 4  # single pixel
    raw = (rng.gamma(2.0, 20.0, labels.shape)).astype(np.float32)
    raw[labels == 3] = 55.0  # constant object
    f = compute_object_features(raw, labels, ["Quantiles", "Minimum", "Maximum"])["Quantiles"]
    obj = raw[labels > 0].astype(np.float64)
    for i in range(1, 5):
        v = raw[labels == i].astype(np.float64).tolist()
        np.testing.assert_allclose(f[i - 1], _vigra_quantiles(v, obj.min(), obj.max()), rtol=1e-12)
    # median within one histogram bin of the exact median
    bin_width = (obj.max() - obj.min()) / 64
    assert abs(f[0, 3] - np.median(raw[labels == 1])) <= bin_width
    np.testing.assert_allclose(f[2], 55.0)


def test_multichannel_and_column_names(squares):
    raw, labels = squares
    rgb = np.stack([raw, 255 - raw], axis=-1)
    f = compute_object_features(rgb, labels, ["Count", "Mean", "RegionCenter", "Quantiles"])
    np.testing.assert_allclose(f["Mean"][:, 1], 255 - f["Mean"][:, 0])
    cols = column_names(f)
    assert "Size in pixels" in cols and "Mean Intensity_0" in cols and "Mean Intensity_1" in cols
    assert "Center of the object_0" in cols and "Center of the object_1" in cols
    assert "Quantiles of Intensity_13" in cols and "Quantiles of Intensity_14" not in cols
    single = column_names(compute_object_features(raw, labels, ["Mean", "Count"]))
    assert single == ["Size in pixels", "Mean Intensity"]
    assert FEATURES["Coord<Minimum>"].display == "Bounding Box Minimum"
    assert FEATURES["Variance"].display == "Variance of Intensity"


def test_nan_features_become_zero_in_the_matrix():
    labels = np.zeros((6, 6), np.uint8)
    labels[1:4, 1:4] = 1
    f = compute_object_features(np.full((6, 6), 7.0), labels, ["Skewness", "Kurtosis", "Mean"])
    assert np.isnan(f["Skewness"][0, 0]) and np.isnan(f["Kurtosis"][0, 0])
    assert list(f) == ["Kurtosis", "Mean", "Skewness"]  # ilastik: sorted feature names
    X = feature_matrix(f)
    assert X.dtype == np.float32 and X.tolist() == [[0.0, 7.0, 0.0]]


def test_missing_ids_and_3d():
    labels = np.zeros((5, 5), np.uint8)
    labels[0, 0:2] = 1
    labels[3, 3] = 3  # id 2 absent
    f = compute_object_features(np.ones((5, 5)), labels, ["Count", "Mean"])
    np.testing.assert_array_equal(f["Count"][:, 0], [2, 0, 1])
    assert np.isnan(f["Mean"][1, 0])
    vol = np.zeros((4, 5, 6), np.uint16)
    vol[1:3, 1:4, 2:6] = 1
    f3 = compute_object_features(np.ones(vol.shape), vol, ["Count", "RegionCenter", "Coord<Maximum>"])
    assert f3["Count"][0, 0] == 24
    np.testing.assert_allclose(f3["RegionCenter"][0], [3.5, 2.0, 1.5])  # x, y, z
    np.testing.assert_array_equal(f3["Coord<Maximum>"][0], [6, 4, 3])
    with pytest.raises(InputError, match="2-D only"):
        compute_object_features(np.ones(vol.shape), vol, ["Convexity"])


def test_many_objects_and_bad_inputs():
    labels = np.zeros((600, 600), np.uint32)
    labels[::2, ::2] = np.arange(1, 90_001, dtype=np.uint32).reshape(300, 300)
    raw = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    f = compute_object_features(raw, labels, ["Count", "Mean", "RegionCenter"])
    assert f["Count"].shape == (90_000, 1) and np.all(f["Count"] == 1)
    assert f["Mean"][70_000, 0] == raw[labels == 70_001][0]
    np.testing.assert_array_equal(f["RegionCenter"][-1], [598, 598])
    with pytest.raises(InputError, match="does not match the object labels"):
        compute_object_features(np.ones((10, 10)), np.zeros((10, 11), np.uint8))
    with pytest.raises(InputError, match="unknown object feature"):
        compute_object_features(np.ones((4, 4)), np.zeros((4, 4), np.uint8), ["Roundness"])
    with pytest.raises(InputError, match="integers"):
        compute_object_features(np.ones((4, 4)), np.zeros((4, 4), np.float32))
    # display names are accepted as well as ilastik ids
    g = compute_object_features(np.ones((4, 4)), np.ones((4, 4), np.uint8), ["size in pixels"])
    assert list(g) == ["Count"]
