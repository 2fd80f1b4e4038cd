"""A pixel classifier from an ilastik project: the one way from a ``.ilp`` to a fitted model.

:func:`classifier_from_project` returns a :class:`pyquint.pixel.PixelClassifier` holding
either the project's stored vigra forest (evaluated exactly) or a forest retrained from the
project's labels, with the project's feature selection and class names/colours. The ilastik
headless mode (:class:`pyquint.ilastik.ProjectPredictor`), ``pyquint large predict`` with a
``.ilp`` and steinbock's ``classify ilastik run`` (:mod:`pyquint.steinbock.run`) all build
their classifier here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..features import FeatureSelection
from ..frames import frame_pairs
from ..pixel import PixelClassifier, default_class_colors, default_class_names
from .project import IlastikProject, read_project

__all__ = ["STORED_FOREST", "classifier_from_project", "default_rounding", "uses_stored_forest"]

#: ``training_info_["source"]`` of a classifier that evaluates a project's stored forest.
STORED_FOREST = "stored vigra forest of an ilastik project"
# rounding of the feature filters used by default for projects of ilastik >= 1.4: "fast"
# agrees with "exact" (bit-identical to ilastik's fastfilters) on 99.9998 % of pc.ilp's
# Simple Segmentation (3 of 1,376,256 pixels differ), so the faster path is the default.
_FAST_SINCE = (1, 4)


def default_rounding(project: IlastikProject) -> str:
    """Feature arithmetic matching the ilastik build that trained ``project``.

    ``"fast"`` (within 1e-5 of fastfilters' FMA arithmetic) for ilastik ≥ 1.4,
    ``"muladd"`` (plain float32 multiply-add, as the 1.3-era builds) before that.
    """
    return "fast" if project.version_tuple[:2] >= _FAST_SINCE else "muladd"


def as_project(project: Any) -> IlastikProject:
    """``project`` itself, or the project read (read-only) from a path."""
    return project if isinstance(project, IlastikProject) else read_project(project)


def uses_stored_forest(project: IlastikProject, retrain: bool = False,
                       selection: FeatureSelection | None = None) -> bool:
    """Whether :func:`classifier_from_project` evaluates the stored forest (else it retrains):
    the project has one, ``retrain`` is off and a feature selection is known."""
    known = selection is not None or project.feature_selection() is not None
    return project.has_forest and not retrain and known


def classifier_from_project(
    project: Any,
    *,
    retrain: bool = False,
    selection: FeatureSelection | None = None,
    default_selection: FeatureSelection | None = None,
    rounding: str | None = None,
    n_trees: int = 100,
    seed: int | None = None,
    n_jobs: int | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
) -> PixelClassifier:
    """The pixel classifier of an ilastik project.

    Parameters
    ----------
    project : IlastikProject or path
    retrain : bool
        Train a pyquint forest on the project's labels (every labelled frame of every lane,
        project-internal data included) even when a stored forest exists. Projects without
        a stored forest are always retrained, as ilastik does.
    selection : FeatureSelection, optional
        Override the project's feature selection.
    default_selection : FeatureSelection, optional
        Used (with retraining) when neither ``selection`` nor the project selects features,
        e.g. steinbock's template project; without it such a project is refused.
    rounding : {"exact", "muladd", "fast", "vigra"}, optional
        Feature arithmetic (:data:`pyquint.features.ROUNDINGS`); default :func:`default_rounding`.
    n_trees, seed : int
        Forest size and seed when retraining (ilastik: 100 trees, unseeded).
    n_jobs : int, optional
        Threads for features and forest.
    search_dirs : sequence of paths
        Folders to look in for lane images that moved (retraining only).

    Returns
    -------
    PixelClassifier
        Fitted; ``training_info_["source"]`` is :data:`STORED_FOREST` for a stored forest.

    Raises
    ------
    InputError
        No pixel classification part, no features, no labels to retrain from, or a stored
        forest that does not fit the feature selection.
    """
    project = as_project(project)
    if project.kind == "object" and not (project.has_forest or project.has_labels):
        raise InputError(
            f"{project.path}: this {project.workflow!r} project has no pixel classification part"
        )
    stored = uses_stored_forest(project, retrain, selection)
    selection = selection if selection is not None else project.feature_selection()
    if selection is None:
        if default_selection is None:
            raise InputError(
                f"{project.path}: the project selects no features (FeatureSelections is empty); "
                "select features in ilastik or pass a selection"
            )
        selection = default_selection
    rounding = rounding or default_rounding(project)
    names = list(project.label_names) or None
    colors = (project.label_colors.tolist() if project.label_colors is not None
              and names and len(project.label_colors) == len(names) else None)
    if stored:
        forest = project.forest()
        n_classes = max(len(names or ()), int(forest.classes.max()))
        names = names or default_class_names(n_classes)
        ndim, n_in = _input_kind(project, selection, forest.n_features)
        return PixelClassifier.from_forest(
            forest, features=selection, ndim=ndim, n_input_channels=n_in, class_names=names,
            class_colors=colors or default_class_colors(n_classes), rounding=rounding,
            n_jobs=n_jobs, training_info={"source": STORED_FOREST})
    if not project.has_labels:
        why = "no trained classifier and " if not project.has_forest else ""
        raise InputError(f"{project.path}: the project has {why}no labels to train from")
    # ilastik never filters across t: each labelled frame is one training image
    pairs = [(frame, lab) for image, axes, labels in project.training_data(tuple(search_dirs))
             for _, frame, lab in frame_pairs(image, axes, labels)]
    top = max((int(lab.max()) for _, lab in pairs), default=0)
    if names is not None and len(names) < top:  # labels beyond the named classes
        names += default_class_names(top)[len(names):]
        colors = None
    clf = PixelClassifier(features=selection, n_trees=n_trees, seed=seed, class_names=names,
                          class_colors=colors, n_jobs=n_jobs, rounding=rounding)
    return clf.fit([image for image, _ in pairs], [labels for _, labels in pairs])


def _input_kind(project: IlastikProject, selection: FeatureSelection,
                n_features: int) -> tuple[int, int]:
    """(spatial ndim, input channels) the stored forest was trained on."""
    shape = project.lane_shape(0) if project.lanes else None
    if shape is not None:
        axes = project.lanes[0].canonical_axes
        ndim, n_in = len(axes.replace("t", "")) - 1, shape[-1]
        if selection.n_channels(n_in, ndim) != n_features:
            raise InputError(
                f"{project.path}: the stored forest uses {n_features} features but the feature "
                f"selection gives {selection.n_channels(n_in, ndim)} for {n_in}-channel "
                f"{ndim}-D data; retrain (--retrain) or fix the project"
            )
        return ndim, n_in
    for ndim in (2, 3):
        per_channel = selection.n_channels(1, ndim)
        if n_features % per_channel == 0:
            return ndim, n_features // per_channel
    raise InputError(
        f"{project.path}: the stored forest uses {n_features} features, which no number of "
        "input channels gives with the project's feature selection"
    )
