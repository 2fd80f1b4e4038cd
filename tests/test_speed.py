"""The fast paths give the same answers: compiled forest kernels, fused fast features, bands."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from pyquint.errors import InputError
from pyquint.features import FeatureSelection, compute_features
from pyquint.features._compute import feature_bands
from pyquint.forest import FlatForest, _kernels
from pyquint.pixel import PixelClassifier

ALL = FeatureSelection.all()


# ----------------------------------------------------------------------------- thresholds
def _probe_values(t64: np.ndarray) -> np.ndarray:
    """float32 values on and around each float64 threshold (several ulps either side)."""
    with np.errstate(over="ignore"):
        near = t64.astype(np.float32)
    vals = [near]
    up, down = near.copy(), near.copy()
    with np.errstate(over="ignore"):
        for _ in range(3):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            vals += [up, down]
    return np.stack(vals, axis=1)  # (n_thresholds, 7)


def _thresholds() -> np.ndarray:
    rng = np.random.default_rng(0)
    f32 = rng.normal(size=200).astype(np.float32)
    # exactly representable, midpoints of neighbouring float32 (sklearn's thresholds), values
    # between float32 neighbours, huge (beyond float32), tiny and subnormal, zero
    mid = (f32.astype(np.float64) + np.nextafter(f32, np.float32(np.inf)).astype(np.float64)) / 2
    return np.concatenate([
        f32.astype(np.float64), mid, rng.normal(size=200) * 1e3, [0.0, -0.0, 1e-45, -1e-45, 1e-40],
        [3.4e38, 3.5e38, -3.5e38, 1e300, -1e300, np.finfo(np.float32).max.astype(np.float64)],
    ])


@pytest.mark.parametrize("strict", [False, True])
def test_float32_thresholds_take_the_float64_branch(strict):
    t64 = _thresholds()
    T = _kernels.float32_thresholds(t64, strict)
    assert T.dtype == np.float32
    x = _probe_values(t64)
    x = np.concatenate([x, np.full((len(t64), 2), [np.inf, -np.inf], np.float32)], axis=1)
    # numpy compares float32 with float64 exactly (promotion to float64), as sklearn's C does
    goes_left = (x < t64[:, None]) if strict else (x <= t64[:, None])
    assert np.array_equal(x > T[:, None], ~goes_left)


# ----------------------------------------------------------------------------- forest kernels
def _forest_data(n=3000, n_features=9, n_classes=3, noise=0.3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    y = (X[:, 0] * 2 + X[:, 1] ** 2 + noise * rng.normal(size=n)).round().astype(int)
    y = np.clip(y, 0, n_classes - 1) + 1
    return X, y


def _check_equal(rf, X):
    ff = FlatForest.from_sklearn(rf)
    want = rf.predict_proba(X).astype(np.float32)
    for n_jobs in (1, 2, 3):
        assert np.array_equal(ff.predict_proba(X, n_jobs=n_jobs), want)
    return ff


def test_vote_counting_equals_sklearn_average_for_100_pure_trees():
    X, y = _forest_data()
    rf = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(X, y)
    ff = _check_equal(rf, np.random.default_rng(5).normal(size=(1237, 9)).astype(np.float32))
    assert ff._layout()["votes"]  # pure leaves, 3 classes: integer votes
    # deep, unbalanced trees (noisy labels) exercise the walk beyond the shallowest leaf
    assert ff._layout()["depth"].max() > 2 * ff._layout()["sure"].min() + 4


def test_summing_path_equals_sklearn_for_many_classes_and_impure_leaves():
    X, y = _forest_data(n_classes=6, noise=1.0)
    rf = RandomForestClassifier(n_estimators=30, random_state=2, n_jobs=1).fit(X, y)
    ff = _check_equal(rf, X[:999])
    assert not ff._layout()["votes"]  # six classes: float64 sums in tree order
    Xd = np.repeat(X[:40], 3, axis=0)  # duplicate rows with conflicting labels: impure leaves
    yd = np.tile([1, 2, 2], 40)
    rf = RandomForestClassifier(n_estimators=13, random_state=0, n_jobs=1).fit(Xd, yd)
    ff = _check_equal(rf, Xd)
    assert not ff._layout()["votes"]


def test_both_kernels_agree_and_handle_nan_rows_and_odd_sizes(monkeypatch):
    X, y = _forest_data(n_classes=2)
    rf = RandomForestClassifier(n_estimators=25, random_state=4, n_jobs=1).fit(X, y)
    grid = np.random.default_rng(3).normal(size=(7, 301, 9)).astype(np.float32)
    grid[2, 5, 3] = np.nan
    grid[6, 300, 0] = np.nan
    fast = FlatForest.from_sklearn(rf)
    assert fast._layout()["votes"]  # built now, before the patch
    monkeypatch.setattr(_kernels, "MAX_VOTE_CLASSES", 0)  # force the float64 summing kernel
    slow = FlatForest.from_sklearn(rf)
    assert not slow._layout()["votes"]
    a, b = fast.predict_proba(grid), slow.predict_proba(grid)
    assert np.array_equal(a, b)
    assert not a[2, 5].any() and not a[6, 300].any() and a[2, 4].sum() == 1
    ok = ~np.isnan(grid).any(-1)
    want = rf.predict_proba(grid[ok]).astype(np.float32)
    assert np.array_equal(a[ok], want)


def test_layout_keeps_children_side_by_side_and_leaves_self_looping():
    X, y = _forest_data(n=400)
    ff = FlatForest.from_sklearn(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y))
    lay = ff._layout()
    nodes = lay["nodes"]
    thr = nodes.view(np.float32)[:, 2]
    leaf = nodes[:, 1] == np.arange(len(nodes))
    assert leaf.sum() == (ff.left < 0).sum()
    assert np.all(np.isposinf(thr[leaf])) and np.all(np.isfinite(thr[~leaf]))
    # every split's children are the two consecutive nodes after its subtree's start
    children = np.concatenate([nodes[~leaf, 1], nodes[~leaf, 1] + 1])
    assert len(np.unique(children)) == len(children) == 2 * (~leaf).sum()


# ----------------------------------------------------------------------------- fast features
@pytest.mark.parametrize("shape, n_threads", [((5, 5), 1), ((33, 17), 2), ((17, 40), 3),
                                              ((70, 9), 2)])
def test_fast_2d_close_to_exact_at_small_sizes_and_chunk_borders(shape, n_threads):
    sel = FeatureSelection(ALL.matrix[:, :3], ALL.scales[:3])  # σ ≤ 1: images may be tiny
    img = np.random.default_rng(sum(shape)).random(shape).astype(np.float32) * 200
    exact = compute_features(img, sel, axes="yx", rounding="exact")
    fast = compute_features(img, sel, axes="yx", rounding="fast", n_threads=n_threads)
    assert np.allclose(fast, exact, rtol=1e-5, atol=1e-5 * 200)
    # threads (and where chunks start) do not change a bit
    assert np.array_equal(fast, compute_features(img, sel, axes="yx", rounding="fast",
                                                 n_threads=1))


def test_fast_multichannel_and_partial_selection():
    rng = np.random.default_rng(2)
    img = rng.random((50, 61, 3)).astype(np.float32)
    m = ALL.matrix.copy()
    m[1, :] = False  # no Laplacian
    m[4, 3:] = False  # structure tensor only at small scales
    sel = FeatureSelection(m, ALL.scales)
    exact = compute_features(img, sel, axes="yxc", rounding="exact")
    fast = compute_features(img, sel, axes="yxc", rounding="fast")
    assert fast.shape == exact.shape == (50, 61, sel.n_channels(3, 2))
    err = np.abs(fast - exact) / np.maximum(1.0, np.abs(exact))
    assert err.max() < 1e-5


def test_feature_bands_equal_whole_image_features():
    img = np.random.default_rng(1).integers(0, 255, (83, 70)).astype(np.uint8)
    whole = compute_features(img, ALL, axes="yx", rounding="fast")
    bands = feature_bands(img, ALL, axes="yx", n_threads=2)
    got = np.full_like(whole, np.nan)
    seen = []

    def consume(y0, y1, feats):
        seen.append((y0, y1))
        got[y0:y1] = feats

    bands.map(consume, rows=(3, 80), band=7)
    assert np.array_equal(got[3:80], whole[3:80]) and np.isnan(got[:3]).all()
    assert sorted(seen)[0] == (3, 10) and all(b - a <= 7 for a, b in seen)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # bands in worker threads, several chunks
        bands.map(consume, band=5, pool=pool)
    assert np.array_equal(got, whole)


def test_feature_bands_bad_input():
    with pytest.raises(InputError, match="2-D"):
        feature_bands(np.zeros((4, 40, 40)), ALL, axes="zyx")
    bad = np.zeros((40, 40), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        feature_bands(bad, ALL, axes="yx")
    with pytest.raises(InputError, match="too small"):
        feature_bands(np.zeros((20, 20), np.float32), ALL, axes="yx")


# ----------------------------------------------------------------------------- classifier
def test_banded_classifier_equals_whole_image_features_and_forest():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :90]
    image = rng.normal(80, 10, (96, 90))
    image[(yy - 40) ** 2 + (xx - 45) ** 2 < 300] += 90
    image = np.clip(image, 0, 255).astype(np.uint8)
    labels = np.zeros(image.shape, np.uint8)
    labels[5:8, 5:60] = 1
    labels[38:42, 40:50] = 2
    labels[90:93, 10:80] = 1
    clf = PixelClassifier(ALL, n_trees=15, seed=1, n_jobs=2).fit(image, labels)
    feats = compute_features(image, ALL, axes="yx", rounding="fast")
    ref = FlatForest.from_arrays(clf.forest_.to_arrays())
    from pyquint.forest import train_forest

    assert train_forest(feats[labels > 0], labels[labels > 0].astype(np.int64), n_trees=15,
                        seed=1) == clf.forest_
    want = ref.predict_proba(feats, n_classes=2)
    assert np.array_equal(clf.predict_proba(image), want)
    single = PixelClassifier.__new__(PixelClassifier)
    single.__dict__.update(clf.__dict__)
    single.n_jobs = 1
    assert np.array_equal(single.predict_proba(image), want)
