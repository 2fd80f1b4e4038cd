"""FlatForest: exact equality with scikit-learn, hand-built forests, training, model files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from pyquint.errors import InputError, ModelFileError
from pyquint.forest import FlatForest, load_model, save_model, train_forest


def _datasets():
    rng = np.random.default_rng(42)
    # continuous features
    X = rng.normal(size=(400, 7)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + 1
    yield "continuous", X, y, 3
    # many ties and duplicated rows with conflicting labels -> impure leaves
    X = rng.integers(0, 4, size=(600, 5)).astype(np.float32)
    y = rng.integers(1, 4, size=600)
    yield "ties", X, y, 2
    # three classes with label values that are not 0-based
    X = rng.normal(size=(300, 12)).astype(np.float32) * 1e3
    y = np.choose((X[:, 3] > 0).astype(int) + (X[:, 4] > 500), [2, 5, 9])
    yield "labels 2,5,9", X, y, 4


def _probe_rows(ff: FlatForest, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows whose values sit exactly on and next to split thresholds (float32)."""
    rows = [X, rng.normal(size=(200, X.shape[1])).astype(np.float32) * X.std()]
    split = ff.left >= 0
    feats, thr = ff.feature[split], ff.threshold[split]
    pick = rng.choice(len(thr), size=min(300, len(thr)), replace=False)
    for k in pick:
        base = X[rng.integers(0, len(X), 3)].copy()
        t32 = np.float32(thr[k])
        for value in (t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf))):
            b = base.copy()
            b[:, feats[k]] = value
            rows.append(b)
    return np.concatenate(rows).astype(np.float32)


@pytest.mark.parametrize("kind", ["rf", "extra"])
def test_predict_proba_equals_sklearn_exactly(kind):
    rng = np.random.default_rng(0)
    for name, X, y, seed in _datasets():
        cls = RandomForestClassifier if kind == "rf" else ExtraTreesClassifier
        rf = cls(n_estimators=25, random_state=seed, n_jobs=1).fit(X, y)
        ff = FlatForest.from_sklearn(rf)
        assert ff.n_trees == 25 and ff.split_rule == "le"
        assert ff.classes.tolist() == rf.classes_.tolist()
        Xt = _probe_rows(ff, X, rng)
        # some probe values equal a threshold exactly (compared as float64, as sklearn does)
        split = ff.left >= 0
        if kind == "rf" and name == "ties":  # midpoints of small integers are float32-exact
            assert np.isin(Xt.astype(np.float64), ff.threshold[split]).any()
        expected = rf.predict_proba(Xt).astype(np.float32)
        got = ff.predict_proba(Xt)
        assert got.dtype == np.float32
        assert np.array_equal(got, expected), name
        # several threads give the same numbers
        assert np.array_equal(ff.predict_proba(Xt, n_jobs=1), got)


def test_impure_leaves_are_averaged_like_sklearn():
    X = np.zeros((30, 2), np.float32)  # identical feature vectors, conflicting labels
    y = np.array([1] * 10 + [2] * 20)
    rf = RandomForestClassifier(n_estimators=7, random_state=3, n_jobs=1).fit(X, y)
    ff = FlatForest.from_sklearn(rf)
    p = ff.predict_proba(X[:3])
    assert np.array_equal(p, rf.predict_proba(X[:3]).astype(np.float32))
    assert 0 < p[0, 0] < 1


def _stump_forest(split_rule: str) -> FlatForest:
    # two trees, hand-written: tree 0 splits x0 at 0.5, tree 1 splits x1 at -1 then x0 at 2
    feature = [0, -1, -1, 1, -1, 0, -1, -1]
    threshold = [0.5, 0, 0, -1.0, 0, 2.0, 0, 0]
    left = [1, -1, -1, 4, -1, 6, -1, -1]
    right = [2, -1, -1, 5, -1, 7, -1, -1]
    value = np.array([[0, 0, 0], [1, 0, 0], [0.25, 0.75, 0],
                      [0, 0, 0], [0, 0, 1], [0, 0, 0], [0.5, 0.5, 0], [0, 0.2, 0.8]])
    return FlatForest(feature, threshold, left, right, value, [0, 3], [1, 2, 3], 2, split_rule)


def test_hand_built_forest_le_and_lt():
    X = np.array([[0.5, -1.0], [0.4, 0.0], [3.0, 5.0], [2.0, -2.0]], np.float32)
    le = _stump_forest("le").predict_proba(X)
    lt = _stump_forest("lt").predict_proba(X)
    # row 0: x0 == 0.5, x1 == -1: "le" goes left twice (tree0 -> [1,0,0], tree1 -> [0,0,1]);
    # "lt" goes right (tree0 -> [.25,.75,0], tree1 -> x0=.5 < 2 -> [.5,.5,0])
    np.testing.assert_array_equal(le[0], np.float32([0.5, 0, 0.5]))
    np.testing.assert_array_equal(lt[0], np.float32([(0.25 + 0.5) / 2, (0.75 + 0.5) / 2, 0]))
    # row 2: tree0 right [.25,.75,0]; tree1 right, x0=3 > 2 -> [0,.2,.8]
    np.testing.assert_allclose(le[2], [0.125, 0.475, 0.4], rtol=1e-6)
    # row 3: x0 == 2 at tree1's second split; x1=-2 goes left at its root anyway
    np.testing.assert_array_equal(le[3], lt[3])


def test_n_classes_gives_zero_columns_for_unseen_labels():
    ff = _stump_forest("le")
    X = np.array([[0.0, 0.0]], np.float32)
    full = ff.predict_proba(X, n_classes=5)
    assert full.shape == (1, 5)
    np.testing.assert_array_equal(full[:, :3], ff.predict_proba(X))
    assert not full[:, 3:].any()
    rng = np.random.default_rng(1)
    Xr = rng.normal(size=(200, 3)).astype(np.float32)
    yr = np.where(Xr[:, 0] > 0, 3, 1)  # labels 1 and 3 only
    f = train_forest(Xr, yr, n_trees=10, seed=0)
    p = f.predict_proba(Xr, n_classes=3)
    assert not p[:, 1].any() and np.allclose(p.sum(1), 1)
    with pytest.raises(InputError, match="n_classes"):
        f.predict_proba(Xr, n_classes=2)


def test_any_leading_shape_and_strided_views():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    f = train_forest(X, (X[:, 0] > 0).astype(int) + 1, n_trees=10, seed=0)
    grid = rng.normal(size=(2, 9, 13, 4)).astype(np.float32)
    view = grid[:, 2:7, 3:11]  # not contiguous
    expected = f.predict_proba(np.ascontiguousarray(view).reshape(-1, 4)).reshape(2, 5, 8, 2)
    assert np.array_equal(f.predict_proba(view), expected)
    assert np.array_equal(f.predict_proba(view[0]), expected[0])
    assert f.predict_proba(view[0], n_classes=3).shape == (5, 8, 3)
    assert f.predict_proba(np.zeros((0, 4), np.float32)).shape == (0, 2)


def test_rows_with_nan_get_zero_probabilities():
    ff = _stump_forest("le")
    X = np.array([[np.nan, 0.0], [0.0, 0.0]], np.float32)
    p = ff.predict_proba(X)
    assert not p[0].any() and p[1].sum() == pytest.approx(1)


def test_special_values_follow_float_comparison_in_the_kernels():
    # the kernels turn float32 features into integer keys themselves; every special value must
    # take the branch numpy's float comparison gives, and every NaN pattern must zero its row
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.0, -1.0, 3.4e38, -3.4e38,
                        np.inf, -np.inf], np.float32)
    nan_bits = np.array([0x7FC00000, 0x7F800001, 0x7FFFFFFF, 0xFFC00000, 0xFF800001,
                         0xFFFFFFFF], np.uint32).view(np.float32)
    thresholds = [0.0, -0.0, 1e-45, -1e-45, 1.0, -1.0, 3.0e38, -3.0e38]
    n = len(thresholds)
    # one stump per threshold on feature 0: left leaf class 1, right leaf class 2
    feature = np.ravel([[0, -1, -1]] * n)
    threshold = np.ravel([[t, 0, 0] for t in thresholds])
    left = np.ravel([[3 * i + 1, -1, -1] for i in range(n)])
    right = np.ravel([[3 * i + 2, -1, -1] for i in range(n)])
    value = np.tile([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], (n, 1))
    ff = FlatForest(feature, threshold, left, right, value, 3 * np.arange(n), [1, 2], 2, "le")
    X = np.zeros((len(special) + len(nan_bits), 2), np.float32)
    X[:, 0] = np.concatenate([special, nan_bits])
    X[:, 1] = -0.0
    got = ff.predict_proba(X)
    right_share = (special[:, None].astype(np.float64) > np.array(thresholds)).mean(axis=1)
    np.testing.assert_array_equal(got[: len(special), 1], right_share.astype(np.float32))
    assert not got[len(special):].any()
    # a NaN in another column also zeroes the row
    X[: len(special), 1] = nan_bits[0]
    assert not ff.predict_proba(X).any()


def test_predict_input_errors():
    ff = _stump_forest("le")
    with pytest.raises(InputError, match="length 2"):
        ff.predict_proba(np.zeros((3, 4), np.float32))
    with pytest.raises(InputError, match="numbers"):
        ff.predict_proba(np.zeros((3, 2), complex))


def test_train_forest_is_seeded_and_ilastik_like(monkeypatch):
    import sklearn.ensemble

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 49)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(int) + 1
    a = train_forest(X, y, n_trees=20, seed=11)
    b = train_forest(X, y, n_trees=20, seed=11, n_jobs=2)
    c = train_forest(X, y, n_trees=20, seed=12)
    assert a == b and a != c
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    seen = {}
    real = sklearn.ensemble.RandomForestClassifier

    class Spy(real):
        def fit(self, X, y, sample_weight=None):
            seen.update(self.get_params())
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(sklearn.ensemble, "RandomForestClassifier", Spy)
    train_forest(X, y, n_trees=3, seed=0)
    # vigra: mtry = floor(sqrt(49) + 0.5) = 7; sklearn's "sqrt" would floor
    assert seen["max_features"] == 7 and seen["bootstrap"] and seen["criterion"] == "gini"
    assert seen["max_depth"] is None and seen["min_samples_leaf"] == 1
    train_forest(X[:, :12], y, n_trees=3, seed=0)
    assert seen["max_features"] == 3  # sqrt(12) = 3.46 -> 3
    train_forest(X[:, :7], y, n_trees=3, seed=0)
    assert seen["max_features"] == 3  # sqrt(7) = 2.65 -> 3 (sklearn's "sqrt" gives 2)


def test_probabilities_are_multiples_of_one_over_n_trees():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 6)).astype(np.float32)
    y = rng.integers(1, 4, 500)  # noisy labels, distinct rows -> pure leaves
    f = train_forest(X, y, n_trees=100, seed=0)
    p = f.predict_proba(rng.normal(size=(2000, 6)))
    k = p * 100
    assert np.abs(k - np.round(k)).max() < 1e-4
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    # training rows are classified as labelled (grown to purity, bootstrap aside)
    assert (f.predict_proba(X).argmax(1) + 1 == y).mean() > 0.8


def test_train_forest_errors():
    X = np.zeros((4, 2), np.float32)
    with pytest.raises(InputError, match="labels of shape"):
        train_forest(X, np.array([1, 2]))
    with pytest.raises(InputError, match="NaN"):
        train_forest(np.full((4, 2), np.nan), np.array([1, 2, 1, 2]))
    with pytest.raises(InputError, match="seed"):
        train_forest(X, np.array([1, 2, 1, 2]), seed=-1)
    with pytest.raises(InputError, match="integers"):
        train_forest(X, np.array([1.5, 2, 1, 2]))


# --------------------------------------------------------------------------- validation
def _arrays():
    return _stump_forest("le").to_arrays()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(left=np.array([1, -1, -1, 4, -1, 6, -1, 99])), "one child|out of range"),
        (lambda a: a.update(left=np.array([1, -1, -1, 4, -1, 6, -1, -1]),
                            right=np.array([2, -1, -1, 5, -1, 99, -1, -1])), "out of range"),
        (lambda a: a.update(left=np.array([1, -1, -1, 4, -1, 3, -1, -1])), "disjoint trees"),
        (lambda a: a.update(left=np.array([1, -1, -1, 4, -1, 1, -1, -1])), "disjoint trees"),
        (lambda a: a.update(feature=np.array([5, -1, -1, 1, -1, 0, -1, -1])), "feature outside"),
        (lambda a: a.update(threshold=np.array([np.inf, 0, 0, -1, 0, 2, 0, 0])), "not finite"),
        (lambda a: a["value"].__setitem__((1, 0), -1.0), "negative"),
        (lambda a: a.update(value=np.zeros((8, 2))), "shape"),
        (lambda a: a.update(roots=np.array([0, 9])), "root index"),
        (lambda a: a.update(roots=np.array([0, 0])), "disjoint trees"),
        (lambda a: a.update(split_rule="gt"), "split_rule"),
        (lambda a: a.update(classes=np.array([1, 1, 2])), "distinct"),
        (lambda a: a.update(feature=np.array([0.5] * 8)), "integer"),
    ],
)
def test_flat_forest_validation(change, message):
    arrays = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in _arrays().items()}
    change(arrays)
    with pytest.raises(ModelFileError, match=message):
        FlatForest.from_arrays(arrays)


def test_detached_cycle_is_rejected():
    a = _arrays()
    # nodes 8, 9 point at each other and no root reaches them
    a["feature"] = np.r_[a["feature"], 0, 0]
    a["threshold"] = np.r_[a["threshold"], 0, 0]
    a["left"] = np.r_[a["left"], 9, 8]
    a["right"] = np.r_[a["right"], 9, 8]
    a["value"] = np.r_[a["value"], np.zeros((2, 3))]
    with pytest.raises(ModelFileError, match="disjoint|no tree reaches"):
        FlatForest.from_arrays(a)


# --------------------------------------------------------------------------- model files
def test_model_file_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + 1
    f = train_forest(X, y, n_trees=15, seed=4)
    meta = {"class_names": ["bg", "cell"], "seed": 4, "colours": np.array([[1, 2, 3]])}
    path = save_model(tmp_path / "m.h5", "object", f, meta)
    g, m = load_model(path, expected_kind="object")
    assert g == f
    assert np.array_equal(g.predict_proba(X), f.predict_proba(X))
    assert m["class_names"] == ["bg", "cell"] and m["colours"] == [[1, 2, 3]]
    with h5py.File(path) as h:  # the documented layout, read with plain h5py
        assert h.attrs["format"] == "pyquint-model" and h.attrs["format_version"] == 1
        assert h.attrs["kind"] == "object" and json.loads(h.attrs["metadata"])["seed"] == 4
        assert h["forest/left"].dtype == np.int32 and h["forest/value"].shape == (f.n_nodes, 2)
        assert h["forest"].attrs["split_rule"] == "le"
    with pytest.raises(ModelFileError, match="object model, not a pixel"):
        load_model(path, expected_kind="pixel")
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def _saved(tmp_path, name="m.h5"):
    return save_model(tmp_path / name, "pixel", _stump_forest("lt"), {"a": 1})


def test_model_file_truncated_and_random_bytes(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    for n in (0, 100, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"trunc{n}.h5"
        bad.write_bytes(data[:n])
        with pytest.raises(ModelFileError, match="trunc"):
            load_model(bad)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ModelFileError, match="not a pyquint model"):
        load_model(junk)
    with pytest.raises(ModelFileError, match="no such"):
        load_model(tmp_path / "missing.h5")


def test_model_file_foreign_or_wrong_attributes(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(10)
    with pytest.raises(ModelFileError, match="not a pyquint model file"):
        load_model(foreign)

    def edit(fn, name):
        p = _saved(tmp_path, name)
        with h5py.File(p, "a") as f:
            fn(f)
        return p

    cases = [
        (lambda f: f.attrs.__setitem__("format", "ilastik"), "not a pyquint model file"),
        (lambda f: f.attrs.__setitem__("format_version", 2), "version 2 is not supported.*upgrade"),
        (lambda f: f.attrs.__setitem__("format_version", "1"), "integer"),
        (lambda f: f.attrs.__setitem__("kind", "tracking"), "unknown model kind"),
        (lambda f: f.attrs.__setitem__("metadata", "{not json"), "not valid JSON"),
        (lambda f: f.attrs.__setitem__("metadata", "[1, 2]"), "JSON object"),
        (lambda f: f.__delitem__("forest/roots"), "'forest/roots' is missing"),
        (lambda f: f["forest"].attrs.__setitem__("n_features", 1), "feature outside"),
        (lambda f: f["forest"].attrs.__setitem__("split_rule", "eval('1')"), "split_rule"),
    ]
    for i, (fn, message) in enumerate(cases):
        with pytest.raises(ModelFileError, match=message):
            load_model(edit(fn, f"case{i}.h5"))


def test_model_file_hostile_contents(tmp_path):
    def replace(name, data, fn_name):
        p = _saved(tmp_path, fn_name)
        with h5py.File(p, "a") as f:
            del f[f"forest/{name}"]
            f[f"forest/{name}"] = data
        return p

    # child index out of range
    with pytest.raises(ModelFileError, match="out of range"):
        load_model(replace("left", np.array([1, -1, -1, 4, -1, 60, -1, -1], np.int32), "a.h5"))
    # a cycle back to the root
    with pytest.raises(ModelFileError, match="disjoint trees"):
        load_model(replace("right", np.array([2, -1, -1, 5, -1, 3, -1, -1], np.int32), "b.h5"))
    # strings instead of numbers
    with pytest.raises(ModelFileError, match="unsupported type"):
        load_model(replace("threshold", np.array([b"os.system"] * 8), "c.h5"))
    # a link to data in another file
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(8, np.int32)
    p = _saved(tmp_path, "d.h5")
    with h5py.File(p, "a") as f:
        del f["forest/feature"]
        f["forest/feature"] = h5py.ExternalLink(str(other), "x")
    with pytest.raises(ModelFileError, match="link"):
        load_model(p)


def test_save_model_rejects_bad_kind_and_metadata(tmp_path):
    with pytest.raises(InputError, match="kind"):
        save_model(tmp_path / "m.h5", "segmentation", _stump_forest("le"), {})
    with pytest.raises(InputError, match="JSON"):
        save_model(tmp_path / "m.h5", "pixel", _stump_forest("le"), {"f": object()})
    assert not (tmp_path / "m.h5").exists()
