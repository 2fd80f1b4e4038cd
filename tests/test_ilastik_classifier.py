"""classifier_from_project: the stored forest evaluated on the project's features, retraining
on the project's labels, and projects that select no features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.features import FeatureSelection, compute_features
from pyquint.ilastik import classifier_from_project, read_project, write_project
from pyquint.ilastik.classifier import STORED_FOREST, default_rounding, uses_stored_forest
from pyquint.pixel import PixelClassifier

SMALL = FeatureSelection.from_dict({"matrix": [[1, 1], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0]],
                                    "scales": [0.7, 1.6]})


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    image = rng.normal(80, 6, (50, 60)).astype(np.float32)
    image[20:35, 15:45] += 70
    labels = np.zeros(image.shape, np.uint8)
    labels[2:8, 2:50] = 1
    labels[24:30, 20:40] = 2
    return image, labels


def test_stored_forest_is_evaluated_on_the_project_features(forested_ilp: Path) -> None:
    project = read_project(forested_ilp)
    clf = classifier_from_project(project, rounding="exact")
    assert clf.training_info_["source"] == STORED_FOREST and uses_stored_forest(project)
    assert clf.class_names_ == ["Background", "Stain"]
    image, _ = project.read_lane(0)
    image = image.reshape(image.shape[:2])[:90, :120]
    # the reference: the stored forest on whole-image features computed directly
    feats = compute_features(image, project.feature_selection(), axes="yx", rounding="exact")
    expected = project.forest().predict_proba(feats, n_classes=2)
    assert np.array_equal(clf.predict_proba(image), expected)
    assert classifier_from_project(forested_ilp).rounding == default_rounding(project)


def test_retrain_equals_a_classifier_fitted_on_the_project_labels(forested_ilp: Path) -> None:
    project = read_project(forested_ilp)
    assert not uses_stored_forest(project, retrain=True)
    clf = classifier_from_project(project, retrain=True, n_trees=6, seed=2, rounding="exact")
    assert clf.training_info_.get("source") != STORED_FOREST
    ((image, axes, labels),) = project.training_data()
    ref = PixelClassifier(project.feature_selection(), n_trees=6, seed=2, rounding="exact")
    ref.fit(image, labels)
    assert clf.forest_ == ref.forest_ and axes == "yxc"


def test_project_without_features_needs_a_default(tmp_path: Path) -> None:
    image, labels = _scene()
    path = write_project(tmp_path / "nofeat.ilp", [image], [labels], None, axes="yx")
    project = read_project(path)
    assert project.feature_selection() is None and not uses_stored_forest(project)
    with pytest.raises(InputError, match="selects no features"):
        classifier_from_project(project)
    clf = classifier_from_project(project, default_selection=SMALL, n_trees=4, seed=0)
    assert clf.selection_ == SMALL and clf.n_classes_ == 2
    ref = PixelClassifier(SMALL, n_trees=4, seed=0, rounding=clf.rounding).fit(image, labels)
    assert clf.forest_ == ref.forest_
    empty = write_project(tmp_path / "empty.ilp", [image], None, SMALL, axes="yx")
    with pytest.raises(InputError, match="no labels to train from"):
        classifier_from_project(empty)
