"""Object classification over files: threshold, train and predict batches, as the
``pyquint objects`` commands run them (the CLI only parses options and prints).

Files are paired by name (:func:`pair_objects_files`): a raw ``x.png`` goes with
``x_Probabilities.h5``, ``x.h5``, ``x_Object Identities.h5`` or the labels ``x.png``/``x.csv``.
Every function returns what it did (:class:`BatchResult`); warnings about single files are
collected in ``result.warnings`` instead of being printed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import collect_inputs, guard_outputs, progress
from ..errors import InputError, PyquintError
from ..io import read_image, to_canonical
from ..naming import nickname, pair_by_name
from .classifier import (
    ObjectClassifier,
    ObjectLabelWarning,
    object_labels_from_image,
    proba_to_classes,
    read_object_label_table,
)
from .export import (
    OBJECT_EXPORT_SOURCES,
    export_path,
    object_images,
    table_path,
    write_object_image,
    write_table,
)
from .features import compute_object_features
from .threshold import check_threshold_settings, load_probabilities, threshold_objects

__all__ = [
    "LABEL_SUFFIXES",
    "THRESHOLD_DEFAULTS",
    "BatchResult",
    "pair_objects_files",
    "predict_files",
    "resolve_channels",
    "threshold_files",
    "threshold_settings",
    "train_from_files",
]

_PARTNER_SUFFIXES = ("_Probabilities", "_Object Identities", "_Simple Segmentation")
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".h5", ".npy", ".csv")
# "channel"/"core_channel" are 0-based (as ilastik stores them; None = the maps' last class).
THRESHOLD_DEFAULTS = {"channel": None, "method": "simple", "threshold": 0.5, "high_threshold": 0.8,
                      "core_channel": None, "sigma": 1.0, "min_size": 10, "max_size": 1_000_000}


@dataclass
class BatchResult:
    """What a batch did: outputs written, inputs skipped (outputs already there), files that
    failed (one message each) and warnings (one line each, naming the file)."""

    done: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    classifier: ObjectClassifier | None = None


def threshold_settings(stored: Mapping[str, Any] | None = None, **given: Any) -> dict[str, Any]:
    """Threshold settings: ilastik's defaults, updated by ``stored`` (a model's), then by the
    ``given`` values that are not None (channels 0-based)."""
    settings = dict(THRESHOLD_DEFAULTS)
    settings.update({k: v for k, v in (stored or {}).items() if k in THRESHOLD_DEFAULTS})
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def resolve_channels(settings: Mapping[str, Any], n_channels: int, source: object) -> dict[str, Any]:
    """``settings`` with concrete 0-based channels for maps of ``n_channels`` (None = the last
    class); a channel outside the maps is an error that counts classes from 1."""
    out = dict(settings)
    if out.get("channel") is None:
        out["channel"] = n_channels - 1
    if out.get("core_channel") is None:
        out["core_channel"] = out["channel"]
    for key, flag in (("channel", "--channel"), ("core_channel", "--core-channel")):
        if not 0 <= int(out[key]) < n_channels:
            raise PyquintError(
                f"{source}: {flag} {int(out[key]) + 1} is out of range: the probability maps have "
                f"{n_channels} channel(s), classes 1..{n_channels}")
    return out


def _spatial(sigma: Any, ndim: int) -> Any:
    return (sigma,) * ndim if np.isscalar(sigma) else tuple(sigma)


def partner_key(path: str | os.PathLike) -> str:
    """The name a file is paired by: its nickname without ilastik's export suffixes."""
    nick = nickname(path)
    for suffix in _PARTNER_SUFFIXES:
        if nick.endswith(suffix):
            return nick[: -len(suffix)]
    return nick


def pair_objects_files(raws: Sequence[Path], others: Sequence[Path], what: str) -> list[Path]:
    """For each raw file, the file of ``others`` with the same name (``x.png`` <-> ``x.h5``,
    ``x_Probabilities.h5``); an :class:`InputError` when one has none."""
    found = pair_by_name(raws, [Path(p) for p in others], names=lambda p: [partner_key(p)],
                         candidate_names=lambda p: [partner_key(p)], what=what)
    missing = [str(r) for r, f in zip(raws, found) if f is None]
    if missing:
        raise InputError(
            f"no {what} file with the name of {', '.join(missing[:3])}"
            + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
            + f"; {what} files are matched to raw images by name")
    return found  # type: ignore[return-value]


def _read_raw(path: Path) -> np.ndarray:
    data, axes = read_image(path)
    data, canon = to_canonical(data, axes)
    if canon.startswith("t"):
        raise PyquintError(f"{path}: time series are not supported")
    return data


def _read_spatial(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    data, axes = read_image(path)
    data, _ = to_canonical(data, axes)
    if data.shape[-1] != 1:
        raise PyquintError(f"{path}: a {what} image needs one channel, not {data.shape[-1]}")
    data = data[..., 0]
    if data.shape != tuple(shape):
        raise PyquintError(f"{path}: {what} image of shape {data.shape} does not match the raw "
                           f"image of shape {tuple(shape)}")
    if data.dtype.kind not in "iu":
        raise PyquintError(f"{path}: a {what} image must hold integers, not {data.dtype}")
    return data


def _threshold(proba: np.ndarray, settings: Mapping[str, Any], source: object) -> tuple[np.ndarray, dict, bool]:
    """Objects of one probability map, the settings used (channels resolved), and whether
    none were found."""
    resolved = resolve_channels(settings, proba.shape[-1], source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        objects = threshold_objects(proba, **{**resolved, "sigma": _spatial(resolved["sigma"], proba.ndim - 1)})
    return objects, resolved, bool(caught)


def _objects_for(raw: np.ndarray, raw_path: Path, proba_path: Path | None,
                 objects_path: Path | None, settings: dict) -> tuple[np.ndarray, dict]:
    """Object labels of one image and the threshold settings used (channels resolved)."""
    spatial = raw.shape[:-1]
    if objects_path is not None:
        return _read_spatial(objects_path, spatial, "object label").astype(np.uint32), settings
    proba, _ = load_probabilities(proba_path)
    if proba.shape[:-1] != spatial:
        raise PyquintError(f"{proba_path}: probability map of shape {proba.shape[:-1]} does not "
                           f"match the raw image {raw_path} of shape {spatial}")
    objects, used, _ = _threshold(proba, settings, proba_path)
    return objects, used


def _sources(raws: Sequence[Path], proba: Sequence[Path] | None,
             objects: Sequence[Path] | None) -> tuple[list[Path | None], list[Path | None]]:
    """The probability map or the object image of each raw image (the other list None)."""
    if bool(proba) == bool(objects):
        raise InputError("give either probability maps (to threshold) or object label images, "
                         "not both or neither")
    if proba:
        return list(pair_objects_files(raws, collect_inputs(proba), "probability")), [None] * len(raws)
    return [None] * len(raws), list(pair_objects_files(raws, collect_inputs(objects), "object label"))


def _labels_by_object(objects: np.ndarray, label_image: np.ndarray, source: Path,
                      result: BatchResult) -> dict[int, int]:
    """Object id -> class from painted labels; mixed objects are reported with the file name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ObjectLabelWarning)
        mapping = object_labels_from_image(objects, label_image)
    for w in caught:
        if issubclass(w.category, ObjectLabelWarning):
            result.warnings.append(f"{source}: {w.message}")
        else:  # pragma: no cover - other warnings pass through unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return mapping


def threshold_files(proba: Sequence[str | os.PathLike], out: str | os.PathLike,
                    settings: Mapping[str, Any] | None = None, *, fmt: str = "h5",
                    overwrite: bool = False) -> BatchResult:
    """Threshold + size filter probability maps (files or folders) into
    ``out/{nickname}_Object Identities.<fmt>``; a bad file is reported and the batch goes on.
    """
    out = Path(out)
    settings = threshold_settings(settings)
    # once, before any file; a channel left None is the maps' last class, resolved per file
    check_threshold_settings({k: v for k, v in settings.items() if v is not None}, "objects threshold")
    files = collect_inputs(proba)
    # outputs of an earlier run found in an input folder are not inputs of this one (resume)
    made = {export_path(out, partner_key(p), "Object Identities", fmt).resolve() for p in files}
    given = {Path(p).resolve() for p in proba}
    files = [p for p in files if p.resolve() in given or not (
        p.resolve() in made or p.stem.endswith("_Object Identities"))] or files
    outputs = [export_path(out, partner_key(p), "Object Identities", fmt) for p in files]
    guard_outputs(files, outputs)
    result = BatchResult()
    for src, dst in progress(list(zip(files, outputs)), "threshold", len(files)):
        if dst.exists() and not overwrite:
            result.skipped += 1
            continue
        try:  # a bad file is reported and the batch goes on
            data, _ = load_probabilities(src)
            labels, _, empty = _threshold(data, settings, src)
        except PyquintError as exc:
            message = str(exc)
            result.failures.append(message if str(src) in message else f"{src}: {message}")
            continue
        if empty:
            result.warnings.append(f"{src}: no objects found")
        write_object_image(dst, "Object Identities", labels)
        result.done += 1
    return result


def train_from_files(raw: Sequence[str | os.PathLike], labels: Sequence[str | os.PathLike],
                     model: str | os.PathLike, *, proba: Sequence[str | os.PathLike] | None = None,
                     objects: Sequence[str | os.PathLike] | None = None,
                     settings: Mapping[str, Any] | None = None, overwrite: bool = False,
                     **classifier: Any) -> BatchResult:
    """Train an :class:`ObjectClassifier` from raw images, their probability maps (thresholded
    with ``settings``) or object images, and object labels (label images or CSV tables);
    write it to ``model``. ``classifier``: :class:`ObjectClassifier`'s arguments."""
    model = Path(model)
    if model.exists() and not overwrite:
        raise InputError(f"{model} exists; use --overwrite to replace it")
    settings = threshold_settings(settings)
    raws = collect_inputs(raw)
    probas, objs = _sources(raws, proba, objects)
    label_files = pair_objects_files(raws, collect_inputs(labels, LABEL_SUFFIXES), "label")
    guard_outputs([*raws, *[p for p in probas if p], *[o for o in objs if o], *label_files], [model])
    result = BatchResult()
    raw_data, obj_data, lab_data = [], [], []
    used: dict | None = None
    for r, p, o, lab in progress(list(zip(raws, probas, objs, label_files)), "objects", len(raws)):
        image = _read_raw(r)
        raw_data.append(image)
        found, used = _objects_for(image, r, p, o, settings)
        obj_data.append(found)
        lab_data.append(lab if lab.suffix.lower() == ".csv" else _labels_by_object(
            found, _read_spatial(lab, image.shape[:-1], "label"), lab, result))
    clf = ObjectClassifier(**classifier, threshold=used if probas[0] is not None else None)
    clf.fit(raw_data, obj_data, lab_data)
    clf.save(model, overwrite=overwrite)
    result.done, result.classifier = len(raws), clf
    return result


def _table_features(model_features: Sequence[str]) -> list[str]:
    # ilastik always adds its "default features" (Count, RegionCenter, bounding box).
    base = ["Count", "RegionCenter", "Coord<Minimum>", "Coord<Maximum>"]
    return list(dict.fromkeys([*base, *model_features]))


def predict_files(classifier: ObjectClassifier | str | os.PathLike, raw: Sequence[str | os.PathLike],
                  out: str | os.PathLike, *, proba: Sequence[str | os.PathLike] | None = None,
                  objects: Sequence[str | os.PathLike] | None = None,
                  sources: Sequence[str] = ("Object Predictions",), fmt: str = "h5", table: bool = True,
                  labels: Sequence[str | os.PathLike] | None = None,
                  settings: Mapping[str, Any] | None = None, overwrite: bool = False) -> BatchResult:
    """Classify the objects of raw images and write ilastik's object exports
    (``out/{nickname}_{source}.{fmt}``) and ``{nickname}_table.csv``.

    ``classifier`` is a fitted :class:`ObjectClassifier` or a model file; ``settings``
    override the model's stored threshold settings; ``labels`` fill the table's
    ``User Label`` column. Images whose outputs all exist are skipped unless ``overwrite``.
    """
    model = None if isinstance(classifier, ObjectClassifier) else Path(classifier)
    clf = classifier if model is None else ObjectClassifier.load(model)
    settings = threshold_settings(clf.threshold, **(settings or {}))
    canonical = {s.lower(): s for s in OBJECT_EXPORT_SOURCES}
    unknown = [s for s in sources if s.lower() not in canonical]
    if unknown:
        raise InputError(f"unknown export source {unknown[0]!r}; use one of {', '.join(OBJECT_EXPORT_SOURCES)}")
    sources = [canonical[s.lower()] for s in sources] or ["Object Predictions"]
    out = Path(out)
    raws = collect_inputs(raw)
    probas, objs = _sources(raws, proba, objects)
    label_files: list[Path | None] = (list(pair_objects_files(raws, collect_inputs(labels, LABEL_SUFFIXES), "label"))
                                      if labels else [None] * len(raws))
    plan = [[export_path(out, nickname(r), s, fmt) for s in sources]
            + ([table_path(out, nickname(r))] if table else []) for r in raws]
    inputs = [*raws, *([model] if model else []), *[p for p in probas if p], *[o for o in objs if o],
              *[x for x in label_files if x]]
    guard_outputs(inputs, [p for outs in plan for p in outs])
    result = BatchResult(classifier=clf)
    names = _table_features(clf.feature_names_) if table else clf.feature_names_
    for r, p, o, lab, outs in progress(list(zip(raws, probas, objs, label_files, plan)), "predict", len(raws)):
        if not overwrite and all(x.exists() for x in outs):
            result.skipped += 1
            continue
        image = _read_raw(r)
        found, _ = _objects_for(image, r, p, o, settings)
        if found.max() == 0:
            result.warnings.append(f"{r}: no objects found; writing empty outputs")
        feats = compute_object_features(image, found, names)
        prob = clf.predict_proba_features(feats)
        classes = proba_to_classes(prob)
        images = object_images(found, classes, prob)
        for s, dst in zip(sources, outs):
            write_object_image(dst, s, images[s])
        if table:
            write_table(outs[-1], feats, clf.class_names, classes, prob, _user_labels(clf, found, lab))
        result.done += 1
    return result


def _user_labels(clf: ObjectClassifier, objects: np.ndarray, lab: Path | None) -> dict[int, int] | None:
    """The table's ``User Label`` column from a label image or CSV (None without labels)."""
    if lab is None:
        return None
    user = (read_object_label_table(lab) if lab.suffix.lower() == ".csv"
            else object_labels_from_image(objects, _read_spatial(lab, objects.shape, "label")))
    return {k: clf.class_value(v, str(lab)) for k, v in user.items() if k <= objects.max()}
