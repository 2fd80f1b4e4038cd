"""The compiled vigra-like trainer: train_forest(..., backend="fast")."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.forest import FlatForest, train_forest
from pyquint.forest._fast_train import _grow_tree, _rank_feature


def _ranked(X):
    n, f = X.shape
    ranks = np.empty((f, n), np.uint32)
    uniq = np.zeros((f, n), np.float32)
    XT = np.ascontiguousarray(X.T, dtype=np.float32)
    counts = [_rank_feature(XT[j], ranks[j], uniq[j]) for j in range(f)]
    return ranks, uniq, counts


def _tree(X, y_idx, n_classes, mtry, boot=None, seed=1):
    ranks, uniq, _ = _ranked(X)
    boot = np.arange(X.shape[0]) if boot is None else boot
    feature, threshold, left, right, value = _grow_tree(ranks, uniq, y_idx.astype(np.int32),
                                                        n_classes, boot, mtry, seed)
    return FlatForest(feature, threshold, left, right, value, [0],
                      np.arange(1, n_classes + 1), X.shape[1], "le")


def test_ranks_are_dense_and_order_preserving():
    col = np.array([0.5, -1.0, 0.5, 3.0, -0.0, 0.0, -1.0], np.float32)
    ranks = np.empty(7, np.uint32)
    uniq = np.zeros(7, np.float32)
    k = _rank_feature(col, ranks, uniq)
    expected_uniq = np.unique(col)  # -0.0 == 0.0: one value
    assert k == len(expected_uniq) == 4
    np.testing.assert_array_equal(uniq[:k], expected_uniq)
    np.testing.assert_array_equal(ranks, np.searchsorted(expected_uniq, col))


def test_same_seed_same_forest_regardless_of_threads():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + 1
    a = train_forest(X, y, n_trees=16, seed=3, n_jobs=1, backend="fast")
    b = train_forest(X, y, n_trees=16, seed=3, n_jobs=2, backend="fast")
    c = train_forest(X, y, n_trees=16, seed=4, n_jobs=2, backend="fast")
    assert a == b and a != c
    assert a.split_rule == "le" and a.n_trees == 16 and a.classes.tolist() == [1, 2]


def test_root_split_is_the_exact_best_gini_split():
    # With every feature tried and every row used once, the root must be the brute-force
    # optimum of the weighted Gini impurity, at the midpoint of two consecutive values.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = ((X[:, 2] > 0.3) ^ (rng.random(300) < 0.2)).astype(int)
    tree = _tree(X, y, 2, mtry=5)
    best = (np.inf, None, None)
    for f in range(5):
        vals = np.unique(X[:, f])
        for t in (vals[:-1].astype(np.float64) + vals[1:]) / 2:
            go = X[:, f] <= t
            imp = 0.0
            for side in (go, ~go):
                p = np.bincount(y[side], minlength=2) / side.sum()
                imp += side.sum() * (1 - (p ** 2).sum())
            if imp < best[0] - 1e-9:
                best = (imp, f, t)
    assert tree.feature[0] == best[1]
    assert tree.threshold[0] == pytest.approx(best[2], abs=0)


def test_grown_to_purity_fits_its_training_rows():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    X[:, 3:] = 1.0  # constant features: the trainer must draw others instead
    y = rng.integers(0, 3, 500)  # pure noise: only a full-depth tree fits it
    tree = _tree(X, y, 3, mtry=1)
    leaf = tree.left < 0
    assert np.all(np.sort(tree.value[leaf], axis=1)[:, :-1] == 0)  # every leaf pure
    assert np.array_equal(tree.predict_proba(X).argmax(1), y)  # 100% on the training rows
    assert set(tree.feature[~leaf].tolist()) <= {0, 1, 2}


def test_bootstrap_rows_are_fitted_and_conflicting_duplicates_share_a_leaf():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    X[1] = X[0]
    y[0], y[1] = 0, 1  # identical rows, different classes: no split can separate them
    boot = rng.integers(0, 200, 200)
    boot[:2] = [0, 1]
    tree = _tree(X, y, 2, mtry=2, boot=boot)
    p = tree.predict_proba(X)
    rows = np.unique(boot)
    rows = rows[rows > 1]
    assert np.array_equal(p[rows].argmax(1), y[rows])
    w0, w1 = (boot == 0).sum(), (boot == 1).sum()
    np.testing.assert_allclose(p[0], [w0 / (w0 + w1), w1 / (w0 + w1)], rtol=1e-6)


def test_probabilities_are_multiples_of_one_over_n_trees():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    y = rng.integers(1, 4, 600)
    f = train_forest(X, y, n_trees=40, seed=0, backend="fast")
    p = f.predict_proba(rng.normal(size=(3000, 6)))
    k = p * 40
    assert np.abs(k - np.round(k)).max() < 1e-4
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)


def test_held_out_accuracy_matches_sklearn_backend():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6000, 16)).astype(np.float32)
    score = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * X[:, 3]
    y = np.digitize(score + 0.3 * rng.normal(size=6000), [-0.5, 0.5]) + 1
    tr, te = slice(0, 3000), slice(3000, None)
    acc = {}
    for backend in ("sklearn", "fast"):
        f = train_forest(X[tr], y[tr], n_trees=60, seed=0, backend=backend)
        acc[backend] = (f.predict_proba(X[te]).argmax(1) + 1 == y[te]).mean()
    assert acc["sklearn"] > 0.7  # the problem is learnable, so the comparison means something
    assert abs(acc["fast"] - acc["sklearn"]) <= 0.02, acc


def test_pixel_classifier_on_sections_agrees_with_sklearn(monkeypatch):
    import pyquint.pixel
    from pyquint.data import make_section
    from pyquint.features import FeatureSelection

    s = make_section(7, shape=(192, 224))
    real = pyquint.pixel.train_forest
    preds = {}
    for backend in ("sklearn", "fast"):
        monkeypatch.setattr(pyquint.pixel, "train_forest",
                            functools.partial(real, backend=backend))
        clf = pyquint.pixel.PixelClassifier(FeatureSelection.all(), n_trees=50, seed=0,
                                            rounding="fast").fit(s.image, s.labels)
        preds[backend] = clf.predict(s.image)
    agree = (preds["fast"] == preds["sklearn"]).mean()
    assert agree >= 0.97, agree
    truth_acc = {k: (v == s.truth + 1).mean() for k, v in preds.items()}
    assert truth_acc["fast"] >= truth_acc["sklearn"] - 0.02, truth_acc


def test_backend_errors():
    X = np.zeros((4, 2), np.float32)
    with pytest.raises(InputError, match="backend"):
        train_forest(X, np.array([1, 2, 1, 2]), backend="vigra")
    with pytest.raises(InputError, match="NaN"):
        train_forest(np.full((4, 2), np.nan), np.array([1, 2, 1, 2]), backend="fast")


def test_pixel_classifier_fast_trainer_round_trip(tmp_path):
    """trainer="fast" is recorded in the model file and reloads with the same predictions."""
    from pyquint.data import make_section
    from pyquint.features import FeatureSelection
    from pyquint.pixel import PixelClassifier

    s = make_section(2, (128, 144))
    clf = PixelClassifier(features=FeatureSelection.steinbock(), n_trees=20, seed=4, trainer="fast")
    clf.fit(s.image, s.labels)
    path = clf.save(tmp_path / "m.h5")
    loaded = PixelClassifier.load(path)
    assert loaded.trainer == "fast" and loaded.metadata()["trainer"] == "fast"
    np.testing.assert_array_equal(loaded.predict_proba(s.image), clf.predict_proba(s.image))
    again = PixelClassifier(features=FeatureSelection.steinbock(), n_trees=20, seed=4, trainer="fast")
    np.testing.assert_array_equal(again.fit(s.image, s.labels).predict_proba(s.image),
                                  clf.predict_proba(s.image))
