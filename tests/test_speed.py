"""The fast paths give the same answers: compiled forest kernels, fused fast features, bands."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from pyquint.errors import InputError
from pyquint.features import FeatureSelection, compute_features
from pyquint.features._compute import feature_bands
from pyquint.forest import FlatForest, _kernels, train_forest
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
    fast = compute_features(img, sel, axes="yx", rounding="fast", n_jobs=n_threads)
    assert np.allclose(fast, exact, rtol=1e-5, atol=1e-5 * 200)
    # threads (and where chunks start) do not change a bit
    assert np.array_equal(fast, compute_features(img, sel, axes="yx", rounding="fast",
                                                 n_jobs=1))


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
    bands = feature_bands(img, ALL, axes="yx", n_jobs=2)
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


    assert train_forest(feats[labels > 0], labels[labels > 0].astype(np.int64), n_trees=15,
                        seed=1, backend=clf.trainer) == clf.forest_
    want = ref.predict_proba(feats, n_classes=2)
    assert np.array_equal(clf.predict_proba(image), want)
    single = PixelClassifier.__new__(PixelClassifier)
    single.__dict__.update(clf.__dict__)
    single.n_jobs = 1
    assert np.array_equal(single.predict_proba(image), want)


# ----------------------------------------------------------------------------- early stopping
def _with_classes(ff: FlatForest, classes: list[int]) -> FlatForest:
    """The same trees with the value columns relabelled (forest class order ≠ column order)."""
    arrays = ff.to_arrays()
    arrays["classes"] = np.asarray(classes)
    return FlatForest.from_arrays(arrays)


def _as_vigra_rule(ff: FlatForest) -> FlatForest:
    arrays = ff.to_arrays()
    arrays["split_rule"] = "lt"
    return FlatForest.from_arrays(arrays)


@pytest.mark.parametrize("n_classes, n_trees", [(2, 100), (2, 10), (3, 31), (4, 8), (6, 12)])
def test_predict_equals_argmax_of_probabilities(n_classes, n_trees):
    X, y = _forest_data(n=2500, n_classes=n_classes, noise=0.8, seed=n_classes)
    rf = RandomForestClassifier(n_estimators=n_trees, random_state=1, n_jobs=1).fit(X, y)
    grid = np.random.default_rng(7).normal(size=(5, 203, 9)).astype(np.float32)
    grid[1, 17, 4] = np.nan
    grid[4, 0, 0] = np.nan
    forests = [FlatForest.from_sklearn(rf)]
    forests.append(_as_vigra_rule(forests[0]))
    # forest classes in another order than the output columns, and a class the forest never saw
    forests.append(_with_classes(forests[0], list(range(n_classes + 1, 1, -1))))
    for ff in forests:
        n_out = n_classes + 1
        proba = ff.predict_proba(grid, n_classes=n_out)
        want = (np.argmax(proba, axis=-1) + 1).astype(np.uint8)
        for n_jobs in (1, 2):
            got = ff.predict(grid, n_classes=n_out, n_jobs=n_jobs)
            assert got.dtype == np.uint8 and np.array_equal(got, want)
        assert got[1, 17] == 1 and got[4, 0] == 1  # NaN rows: all-zero probabilities
        # without n_classes: the winning entry of `classes`
        by_class = ff.predict(grid[2])
        assert np.array_equal(by_class, ff.classes[np.argmax(ff.predict_proba(grid[2]), -1)])
    if n_trees % 2 == 0 and n_classes == 2:  # even forests have exact ties: the lower class wins
        p = forests[0].predict_proba(grid)
        tie = p[..., 0] == p[..., 1]
        assert tie.any() and np.all(forests[0].predict(grid)[tie] == forests[0].classes[0])


def test_predict_matches_on_a_deep_forest_and_1d_2d_inputs():
    X, y = _forest_data(n=6000, n_classes=2, noise=2.0, seed=11)  # noisy: deep, unsure trees
    ff = train_forest(X, y, n_trees=60, seed=3, backend="fast")
    assert ff._layout()["votes"]
    rows = np.random.default_rng(2).normal(size=(4099, 9)).astype(np.float32)
    proba = ff.predict_proba(rows)
    assert 0.05 < ((proba[:, 0] > 0.2) & (proba[:, 0] < 0.8)).mean()  # many undecided pixels
    assert np.array_equal(ff.predict(rows), ff.classes[np.argmax(proba, -1)])
    assert ff.predict(rows[:0]).shape == (0,)
    with pytest.raises(InputError, match="length 9"):
        ff.predict(rows[:, :5])


def test_classifier_segmentation_and_sources_equal_the_probability_path():
    from pyquint.pixel import simple_segmentation, uncertainty_from_proba

    rng = np.random.default_rng(4)
    image = rng.normal(100, 25, (80, 77)).astype(np.float32)
    image[20:40, 30:50] += 60
    labels = np.zeros(image.shape, np.uint8)
    labels[2:6, 2:70] = 1
    labels[25:35, 35:45] = 2
    labels[60:63, 5:50] = 3
    for rounding in ("fast", "exact"):  # banded and whole-tile paths
        clf = PixelClassifier(ALL, n_trees=20, seed=2, rounding=rounding).fit(image, labels)
        proba = clf.predict_proba(image)
        assert np.array_equal(clf.predict(image), simple_segmentation(proba))
        assert np.array_equal(clf.predict(image, tile_size=23), simple_segmentation(proba))
        only = clf.predict_sources(image, ["Simple Segmentation"])
        assert list(only) == ["Simple Segmentation"]
        assert np.array_equal(only["Simple Segmentation"][..., 0], simple_segmentation(proba))
        every = clf.predict_sources(image, ["Uncertainty", "Features", "Simple Segmentation",
                                            "Labels", "Probabilities"])
        assert list(every) == ["Uncertainty", "Features", "Simple Segmentation", "Labels",
                               "Probabilities"]
        assert np.array_equal(every["Probabilities"], proba)
        assert np.array_equal(every["Uncertainty"][..., 0], uncertainty_from_proba(proba))
        assert np.array_equal(every["Features"], clf.transform(image))
        assert every["Labels"].shape == image.shape + (1,) and not every["Labels"].any()
        feats_seg = clf.predict_sources(image, ["Features", "Simple Segmentation"])
        assert np.array_equal(feats_seg["Simple Segmentation"], every["Simple Segmentation"])
    with pytest.raises(InputError, match="unknown export source"):
        clf.predict_sources(image, ["Probabilitys"])
