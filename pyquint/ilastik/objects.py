"""Object Classification projects headless: threshold settings, selected object features,
object labels and the object forest of an ``.ilp``, run like
``run_ilastik.sh --headless --project=oc.ilp --raw_data=… --prediction_maps=…``.

The objects come from :func:`pyquint.objects.threshold_objects` with the project's
``ThresholdTwoLevels`` settings (ids 1..n in scan order), their features from
:func:`pyquint.objects.compute_object_features` with the project's ``SelectedFeatures``; the
classifier is the project's stored object forest (when its feature count matches) or one
retrained from the project's object labels (``LabelInputs``) on the objects of its own lanes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import guard_outputs
from ..errors import InputError
from ..io import read_image, split_h5_path, to_canonical
from ..objects import threshold_objects
from ..objects.classifier import ObjectClassifier, proba_to_classes
from ..objects.export import (
    OBJECT_EXPORT_SOURCES,
    export_path,
    nickname,
    object_images,
    table_path,
    write_frames_table,
)
from ..objects.features import FEATURES, compute_object_features, resolve_features
from ..objects.frames import image_frames, probability_frames, write_frame_images
from .headless import ProjectPredictor
from .project import IlastikProject, _text, open_readonly, read_project
from .vigra_forest import read_forests

__all__ = ["ObjectSettings", "object_settings", "predict_object_project"]

_METHODS = {0: "simple", 1: "hysteresis"}
_UNSUPPORTED = {2: "Graph-Cut", 3: "IPHT (identity-preserving hysteresis)"}


@dataclass
class ObjectSettings:
    """What an Object Classification project says about objects.

    Attributes
    ----------
    threshold : dict
        Keyword arguments of :func:`pyquint.objects.threshold_objects`.
    features : list of str
        Selected object features (pyquint/vigra ids), in ilastik's column order.
    class_names : list of str
    labels : dict
        ``(lane, t) → {object id: class}`` from ``ObjectClassification/LabelInputs``.
    has_forest : bool
        Whether ``ObjectClassification/ClassifierForests`` holds a trained forest.
    missing : list of str
        Selected features pyquint does not compute (e.g. the "in neighborhood" variants):
        a stored forest then cannot be evaluated, and retraining leaves them out.
    """

    threshold: dict[str, Any]
    features: list[str]
    class_names: list[str]
    labels: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)
    has_forest: bool = False
    missing: list[str] = field(default_factory=list)


def _threshold_kwargs(settings: dict[str, Any], source: object) -> dict[str, Any]:
    method = int(settings.get("CurOperator", 0))
    if method not in _METHODS:  # ilastik's ThresholdMethod: 2 = GRAPHCUT, 3 = IPHT
        name = _UNSUPPORTED.get(method, f"number {method}")
        raise InputError(f"{source}: the project thresholds with the {name} method, which pyquint "
                         "does not run; switch it to Simple or Hysteresis in ilastik")
    sigma = settings.get("SmootherSigma") or {}
    sig = tuple(float(sigma[a]) for a in ("y", "x") if a in sigma) or (1.0, 1.0)
    return {
        "method": _METHODS[method],
        "channel": int(settings.get("Channel", 0)),
        "core_channel": int(settings.get("CoreChannel", 0)),
        "threshold": float(settings.get("LowThreshold", 0.5)),
        "high_threshold": float(settings.get("HighThreshold", 0.8)),
        "min_size": int(settings.get("MinSize", 10)),
        "max_size": int(settings.get("MaxSize", 1_000_000)),
        "sigma": sig,
    }


def object_settings(project: IlastikProject) -> ObjectSettings:
    """Read threshold settings, selected features, class names and object labels."""
    if project.kind != "object":
        raise InputError(f"{project.path}: not an Object Classification project ({project.workflow!r})")
    with open_readonly(project.path) as f:
        oc = f.get("ObjectClassification")
        if oc is None:
            raise InputError(f"{project.path}: no ObjectClassification group")
        selected: list[str] = []
        unknown: list[str] = []
        if "SelectedFeatures" in oc:
            for plugin in sorted(oc["SelectedFeatures"]):
                for name in sorted(oc["SelectedFeatures"][plugin]):
                    (selected if name in FEATURES else unknown).append(name)
        if not selected:
            raise InputError(f"{project.path}: the project selects no object features")
        names = ([_text(v) for v in np.atleast_1d(oc["LabelNames"][()])]
                 if "LabelNames" in oc else [])
        labels: dict[tuple[int, int], dict[int, int]] = {}
        for lane_key in sorted(oc.get("LabelInputs", {})):
            for t_key in sorted(oc["LabelInputs"][lane_key]):
                values = np.asarray(oc["LabelInputs"][lane_key][t_key][()]).ravel()
                ids = np.nonzero(values[1:] > 0)[0] + 1  # index 0 is the background
                if ids.size:
                    labels[(int(lane_key), int(t_key))] = {int(i): int(values[i]) for i in ids}
        forests = oc.get("ClassifierForests")
        has_forest = forests is not None and any(k.startswith("Forest") for k in forests)
    top = max((c for m in labels.values() for c in m.values()), default=0)
    names = names or [f"Label {k + 1}" for k in range(top)]
    return ObjectSettings(
        threshold=_threshold_kwargs(project.threshold_settings, project.path),
        features=resolve_features(selected), class_names=names, labels=labels,
        has_forest=has_forest, missing=unknown,
    )


def _read_raw(path: Any, axes: str | None = None) -> tuple[list[np.ndarray], bool]:
    """A raw image's frames (canonical, single channel squeezed) and whether it has ``t``."""
    return image_frames(*read_image(path, axes))


def _objects(source: Any, settings: ObjectSettings) -> list[np.ndarray]:
    """Objects of a probability map, frame by frame (ids restart at 1 in every time point):
    a file, or ``(probabilities, axes)`` computed here."""
    frames, axes = probability_frames(source)
    return [threshold_objects(p, axes=axes, **settings.threshold) for p in frames]


def _pixel_probabilities(project: IlastikProject, raw_data: Any, raw_axes: str, cache: dict,
                         seed: int | None = None):
    """``(Probabilities, axes)`` of a raw image from the project's own Pixel Classification part
    (Pixel + Object Classification projects), its predictor fitted once."""
    if "predictor" not in cache:
        if not (project.has_forest or project.has_labels):
            raise InputError(f"{project.path}: no prediction maps given and the project has no "
                             "pixel classification part to compute them; pass --prediction_maps")
        cache["predictor"] = ProjectPredictor(project, seed=seed).fit()
    canon, axes = to_canonical(raw_data, raw_axes)
    return cache["predictor"].predict_proba(canon, axes), axes


def _stored_classifier(project: IlastikProject, settings: ObjectSettings, n_channels: int):
    """The project's object forest in an ObjectClassifier (its input columns are checked
    against the selected features when the first image's features are known)."""
    with open_readonly(project.path) as f:
        forest = read_forests(f["ObjectClassification/ClassifierForests"], len(settings.class_names),
                              f"{project.path}:/ObjectClassification/ClassifierForests")
    clf = ObjectClassifier(features=settings.features, n_trees=forest.n_trees,
                           class_names=settings.class_names, threshold=settings.threshold)
    clf.forest_, clf.seed_, clf.feature_names_ = forest, 0, list(settings.features)
    clf.n_channels_, clf.ndim_, clf.n_training_objects_ = n_channels, 2, 0
    return clf


def _retrained(project: IlastikProject, settings: ObjectSettings, seed: int | None,
               search_dirs: Sequence[str | os.PathLike], cache: dict):
    if not settings.labels:
        raise InputError(f"{project.path}: no trained object forest and no object labels to train from")
    maps = project.roles.get("Prediction Maps", [])
    raws, objs, labs = [], [], []
    lanes: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for (lane, t), mapping in sorted(settings.labels.items()):
        if lane not in lanes:  # each labelled lane thresholded once, all its frames
            pm = next((m for m in maps if m.index == lane), None)
            raw_data, raw_axes = project.read_lane(lane, tuple(search_dirs))
            if pm is None:  # Pixel + Object Classification: the project's pixel part makes them
                source: Any = _pixel_probabilities(project, raw_data, raw_axes, cache, seed)
            else:
                source = pm.path if pm.internal_path is None else f"{project.path}/{pm.internal_path}"
            lanes[lane] = (image_frames(raw_data, raw_axes)[0], _objects(source, settings))
        frames, objects = lanes[lane]
        if t >= len(objects) or t >= len(frames):
            raise InputError(f"{project.path}: object labels of lane {lane} in time point {t}, but "
                             f"its data has {min(len(frames), len(objects))} time point(s)")
        bad = [i for i in mapping if i > objects[t].max()]
        if bad:
            raise InputError(f"{project.path}: object labels of lane {lane} (t={t}) name objects "
                             f"{bad[:5]} but thresholding its prediction maps gives "
                             f"{int(objects[t].max())}")
        raws.append(frames[t])
        objs.append(objects[t])
        labs.append(mapping)
    clf = ObjectClassifier(features=settings.features, seed=seed, class_names=settings.class_names,
                           threshold=settings.threshold)
    return clf.fit(raws, objs, labs)


def predict_object_project(
    project: Any,
    raw_data: Sequence[str | os.PathLike],
    prediction_maps: Sequence[str | os.PathLike],
    *,
    export_source: str | Sequence[str] = ("Object Predictions",),
    output_format: str = "h5",
    table: bool = False,
    retrain: bool = False,
    seed: int | None = None,
    overwrite: bool = False,
    search_dirs: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Headless Object Classification with a project.

    Parameters
    ----------
    project : IlastikProject or path
    raw_data, prediction_maps : sequences of paths
        One prediction map (the Pixel Classification probabilities) per raw image. Without
        them, a Pixel + Object Classification project computes them with its pixel part.
    export_source : str or sequence
        ``Object Predictions`` (default), ``Object Probabilities``, ``Object Identities``.
    output_format : str
        ``h5``, ``tif`` or ``png``; files go beside each raw image as
        ``{nickname}_{source}.{ext}``.
    table : bool
        Also write ``{nickname}_table.csv`` (ilastik's object table).
    retrain, seed
        Train a forest from the project's object labels (always, when none is stored).
    overwrite : bool
        Existing outputs are skipped unless True.
    search_dirs : sequence of paths
        Where to look for the project's lane images that moved (retraining).

    Returns
    -------
    list of Path
    """
    project = project if isinstance(project, IlastikProject) else read_project(project)
    settings = object_settings(project)
    cache: dict = {}
    if not prediction_maps:
        prediction_maps = [None] * len(raw_data)  # type: ignore[list-item]
    if len(raw_data) != len(prediction_maps):
        raise InputError(f"{len(raw_data)} raw image(s) but {len(prediction_maps)} prediction map(s); "
                         "give one --prediction_maps per --raw_data")
    if not raw_data:
        raise InputError("no images given: pass --raw_data and --prediction_maps")
    sources = [export_source] if isinstance(export_source, str) else list(export_source)
    canonical = {s.lower(): s for s in OBJECT_EXPORT_SOURCES}
    try:
        sources = [canonical[s.lower()] for s in sources] or ["Object Predictions"]
    except KeyError as exc:
        raise InputError(f"unknown object export source {exc}; use {', '.join(OBJECT_EXPORT_SOURCES)}") from None
    plans = []
    for raw in raw_data:
        folder = split_h5_path(raw)[0].parent
        outs = [export_path(folder, nickname(raw), s, output_format) for s in sources]
        plans.append(outs + ([table_path(folder, nickname(raw))] if table else []))
    guard_outputs([*raw_data, *[m for m in prediction_maps if m], project.path],
                  [o for p in plans for o in p])
    clf = None
    written: list[Path] = []
    for raw, pmap, outs in zip(raw_data, prediction_maps, plans):
        if not overwrite and all(o.exists() for o in outs):
            continue
        frames, time = _read_raw(raw)
        if pmap is None:
            source: Any = _pixel_probabilities(project, *read_image(raw), cache, seed)
        else:
            source = pmap
        objects = _objects(source, settings)
        if len(objects) != len(frames) or objects[0].shape != frames[0].shape[: objects[0].ndim]:
            raise InputError(f"{pmap}: prediction map of {len(objects)} frame(s) of shape "
                             f"{objects[0].shape} for a raw image of {len(frames)} frame(s) of "
                             f"shape {frames[0].shape}")
        if clf is None:
            clf = _classifier(project, settings, frames[0], objects[0], retrain, seed, search_dirs,
                              cache)
        per_frame, rows = [], []
        for image, objs in zip(frames, objects):  # every time point on its own, as ilastik
            feats = compute_object_features(image, objs, clf.feature_names_)
            try:
                prob = clf.predict_proba_features(feats) if objs.max() else \
                    np.zeros((0, clf.n_classes), np.float32)
            except InputError as exc:
                raise InputError(f"{project.path}: the stored object forest does not fit the "
                                 f"selected features ({exc}); use --retrain") from None
            classes = proba_to_classes(prob) if len(prob) else np.zeros(0, np.uint8)
            per_frame.append(object_images(objs, classes, prob))
            rows.append((feats, classes, prob, None))
        for s, dst in zip(sources, outs):
            written.extend(write_frame_images(dst, s, [f[s] for f in per_frame], time))
        if table:
            written.append(write_frames_table(outs[-1], rows, clf.class_names))
    return written


def _classifier(project: IlastikProject, settings: ObjectSettings, image: np.ndarray,
                objects: np.ndarray, retrain: bool, seed: int | None,
                search_dirs: Sequence[str | os.PathLike], cache: dict):
    """The stored object forest, or one retrained from the project's object labels."""
    n_channels = 1 if image.ndim == objects.ndim else image.shape[-1]
    stored = settings.has_forest and not retrain
    if settings.missing and stored:
        raise InputError(f"{project.path}: the stored object forest uses features pyquint "
                         f"does not compute ({', '.join(settings.missing)}); use --retrain "
                         "to train on the others")
    if settings.missing:
        warnings.warn(f"{project.path}: retraining without the selected features pyquint "
                      f"does not compute: {', '.join(settings.missing)}", UserWarning,
                      stacklevel=3)
    return (_stored_classifier(project, settings, n_channels) if stored
            else _retrained(project, settings, seed, search_dirs, cache))
