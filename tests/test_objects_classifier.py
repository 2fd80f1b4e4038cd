"""ObjectClassifier and the object exports (specs/ilastik.md §5, §8 item 12)."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
import tifffile

from pyquint.data import make_section
from pyquint.errors import InputError, ModelFileError
from pyquint.io import parse_axistags
from pyquint.objects import ObjectClassifier, compute_object_features, threshold_objects
from pyquint.objects.classifier import (
    ObjectLabelWarning,
    object_labels_from_image,
    read_object_label_table,
)
from pyquint.objects.export import (
    TABLE_LEADING_COLUMNS,
    export_path,
    nickname,
    object_images,
    write_object_image,
    write_table,
)


def _toy(seed: int = 0):
    """Round blobs (class 1) and thin bars (class 2) of the same intensity."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(200, 3, (80, 80)).astype(np.float32)
    truth = np.zeros((80, 80), np.uint8)
    yy, xx = np.mgrid[0:80, 0:80]
    for cy, cx in [(10, 10), (10, 40), (40, 12), (65, 65), (40, 40)]:
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 1
    for y, x0 in [(25, 50), (55, 5), (75, 20)]:
        truth[y : y + 2, x0 : x0 + 25] = 2
    raw[truth > 0] -= 120
    objects = threshold_objects((truth > 0).astype(np.float32), sigma=0.0)
    return raw, objects, truth


def _truth_per_object(objects, truth):
    n = int(objects.max())
    cell = np.bincount(objects.ravel(), weights=(truth.ravel() == 1), minlength=n + 1)[1:]
    streak = np.bincount(objects.ravel(), weights=(truth.ravel() == 2), minlength=n + 1)[1:]
    return np.where(cell >= streak, 1, 2)


# --------------------------------------------------------------------------- labels
def test_labels_from_clicks_and_conflicts():
    raw, objects, truth = _toy()
    clicks = np.zeros_like(truth)
    clicks[10, 10] = 1  # inside object 1
    clicks[25, 60] = 2  # inside a bar
    clicks[0, 79] = 2  # on the background: ignored
    mapping = object_labels_from_image(objects, clicks)
    assert mapping == {int(objects[10, 10]): 1, int(objects[25, 60]): 2}
    clicks[11, 10] = 2  # a second, different label in object 1
    with pytest.raises(InputError, match=f"object {objects[10, 10]} holds pixels labelled \\[1, 2\\]"):
        object_labels_from_image(objects, clicks)
    with pytest.raises(InputError, match="conflicting"):
        ObjectClassifier(n_trees=5, seed=0).fit(raw, objects, clicks)


def test_painted_strokes_of_two_classes_take_the_majority_with_a_warning():
    raw, objects, truth = _toy()
    strokes = np.zeros_like(truth)
    strokes[8:13, 10] = 1  # a 5-pixel stroke of class 1 in the disc centred at (10, 10)
    strokes[6:8, 10] = 2  # and 2 pixels of class 2 that spill into the same disc
    oid = int(objects[10, 10])
    with pytest.warns(ObjectLabelWarning, match=rf"object {oid} at \(y 10, x 10\) holds labelled pixels "
                      r"of classes \[1, 2\] \(class 1: 5 px, class 2: 2 px\): taken as class 1"):
        mapping = object_labels_from_image(objects, strokes)
    assert mapping == {oid: 1}
    # the classifier trains on the majority class instead of stopping
    strokes[25, 55:60] = 2
    with pytest.warns(ObjectLabelWarning):
        clf = ObjectClassifier(n_trees=5, seed=0).fit(raw, objects, strokes)
    assert clf.n_training_objects_ == 2


def test_csv_labels_by_id_and_class_name(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("labelimage_oid,User Label\n1,label\n2,0\n3,artefact\n4,2\n")
    assert read_object_label_table(path) == {1: "label", 3: "artefact", 4: 2}
    raw, objects, truth = _toy()
    clf = ObjectClassifier(n_trees=10, seed=0).fit(raw, objects, path)
    assert clf.n_training_objects_ == 3
    (tmp_path / "bad.csv").write_text("id,class\n1,nucleus\n")
    with pytest.raises(InputError, match="unknown class 'nucleus'"):
        ObjectClassifier(n_trees=5).fit(raw, objects, tmp_path / "bad.csv")
    with pytest.raises(InputError, match="object id 99 does not exist"):
        ObjectClassifier(n_trees=5).fit(raw, objects, {99: 1})
    with pytest.raises(InputError, match="no labelled objects"):
        ObjectClassifier(n_trees=5).fit(raw, objects, np.zeros_like(truth))


# --------------------------------------------------------------------------- classifier
def test_fit_predict_save_load_is_deterministic(tmp_path):
    raw, objects, truth = _toy()
    tc = _truth_per_object(objects, truth)
    labels = {1: int(tc[0]), int(np.flatnonzero(tc == 2)[0]) + 1: 2, 5: int(tc[4])}
    clf = ObjectClassifier(seed=42).fit(raw, objects, labels)
    proba = clf.predict_proba(raw, objects)
    assert proba.shape == (objects.max(), 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(proba * 100, np.round(proba * 100), atol=1e-4)  # 100 pure trees
    pred = clf.predict(raw, objects)
    np.testing.assert_array_equal(pred, np.argmax(proba, axis=1) + 1)
    np.testing.assert_allclose(clf.uncertainty(raw, objects), 1 - np.abs(proba[:, 0] - proba[:, 1]), atol=1e-6)
    again = ObjectClassifier(seed=42).fit(raw, objects, labels).predict_proba(raw, objects)
    np.testing.assert_array_equal(proba, again)
    clf.save(tmp_path / "m.h5")
    loaded = ObjectClassifier.load(tmp_path / "m.h5")
    np.testing.assert_array_equal(loaded.predict_proba(raw, objects), proba)
    assert loaded.class_names == ("label", "artefact") and loaded.feature_names_ == clf.feature_names_
    with h5py.File(tmp_path / "m.h5") as f:
        assert f.attrs["kind"] == "object"


def test_load_rejects_other_models(tmp_path):
    from pyquint.forest import save_model, train_forest

    forest = train_forest(np.random.default_rng(0).random((10, 3)), np.array([1, 2] * 5), n_trees=3, seed=0)
    save_model(tmp_path / "pixel.h5", "pixel", forest, {})
    with pytest.raises(ModelFileError, match="pixel model, not a object model"):
        ObjectClassifier.load(tmp_path / "pixel.h5")
    save_model(tmp_path / "object.h5", "object", forest, {"features": ["Count"]})
    with pytest.raises(ModelFileError, match="incomplete object-model metadata"):
        ObjectClassifier.load(tmp_path / "object.h5")


def test_keeps_cells_drops_streaks_on_synthetic_sections():
    """QUINT's second approach on pyquint.data sections: the object classifier trained on the
    clicked objects of 2 sections sorts cells from streaks on 4 held-out sections, where
    thresholding pixel probabilities alone keeps every streak."""
    sections = [make_section(seed) for seed in range(6)]
    try:
        from pyquint.features import FeatureSelection
        from pyquint.pixel import PixelClassifier
    except ImportError:  # pragma: no cover - while pyquint.pixel is missing
        probas = [np.clip((190.0 - s.image.astype(np.float32)) / 80.0, 0, 1) for s in sections]
        channel = 0
    else:
        pixel = PixelClassifier(features=FeatureSelection.steinbock(), n_trees=20, seed=0)
        pixel.fit([sections[0].image], [sections[0].labels])
        probas = [pixel.predict_proba(s.image) for s in sections]
        channel = 1  # "Stain"
    objects = [threshold_objects(p, channel=channel) for p in probas]
    clf = ObjectClassifier(seed=0).fit([s.image for s in sections[:2]], objects[:2],
                                       [s.object_labels for s in sections[:2]])
    assert clf.n_training_objects_ <= 20  # "a few labelled objects"
    correct = pixel_only = total = 0
    for s, o in zip(sections[2:], objects[2:]):
        truth = _truth_per_object(o, s.truth)
        correct += int((clf.predict(s.image, o) == truth).sum())
        pixel_only += int((truth == 1).sum())  # pixel classification keeps every object
        total += truth.size
    accuracy, pixel_accuracy = correct / total, pixel_only / total
    print(f"object accuracy {accuracy:.4f}, pixel-only {pixel_accuracy:.4f} over {total} objects")
    assert accuracy >= 0.95
    assert pixel_accuracy < 0.95


# --------------------------------------------------------------------------- exports
def test_object_images_and_files(tmp_path):
    raw, objects, truth = _toy()
    n = int(objects.max())
    classes = (np.arange(n) % 2 + 1).astype(np.uint8)
    proba = np.stack([classes == 1, classes == 2], axis=1).astype(np.float32) * 0.9 + 0.05
    images = object_images(objects, classes, proba)
    pred, prob, ident = images["Object Predictions"], images["Object Probabilities"], images["Object Identities"]
    assert pred.dtype == np.uint8 and prob.dtype == np.float32 and ident.dtype == np.uint32
    assert np.all(pred[objects == 0] == 0) and np.all(prob[objects == 0] == 0)
    for i in range(1, n + 1):
        assert np.all(pred[objects == i] == classes[i - 1])  # constant per object
        np.testing.assert_array_equal(prob[objects == i], np.broadcast_to(proba[i - 1], ((objects == i).sum(), 2)))
    np.testing.assert_array_equal(ident, objects)
    for source, data in images.items():
        path = export_path(tmp_path, "img", source, "h5")
        assert path.name == f"img_{source}.h5"
        write_object_image(path, source, data)
        with h5py.File(path) as f:
            ds = f["exported_data"]
            assert parse_axistags(ds.attrs["axistags"]) == "yxc"
            assert ds.dtype == data.dtype and ds.shape[:2] == objects.shape
            np.testing.assert_array_equal(ds[()].reshape(data.shape), data)
    tif = export_path(tmp_path, "img", "Object Identities", "tif")
    write_object_image(tif, "Object Identities", ident)
    np.testing.assert_array_equal(tifffile.imread(tif), ident)
    with pytest.raises(InputError, match="PNG cannot hold Object Identities"):
        write_object_image(tmp_path / "x.png", "Object Identities", ident)
    assert nickname("a/b/img.ome.tif") == "img.ome" and nickname("d/v.h5/data/raw") == "v-data-raw"


def test_identities_over_65535_objects_round_trip(tmp_path):
    p = np.zeros((600, 600), np.float32)
    p[::2, ::2] = 1.0
    objects = threshold_objects(p, sigma=0.0, min_size=1)
    path = tmp_path / "many_Object Identities.h5"
    write_object_image(path, "Object Identities", object_images(objects)["Object Identities"])
    with h5py.File(path) as f:
        data = f["exported_data"][()]
    assert data.dtype == np.uint32 and data.max() == 90_000 and data[598, 598, 0] == 90_000


def test_table_layout(tmp_path):
    raw, objects, truth = _toy()
    n = int(objects.max())
    feats = compute_object_features(raw, objects, ["Count", "RegionCenter", "Mean"])
    proba = np.full((n, 2), 0.5, np.float32)
    proba[:, 0] = np.linspace(0, 1, n)
    proba[:, 1] = 1 - proba[:, 0]
    pred = (np.argmax(proba, axis=1) + 1).astype(np.uint8)
    path = write_table(tmp_path / "img_table.csv", feats, ("label", "artefact"), pred, proba, {2: 2})
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert tuple(header[:5]) == TABLE_LEADING_COLUMNS
    assert header[5:7] == ["Probability of label", "Probability of artefact"]
    assert header[7:] == ["Size in pixels", "Mean Intensity", "Center of the object_0", "Center of the object_1"]
    assert len(rows) == n + 1
    body = rows[1:]
    assert [r[0] for r in body] == [str(i) for i in range(n)]  # object_id, 0-based
    assert [r[2] for r in body] == [str(i) for i in range(1, n + 1)]  # labelimage_oid
    assert body[1][3] == "artefact" and body[0][3] == "0"
    assert [r[4] for r in body] == [("label", "artefact")[c - 1] for c in pred]
    counts = np.bincount(objects.ravel())[1:]
    assert [int(r[7]) for r in body] == counts.tolist()
    np.testing.assert_allclose([float(r[5]) for r in body], proba[:, 0], rtol=1e-6)
    # the table feeds training back: its User Label column is a valid label table
    assert read_object_label_table(path) == {2: "artefact"}


def test_empty_outputs_when_no_objects(tmp_path):
    raw, objects, truth = _toy()
    clf = ObjectClassifier(n_trees=5, seed=0).fit(raw, objects, {1: 1, 6: 2})
    empty = np.zeros_like(objects)
    proba = clf.predict_proba(raw, empty)
    assert proba.shape == (0, 2)
    images = object_images(empty, clf.predict(raw, empty), proba)
    assert images["Object Probabilities"].shape == (80, 80, 2) and images["Object Predictions"].max() == 0
    path = write_table(tmp_path / "t.csv", clf.compute_features(raw, empty), clf.class_names,
                       clf.predict(raw, empty), proba)
    assert len(path.read_text().splitlines()) == 1
