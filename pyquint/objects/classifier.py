"""ObjectClassifier: ilastik's object classification forest (e.g. cells vs. edge artefacts).

Training data follow ilastik: an object is labelled by a labelled pixel inside it (a click),
or by its id in a mapping / CSV; a feature vector per object (the selected features only,
NaN/inf -> 0), a 100-tree forest with labels 1..N, so probabilities always have N columns;
prediction = 1 + argmax.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelFileError
from ..forest import load_model, save_model, train_forest
from ..pixel import uncertainty_from_proba
from .features import (
    FEATURES,
    column_names,
    compute_object_features,
    feature_matrix,
    resolve_features,
)
from .threshold import check_threshold_settings

__all__ = ["ObjectClassifier", "ObjectLabelWarning", "object_labels_from_image", "read_object_label_table"]

ObjectLabels = np.ndarray | Mapping[int, int | str] | str | os.PathLike
_ID_COLUMNS = ("labelimage_oid", "id", "object")
_CLASS_COLUMNS = ("class", "user label", "label")


class ObjectLabelWarning(UserWarning):
    """Labelled pixels of several classes in one object: the majority class was taken."""


def object_labels_from_image(objects: np.ndarray, label_image: np.ndarray) -> dict[int, int]:
    """Object id -> class from labelled pixels (ilastik: a click inside an object labels it).

    Pixels labelled 0 are unlabelled; labelled pixels on the background are ignored. Users
    paint strokes rather than click, so one thresholded object may hold strokes of two
    classes (e.g. a cell touching edge staining): the class with the most labelled pixels in
    the object wins and an :class:`ObjectLabelWarning` names the object and its position. A
    tie cannot be decided and raises :class:`~pyquint.errors.InputError`.
    """
    objects = np.asarray(objects)
    label_image = np.asarray(label_image)
    if label_image.ndim == objects.ndim + 1 and label_image.shape[-1] == 1:
        label_image = label_image[..., 0]
    if label_image.shape != objects.shape:
        raise InputError(f"object label image of shape {label_image.shape} does not match the "
                         f"objects of shape {objects.shape}")
    if label_image.dtype.kind not in "iub":
        raise InputError(f"object label image must hold integers, not {label_image.dtype}")
    hit = (label_image > 0) & (objects > 0)
    pairs, counts = np.unique(np.stack([objects[hit].astype(np.int64), label_image[hit].astype(np.int64)]),
                              axis=1, return_counts=True)
    mapping: dict[int, int] = {}
    mixed: list[tuple[int, dict[int, int]]] = []
    for oid in np.unique(pairs[0]):
        here = pairs[0] == oid
        votes = {int(c): int(n) for c, n in zip(pairs[1][here], counts[here])}
        best = max(votes.values())
        winners = sorted(c for c, n in votes.items() if n == best)
        if len(winners) > 1:
            raise InputError(
                f"conflicting labels: object {int(oid)} holds pixels labelled {sorted(votes)} "
                f"({_votes_text(votes)}: a tie){_where(objects, int(oid))}; give each object one class"
            )
        mapping[int(oid)] = winners[0]
        if len(votes) > 1:
            mixed.append((int(oid), votes))
    for oid, votes in mixed[:10]:
        warnings.warn(
            f"object {oid}{_where(objects, oid)} holds labelled pixels of classes {sorted(votes)} "
            f"({_votes_text(votes)}): taken as class {mapping[oid]}, the majority",
            ObjectLabelWarning, stacklevel=2)
    if len(mixed) > 10:
        warnings.warn(f"{len(mixed) - 10} more objects hold labelled pixels of several classes",
                      ObjectLabelWarning, stacklevel=2)
    return mapping


def _votes_text(votes: dict[int, int]) -> str:
    return ", ".join(f"class {c}: {n} px" for c, n in sorted(votes.items()))


def _where(objects: np.ndarray, oid: int) -> str:
    """' at (y, x)' (or z, y, x): the object's centre, rounded, so the user can find it."""
    centre = np.rint(np.argwhere(objects == oid).mean(axis=0)).astype(int)
    axes = "zyx"[-objects.ndim:] if objects.ndim <= 3 else None
    if axes is None:
        return f" at {tuple(centre.tolist())}"
    return " at (" + ", ".join(f"{a} {v}" for a, v in zip(axes, centre.tolist())) + ")"


def read_object_label_table(path: str | os.PathLike) -> dict[int, int | str]:
    """Object id -> class from a CSV with columns ``labelimage_oid`` (or ``id``) and ``class``
    (or ``User Label``, as in pyquint's/ilastik's table). Class "0" or empty = unlabelled."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
            id_col = next((fields[c] for c in _ID_COLUMNS if c in fields), None)
            class_col = next((fields[c] for c in _CLASS_COLUMNS if c in fields), None)
            if id_col is None or class_col is None:
                raise InputError(
                    f"{path}: needs an id column ({' or '.join(_ID_COLUMNS)}) and a class "
                    f"column ({' or '.join(_CLASS_COLUMNS)}); found {reader.fieldnames}"
                )
            out: dict[int, int | str] = {}
            for n, row in enumerate(reader, start=2):
                value = (row.get(class_col) or "").strip()
                if value in ("", "0"):
                    continue
                try:
                    oid = int(row[id_col])
                except (TypeError, ValueError):
                    raise InputError(f"{path}, line {n}: object id {row[id_col]!r} is not an integer") from None
                out[oid] = int(value) if value.isdigit() else value
    except OSError as exc:
        raise InputError(f"{path}: cannot read the object label table ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text CSV file ({exc})") from exc
    return out


class ObjectClassifier:
    """Random-forest object classifier, trained from a few labelled objects.

    Parameters
    ----------
    features : sequence of str, optional
        Object features (ilastik ids or display names); default
        :data:`pyquint.objects.features.DEFAULT_FEATURES` (intensity statistics and shape).
    n_trees : int
        Trees of the forest (ilastik: 100).
    seed : int, optional
        Seed of the forest; the same seed and data give the same model.
    class_names : sequence of str
        Class i + 1 is ``class_names[i]`` (QUINT: "label" = keep, "artefact" = drop).
    threshold : dict, optional
        The :func:`~pyquint.objects.threshold.threshold_objects` settings used to make the
        objects; stored with the model so that prediction can reuse them.
    n_jobs : int, optional
        Threads for training and prediction.

    Attributes
    ----------
    forest_ : FlatForest
    feature_names_ : list of str
        Resolved feature ids, in ilastik's column order.
    feature_columns_ : list of str
        Table column names of the classifier's input columns.
    n_channels_ : int
        Raw channels seen in training.
    seed_ : int
        The seed actually used (drawn when ``seed`` is None).
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        n_trees: int = 100,
        seed: int | None = None,
        class_names: Sequence[str] = ("label", "artefact"),
        threshold: Mapping[str, Any] | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.features = features
        self.n_trees = n_trees
        self.seed = seed
        self.class_names = class_names
        self.threshold = threshold
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ helpers
    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_value(self, value: int | str, where: str = "labels") -> int:
        """Class number 1..N of a class given as a number or a name (``where`` names the
        source in error messages)."""
        names = [str(n) for n in self.class_names]
        if isinstance(value, str) and not value.isdigit():
            if value not in names:
                raise InputError(f"{where}: unknown class {value!r}; classes are {names}")
            return names.index(value) + 1
        v = int(value)
        if not 1 <= v <= len(names):
            raise InputError(f"{where}: class {v} is out of range 1..{len(names)} ({names})")
        return v

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise InputError("this ObjectClassifier is not trained yet: call fit() or load()")

    def compute_features(self, raw: np.ndarray, objects: np.ndarray) -> dict[str, np.ndarray]:
        """The classifier's features of every object (see :func:`compute_object_features`)."""
        names = getattr(self, "feature_names_", None) or resolve_features(self.features, np.ndim(objects))
        return compute_object_features(raw, objects, names)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        raws: np.ndarray | Sequence[np.ndarray],
        object_label_images: np.ndarray | Sequence[np.ndarray],
        labels: ObjectLabels | Sequence[ObjectLabels],
    ) -> ObjectClassifier:
        """Train from one or more images.

        Parameters
        ----------
        raws : array or sequence of arrays
            Raw images (``yx``, ``yxc``, ``zyx`` or ``zyxc``, matching the objects).
        object_label_images : array or sequence of arrays
            Object labels (uint32 ids, 0 background), e.g. from :func:`threshold_objects`.
        labels : label image, mapping, CSV path, or a sequence of those (one per image)
            A label image (a labelled pixel inside an object labels that object), a mapping
            object id -> class (1..N or class name), or a CSV (``labelimage_oid``, ``class``).
        """
        raws_l, objs_l, labels_l = self._as_lists(raws, object_label_images, labels)
        names = resolve_features(self.features, np.ndim(objs_l[0]))
        self.feature_names_ = names
        X_parts, y_parts = [], []
        n_channels = None
        for i, (raw, objs, lab) in enumerate(zip(raws_l, objs_l, labels_l)):
            where = f"image {i}"
            objs = np.asarray(objs)
            mapping = self._labels_for(objs, lab, where)
            if not mapping:
                continue
            feats = compute_object_features(raw, objs, names)
            c = 1 if np.ndim(raw) == objs.ndim else np.shape(raw)[-1]
            if n_channels not in (None, c):
                raise InputError(f"{where}: {c} raw channel(s), but earlier images have {n_channels}")
            n_channels = c
            ids = np.fromiter(mapping.keys(), dtype=np.int64)
            X_parts.append(feature_matrix(feats, names)[ids - 1])
            y_parts.append(np.fromiter(mapping.values(), dtype=np.int64))
        if not X_parts:
            raise InputError("no labelled objects: label at least one object per class "
                             "(a labelled pixel inside an object, or an id -> class table)")
        y = np.concatenate(y_parts)
        missing = [self.class_names[k - 1] for k in range(1, self.n_classes + 1) if k not in set(y.tolist())]
        if missing:
            warnings.warn(f"no labelled objects of class(es) {missing}: their probability is "
                          "always 0", UserWarning, stacklevel=2)

        # Like ilastik an unseeded forest is random; the drawn seed is kept in the model file.
        self.seed_ = (int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
                      if self.seed is None else self.seed)
        self.forest_ = train_forest(np.concatenate(X_parts), y, n_trees=self.n_trees,
                                    seed=self.seed_, n_jobs=self.n_jobs)
        self.n_channels_ = int(n_channels or 1)
        self.ndim_ = int(np.ndim(objs_l[0]))
        self.feature_columns_ = column_names({n: f for n, f in feats.items()})
        self.n_training_objects_ = int(y.size)
        return self

    def _as_lists(self, raws: Any, objs: Any, labels: Any) -> tuple[list, list, list]:
        single = isinstance(objs, np.ndarray)
        raws_l = [raws] if single else list(raws)
        objs_l = [objs] if single else list(objs)
        if single:
            labels_l = [labels]
        elif isinstance(labels, (np.ndarray, Mapping, str, os.PathLike)):
            raise InputError("give one label image / mapping / CSV per object image (a list)")
        else:
            labels_l = list(labels)
        if not (len(raws_l) == len(objs_l) == len(labels_l)) or not objs_l:
            raise InputError(f"{len(raws_l)} raw images, {len(objs_l)} object images and "
                             f"{len(labels_l)} label sets: give the same (non-zero) number of each")
        return raws_l, objs_l, labels_l

    def _labels_for(self, objects: np.ndarray, labels: ObjectLabels, where: str) -> dict[int, int]:
        n = int(objects.max()) if objects.size else 0
        if isinstance(labels, (str, os.PathLike)):
            where = str(labels)
            labels = read_object_label_table(labels)
        if isinstance(labels, Mapping):
            out = {}
            for oid, cls in labels.items():
                oid = int(oid)
                if not 1 <= oid <= n:
                    raise InputError(f"{where}: object id {oid} does not exist (ids are 1..{n})")
                out[oid] = self.class_value(cls, where)
            return dict(sorted(out.items()))
        mapping = object_labels_from_image(objects, np.asarray(labels))
        return {oid: self.class_value(cls, where) for oid, cls in mapping.items()}

    # ------------------------------------------------------------------ prediction
    def predict_proba_features(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities (n_objects, n_classes) float32 from precomputed features."""
        self._check_fitted()
        X = feature_matrix(dict(features), self.feature_names_)
        if X.shape[1] != self.forest_.n_features:
            raise InputError(f"the model expects {self.forest_.n_features} feature columns, the "
                             f"features give {X.shape[1]} (different number of raw channels?)")
        return self.forest_.predict_proba(X, n_classes=self.n_classes, n_jobs=self.n_jobs)

    def predict_proba(self, raw: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """Class probabilities of objects 1..n: float32 (n, n_classes), rows sum to 1."""
        self._check_fitted()
        return self.predict_proba_features(self.compute_features(raw, objects))

    def predict(self, raw: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """Class (1..N, uint8) of objects 1..n; ties go to the lower class."""
        return proba_to_classes(self.predict_proba(raw, objects))

    def uncertainty(self, raw: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """ilastik's object uncertainty ``1 - (p_max - p_second)`` per object (float32)."""
        return uncertainty_from_proba(self.predict_proba(raw, objects))

    # ------------------------------------------------------------------ files
    def metadata(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "model": "ObjectClassifier",
            "features": list(self.feature_names_),
            "feature_columns": list(self.feature_columns_),
            "class_names": [str(n) for n in self.class_names],
            "n_trees": int(self.n_trees),
            "seed": int(self.seed_),
            "n_channels": int(self.n_channels_),
            "ndim": int(self.ndim_),
            "threshold": dict(self.threshold) if self.threshold else None,
            "n_training_objects": int(self.n_training_objects_),
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the model (HDF5, no pickle) with :func:`pyquint.forest.save_model`; an
        existing file is an :class:`InputError` unless ``overwrite``."""
        return save_model(path, "object", self.forest_, self.metadata(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ObjectClassifier:
        """Read a model written by :meth:`save`; validated, never unpickled."""
        forest, meta = load_model(path, expected_kind="object")
        try:
            features = [str(f) for f in meta["features"]]
            unknown = [f for f in features if f not in FEATURES]
            if unknown:
                raise ModelFileError(f"{path}: unknown object features {unknown}")
            model = cls(features=features, n_trees=int(meta["n_trees"]), seed=int(meta["seed"]),
                        class_names=tuple(str(n) for n in meta["class_names"]),
                        threshold=meta.get("threshold"))
            model.feature_names_ = features
            model.feature_columns_ = [str(c) for c in meta["feature_columns"]]
            model.n_channels_ = int(meta["n_channels"])
            model.ndim_ = int(meta["ndim"])
            model.seed_ = int(meta["seed"])
            model.n_training_objects_ = int(meta.get("n_training_objects", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: incomplete object-model metadata ({exc})") from exc
        if model.threshold is not None:
            try:
                model.threshold = check_threshold_settings(model.threshold, path)
            except InputError as exc:
                raise ModelFileError(str(exc)) from None
        if len(model.feature_columns_) != forest.n_features:
            raise ModelFileError(f"{path}: {len(model.feature_columns_)} feature columns but the "
                                 f"forest takes {forest.n_features}")
        if forest.classes.size and forest.classes.max() > model.n_classes:
            raise ModelFileError(f"{path}: forest classes {forest.classes.tolist()} exceed the "
                                 f"{model.n_classes} class names")
        model.forest_ = forest
        return model


def proba_to_classes(proba: np.ndarray) -> np.ndarray:
    """1 + argmax (ties to the lower class) as uint8; an all-zero row gets class 1."""
    proba = np.asarray(proba)
    if proba.shape[0] == 0:
        return np.zeros(0, dtype=np.uint8)
    return (np.argmax(proba, axis=1) + 1).astype(np.uint8)
