"""PixelClassifier: training, ilastik's result types, model files, bad input, pc.ilp retrain."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from pyquint.errors import InputError, ModelFileError
from pyquint.features import FeatureSelection, compute_features
from pyquint.forest import save_model, train_forest
from pyquint.ilastik import selection_from_ilp
from pyquint.io import read_image
from pyquint.pixel import (
    ILASTIK_LABEL_COLORS,
    PixelClassifier,
    simple_segmentation,
    uncertainty_from_proba,
)

SMALL = FeatureSelection.from_dict(
    {"matrix": [[1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1]],
     "scales": [0.3, 1.0, 1.6]}
)


def _scene(seed=0, shape=(60, 72)):
    """Bright discs on a noisy background, with sparse labels (1 = background, 2 = disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(60, 8, shape)
    discs = np.zeros(shape, bool)
    for cy, cx in [(15, 15), (40, 50), (20, 55), (45, 20)]:
        discs |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
    image[discs] += 80
    labels = np.zeros(shape, np.uint8)
    labels[2:5, 30:40] = 1
    labels[55:58, 30:45] = 1
    labels[14:17, 13:18] = 2
    labels[39:42, 48:53] = 2
    return np.clip(image, 0, 255).astype(np.uint8), labels, discs


@pytest.fixture(scope="module")
def fitted():
    image, labels, discs = _scene()
    clf = PixelClassifier(SMALL, n_trees=20, seed=7).fit(image, labels)
    return clf, image, labels, discs


def test_fit_predict_shapes_and_values(fitted):
    clf, image, labels, discs = fitted
    proba = clf.predict_proba(image)
    assert proba.dtype == np.float32 and proba.shape == image.shape + (2,)
    np.testing.assert_allclose(proba.sum(-1), 1, atol=1e-6)
    k = proba * 20
    assert np.abs(k - np.round(k)).max() < 1e-4  # multiples of 1/n_trees
    seg = clf.predict(image)
    assert seg.dtype == np.uint8 and seg.shape == image.shape
    assert np.array_equal(seg, proba.argmax(-1) + 1)
    assert ((seg == 2) == discs).mean() > 0.95
    unc = clf.uncertainty(image)
    np.testing.assert_allclose(unc, 1 - np.abs(proba[..., 0] - proba[..., 1]), atol=1e-6)
    assert clf.n_classes_ == 2 and clf.classes_.tolist() == [1, 2]
    assert clf.class_names_ == ["Label 1", "Label 2"]
    assert len(clf.feature_names_) == SMALL.n_channels(1, 2) == clf.forest_.n_features
    assert clf.training_info_["n_samples"] == int((labels > 0).sum())


@pytest.mark.parametrize("tile_bytes", [None, 1])
def test_training_samples_are_the_labelled_pixels_of_whole_image_features(monkeypatch, tile_bytes):
    """fit computes features tile by tile where labels are; it must equal whole-image features
    in row-major order (a tiny tile budget forces 64-pixel tiles: 2 tiles across)."""
    if tile_bytes is not None:
        monkeypatch.setattr("pyquint.pixel._TILE_BYTES", tile_bytes)
    image, labels, _ = _scene(1)
    image2, labels2, _ = _scene(2)
    clf = PixelClassifier(SMALL, n_trees=10, seed=3, rounding="exact").fit(
        [image, image2], [labels, labels2[..., None]])
    X, y = [], []
    for im, lab in ((image, labels), (image2, labels2)):
        f = compute_features(im, SMALL, axes="yx", rounding="exact")
        X.append(f[lab > 0])
        y.append(lab[lab > 0])
    ref = train_forest(np.concatenate(X), np.concatenate(y).astype(np.int64), n_trees=10, seed=3,
                       backend=clf.trainer)
    assert clf.forest_ == ref


def test_same_seed_same_model_and_tiles_do_not_matter(fitted):
    clf, image, labels, _ = fitted
    again = PixelClassifier(SMALL, n_trees=20, seed=7).fit(image, labels)
    assert again.forest_ == clf.forest_
    whole = clf.predict_proba(image)
    assert np.array_equal(again.predict_proba(image), whole)
    assert np.array_equal(clf.predict_proba(image, tile_size=17), whole)
    other = PixelClassifier(SMALL, n_trees=20, seed=8).fit(image, labels)
    assert other.forest_ != clf.forest_
    unseeded = PixelClassifier(SMALL, n_trees=5).fit(image, labels)
    assert isinstance(unseeded.seed_, int)
    replay = PixelClassifier(SMALL, n_trees=5, seed=unseeded.seed_).fit(image, labels)
    assert replay.forest_ == unseeded.forest_


def test_simple_segmentation_and_uncertainty_by_hand():
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 0.0], [0.1, 0.6, 0.3]], np.float32)
    assert simple_segmentation(p).tolist() == [1, 3, 1, 2]  # ties -> lower class; zeros -> 1
    np.testing.assert_allclose(uncertainty_from_proba(p), [1.0, 0.8, 1.0, 0.7], atol=1e-6)
    assert uncertainty_from_proba(p).dtype == np.float32
    assert not uncertainty_from_proba(np.ones((3, 4, 1), np.float32)).any()
    with pytest.raises(InputError):
        simple_segmentation(np.zeros((3, 4), np.int32))


def test_class_without_labels_gets_zero_channel():
    image, labels, _ = _scene(3)
    labels[labels == 2] = 3  # classes 1 and 3; class 2 never labelled
    clf = PixelClassifier(SMALL, n_trees=10, seed=0,
                          class_names=["bg", "unused", "disc", "extra"]).fit(image, labels)
    proba = clf.predict_proba(image)
    assert proba.shape[-1] == 4 and clf.n_classes_ == 4
    assert not proba[..., 1].any() and not proba[..., 3].any()
    assert set(np.unique(clf.predict(image))) <= {1, 3}


def test_save_load_round_trip(tmp_path, fitted):
    clf, image, _, _ = fitted
    path = clf.save(tmp_path / "pixel.h5")
    loaded = PixelClassifier.load(path)
    assert loaded.forest_ == clf.forest_ and loaded.features == SMALL
    assert np.array_equal(loaded.predict_proba(image), clf.predict_proba(image))
    assert loaded.class_names_ == clf.class_names_ and loaded.seed_ == 7
    assert loaded.feature_names_ == clf.feature_names_


def test_default_colours_are_a_real_projects(tmp_path, fitted, pc_ilp):
    """Default colours are ilastik's: the same as a real project's LabelColors."""
    loaded = PixelClassifier.load(fitted[0].save(tmp_path / "pixel.h5"))
    with h5py.File(pc_ilp, "r") as f:
        ilp_colors = f["PixelClassification/LabelColors"][()].tolist()
    assert [list(c) for c in loaded.class_colors_] == ilp_colors
    assert ILASTIK_LABEL_COLORS[0] == (255, 225, 25)


def test_custom_names_colours_and_3d(tmp_path):
    rng = np.random.default_rng(4)
    vol = rng.normal(50, 5, (6, 40, 40, 2)).astype(np.float32)
    vol[:, 20:, :, 0] += 40
    lab = np.zeros(vol.shape[:-1], np.uint8)
    lab[:, 5, 5:30] = 1
    lab[:, 30, 5:30] = 2
    sel = FeatureSelection.from_dict({"matrix": [[1], [1], [1], [0], [0], [1]], "scales": [1.0]})
    clf = PixelClassifier(sel, n_trees=8, seed=1, class_names=["a", "b"],
                          class_colors=[(1, 2, 3), (4, 5, 6)]).fit(vol, lab)
    assert clf.ndim_ == 3 and clf.n_input_channels_ == 2
    seg = clf.predict(vol)
    assert seg.shape == vol.shape[:-1] and (seg[:, 25:] == 2).mean() > 0.9
    loaded = PixelClassifier.load(clf.save(tmp_path / "m.h5"))
    assert loaded.class_names_ == ["a", "b"] and loaded.class_colors_ == [(1, 2, 3), (4, 5, 6)]
    assert np.array_equal(loaded.predict(vol), seg)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda im, lab: (im, lab[:-1]), "shape"),
        (lambda im, lab: (im, np.zeros_like(lab)), "no labels"),
        (lambda im, lab: (im, np.where(lab > 0, 2, 0).astype(np.uint8)), "only one class"),
        (lambda im, lab: (im, lab.astype(np.uint16) * 200), "above 255"),
        (lambda im, lab: (np.where(lab == 1, np.nan, im.astype(np.float32)), lab), "NaN"),
        (lambda im, lab: (np.where(lab == 1, np.inf, im.astype(np.float32)), lab), "NaN or infinite"),
        (lambda im, lab: (im.astype(complex), lab), "unsupported pixel type"),
        (lambda im, lab: (im, lab - 0.5), "whole numbers"),
        (lambda im, lab: ([im, im[..., None].repeat(2, -1)], [lab, lab]), "must agree"),
        (lambda im, lab: ([im, im], [lab]), "2 image"),
    ],
)
def test_fit_bad_input(make, message):
    image, labels, _ = _scene()
    im, lab = make(image, labels)
    with pytest.raises(InputError, match=message):
        PixelClassifier(SMALL, n_trees=2, seed=0).fit(im, lab)


def test_fit_bad_class_names_and_colours():
    image, labels, _ = _scene()
    with pytest.raises(InputError, match="only 1 class name"):
        PixelClassifier(SMALL, n_trees=2, class_names=["x"]).fit(image, labels)
    with pytest.raises(InputError, match="colour"):
        PixelClassifier(SMALL, n_trees=2, class_colors=[(1, 2, 3)]).fit(image, labels)
    with pytest.raises(InputError, match="0..255"):
        PixelClassifier(SMALL, n_trees=2, class_colors=[(1, 2, 3), (4, 5, 300)]).fit(image, labels)


def test_predict_bad_input(fitted):
    clf, image, _, _ = fitted
    with pytest.raises(InputError, match="3 channel.*1-channel"):
        clf.predict_proba(np.stack([image] * 3, -1))
    with pytest.raises(InputError, match="3-D.*2-D"):
        clf.predict_proba(image[None, ..., None].repeat(4, 0))
    bad = image.astype(np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        clf.predict(bad)
    with pytest.raises(InputError, match="unsupported pixel type"):
        clf.predict(image.astype(complex))
    with pytest.raises(InputError, match="not trained"):
        PixelClassifier().predict(image)


def test_load_rejects_inconsistent_metadata(tmp_path, fitted):
    clf, _, _, _ = fitted
    meta = clf.metadata()
    meta["n_input_channels"] = 3  # the forest's feature count no longer fits
    save_model(tmp_path / "a.h5", "pixel", clf.forest_, meta)
    with pytest.raises(ModelFileError, match="feature selection gives"):
        PixelClassifier.load(tmp_path / "a.h5")
    meta = clf.metadata()
    del meta["features"]
    save_model(tmp_path / "b.h5", "pixel", clf.forest_, meta)
    with pytest.raises(ModelFileError, match="lacks"):
        PixelClassifier.load(tmp_path / "b.h5")
    meta = clf.metadata()
    meta["features"]["matrix"] = "rm -rf"
    save_model(tmp_path / "c.h5", "pixel", clf.forest_, meta)
    with pytest.raises(ModelFileError, match="invalid metadata"):
        PixelClassifier.load(tmp_path / "c.h5")
    save_model(tmp_path / "d.h5", "object", clf.forest_, clf.metadata())
    with pytest.raises(ModelFileError, match="object model"):
        PixelClassifier.load(tmp_path / "d.h5")


# --------------------------------------------------------------------------- pc.ilp retrain
def _ilp_labels(pc_ilp, shape):
    labels = np.zeros(shape, np.uint8)
    with h5py.File(pc_ilp, "r") as f:
        blocks = f["PixelClassification/LabelSets/labels000"]
        assert len(blocks) == 5
        selection = selection_from_ilp(f["FeatureSelections"])
        for block in blocks.values():
            text = block.attrs["blockSlice"]
            text = text.decode() if isinstance(text, bytes) else text
            (y0, y1), (x0, x1), _ = [tuple(map(int, s.split(":")))
                                     for s in re.findall(r"\d+:\d+", text)]
            data = block[()][..., 0]
            labels[y0:y1, x0:x1][data > 0] = data[data > 0]
    return labels, selection


def test_retrain_from_pc_ilp_labels(pc_ilp, cells_png):
    image, axes = read_image(cells_png)
    assert axes == "yxc"
    labels, selection = _ilp_labels(pc_ilp, image.shape[:2])
    assert set(np.unique(labels)) == {0, 1, 2} and selection.n_channels(1, 2) == 49
    clf = PixelClassifier(selection, n_trees=100, seed=0).fit(image, labels)
    with h5py.File(pc_ilp, "r") as f:
        names = [n.decode() for n in f["PixelClassification/ClassifierForests/feature_names"][()]]
    assert clf.feature_names_ == names
    # only the labelled region (plus the features' reach) is needed: predict a crop around it
    ys, xs = np.nonzero(labels)
    halo = 40
    y0, x0 = max(0, ys.min() - halo), max(0, xs.min() - halo)
    crop = image[y0:ys.max() + 1 + halo, x0:xs.max() + 1 + halo]
    lab = labels[y0:ys.max() + 1 + halo, x0:xs.max() + 1 + halo]
    seg = clf.predict(crop)
    accuracy = (seg[lab > 0] == lab[lab > 0]).mean()
    assert accuracy >= 0.99, accuracy
