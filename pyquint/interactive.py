"""Train and preview, again and again: ilastik's "live update" loop without ilastik's window.

Two ways in, one set of rules:

* :class:`InteractiveSession` for notebooks: the image's features are computed **once** and
  kept; each :meth:`~InteractiveSession.step` adds labels, retrains the forest on the cached
  features of the labelled pixels and predicts the preview from the cached features (no
  feature is recomputed). :meth:`~InteractiveSession.classifier` gives the
  :class:`~pyquint.pixel.PixelClassifier` to save and batch with.
* :func:`run_step` for the Fiji macro (``pyquint macro fiji-train``, ``pyquint interactive
  step``): labels accumulate in ``<image>_pyquint/labels.png`` beside the image, and the model
  trained on them is saved there too. Called with a :class:`StepCache` (what the server of
  :mod:`pyquint.interactive_server` keeps between the macro's runs), the features of the image
  are computed once; without one, every call computes them again. Both give the same files.

Both use the fast trainer by default (``trainer="fast"``) and 100 trees, like the model that
is saved, so the preview shows what a batch run with the model will give.

>>> import numpy as np
>>> from pyquint.interactive import InteractiveSession
>>> rng = np.random.default_rng(0)
>>> image = rng.normal(100, 5, (64, 64)).astype(np.float32); image[:, 32:] += 50
>>> labels = np.zeros((64, 64), np.uint8); labels[10, 5:20] = 1; labels[40, 40:60] = 2
>>> session = InteractiveSession(image, n_trees=10, seed=0)
>>> preview = session.step(labels)
>>> int(preview.segmentation[50, 50]), len(preview.suggestions) > 0
(2, True)
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batch import value_range
from .errors import InputError
from .features import DEFAULT_ROUNDING, FeatureSelection, compute_features
from .forest import FlatForest, train_forest
from .io import atomic_output, read_image, to_canonical, write_image
from .lut import glasbey_lut, write_palette_png
from .parallel import resolve_n_jobs
from .pixel import PixelClassifier, simple_segmentation, uncertainty_from_proba

__all__ = [
    "InteractiveSession",
    "Preview",
    "StepCache",
    "StepReport",
    "Suggestion",
    "merge_labels",
    "run_step",
    "suggest_regions",
    "work_dir_for",
]

# ROI names of the suggestions; the fiji-train and roi-labels macros skip ROIs named so
SUGGESTION_PREFIX = "label here next"
_PREDICT_ROWS = 1 << 18  # pixels per forest call: bounds the temporaries of a preview


# --------------------------------------------------------------------------- plain functions
def merge_labels(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    """Labels of earlier iterations plus new ones: a new non-zero label wins, 0 keeps the old.

    Parameters
    ----------
    old : ndarray or None
        Accumulated labels (uint8, 0 = unlabelled), or None for the first iteration.
    new : ndarray
        This iteration's labels, same shape.
    """
    new = np.asarray(new)
    if new.ndim == 3 and new.shape[-1] == 1:
        new = new[..., 0]
    if new.size and (new.min() < 0 or new.max() > 255):
        raise InputError(f"labels must be 0..255, not {new.min()}..{new.max()}")
    new = new.astype(np.uint8)
    if old is None:
        return new.copy()
    old = np.asarray(old, dtype=np.uint8)
    if old.shape != new.shape:
        raise InputError(f"the saved labels have shape {old.shape} but the new ones {new.shape}: "
                         "they belong to another image (delete the saved labels to start over)")
    return np.where(new > 0, new, old).astype(np.uint8)


@dataclass(frozen=True)
class Suggestion:
    """A square region to label next: top-left corner, size and its mean uncertainty."""

    x: int
    y: int
    width: int
    height: int
    uncertainty: float


def suggest_regions(uncertainty: np.ndarray, n: int = 5, *, size: int = 32,
                    labels: np.ndarray | None = None) -> list[Suggestion]:
    """The ``n`` most uncertain ``size`` × ``size`` regions, not overlapping one another.

    A region's score is the mean uncertainty over its window, already labelled pixels
    counting as certain (labelling there again teaches the forest nothing new). Regions are
    picked greedily, best first; each pick suppresses every window overlapping it.

    Parameters
    ----------
    uncertainty : ndarray, shape (y, x)
        ilastik's uncertainty ``1 - (p1 - p2)`` (0 certain .. 1 undecided).
    n : int
        How many regions (fewer when the image has no more room or nothing is uncertain).
    size : int
        Edge of the square regions, in pixels (clipped to the image).
    labels : ndarray, optional
        Labels used for training (0 = unlabelled).
    """
    unc = np.asarray(uncertainty, dtype=np.float64)
    if unc.ndim != 2:
        raise InputError(f"uncertainty must be 2-D (yx), not shape {unc.shape}")
    if n < 0 or size < 1:
        raise InputError(f"need n >= 0 and size >= 1, not n={n}, size={size}")
    if labels is not None:
        unc = np.where(np.asarray(labels) > 0, 0.0, unc)
    h, w = unc.shape
    sy, sx = min(size, h), min(size, w)
    # score[y, x] = mean over the window whose top-left corner is (y, x)
    integral = np.pad(unc, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    score = (integral[sy:, sx:] - integral[:-sy, sx:] - integral[sy:, :-sx]
             + integral[:-sy, :-sx]) / (sy * sx)
    picked: list[Suggestion] = []
    while len(picked) < n:
        k = int(np.argmax(score))
        y, x = divmod(k, score.shape[1])
        best = float(score[y, x])
        if not best > 1e-6:
            break
        picked.append(Suggestion(int(x), int(y), int(sx), int(sy), round(best, 4)))
        # windows overlapping the pick start within (size - 1) of it
        score[max(0, y - sy + 1):y + sy, max(0, x - sx + 1):x + sx] = -1.0
    return picked


@dataclass
class Preview:
    """What one iteration shows: probabilities, Simple Segmentation, uncertainty, suggestions.

    Attributes
    ----------
    probability : float32 array, shape (y, x, N)
        Channel ``i`` is class ``i + 1``.
    segmentation : uint8 array, shape (y, x)
        Class 1..N of every pixel.
    uncertainty : float32 array, shape (y, x)
    suggestions : list of Suggestion
    seconds : dict
        Wall time of the parts of the iteration (``features``, ``train``, ``predict``).
    """

    probability: np.ndarray
    segmentation: np.ndarray
    uncertainty: np.ndarray
    suggestions: list[Suggestion]
    seconds: dict = field(default_factory=dict)


def _preview(proba: np.ndarray, labels: np.ndarray, n_suggestions: int, size: int,
             seconds: dict) -> Preview:
    unc = uncertainty_from_proba(proba)
    return Preview(proba, simple_segmentation(proba), unc,
                   suggest_regions(unc, n_suggestions, size=size, labels=labels), seconds)


def _plane(image: Any, name: str = "image") -> np.ndarray:
    """A 2-D image as ``yxc`` (the only layout the loop shows in ImageJ)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., np.newaxis]
    if a.ndim != 3:
        raise InputError(f"{name}: the interactive loop works on 2-D images (yx or yxc), not shape {a.shape}")
    return a


# --------------------------------------------------------------------------- notebook API
class InteractiveSession:
    """One image, labels added step by step, features computed once.

    Parameters
    ----------
    image : array, shape (y, x) or (y, x, c)
        The view to train on (e.g. a 2000 × 2000 crop of a section).
    class_names : sequence of str, optional
        Names of the classes (label ``i + 1`` is ``class_names[i]``); also fixes their number.
    features : FeatureSelection, optional
        Default ilastik's 49 features ("select all"). The cache holds all of them: 4 bytes ×
        channels per pixel (0.78 GB for 2000 × 2000 × 49).
    n_trees : int
        Trees per forest (100, like the model that gets saved).
    seed : int
        Seed of every forest; the same labels give the same forest.
    trainer : {"fast", "sklearn"}
        Forest trainer (see :class:`~pyquint.pixel.PixelClassifier`).
    n_jobs : int, optional
        Threads (default all cores).
    """

    def __init__(self, image: Any, *, class_names: Sequence[str] | None = None,
                 features: FeatureSelection | None = None, n_trees: int = 100, seed: int = 0,
                 trainer: str = "fast", n_jobs: int | None = None) -> None:
        self.image = _plane(image)
        self.class_names = list(class_names) if class_names is not None else None
        self.features = features if features is not None else FeatureSelection.all()
        if n_trees < 1:
            raise InputError(f"n_trees must be at least 1, not {n_trees}")
        self.n_trees = n_trees
        self.seed = seed
        self.trainer = trainer
        self.n_jobs = n_jobs
        self.labels_ = np.zeros(self.image.shape[:2], np.uint8)
        self.iteration_ = 0
        self.forest_: FlatForest | None = None
        self._cache: np.ndarray | None = None
        self._n_classes_trained = 0
        self._trained_on: tuple | None = None

    @property
    def has_features(self) -> bool:
        """Whether the features are computed (the next step only trains and predicts)."""
        return self._cache is not None

    @property
    def feature_cache(self) -> np.ndarray:
        """The image's features, (y, x, F) float32, computed on first use and then kept."""
        if self._cache is None:
            self._cache = compute_features(self.image, self.features, axes="yxc",
                                           rounding=DEFAULT_ROUNDING, n_jobs=self.n_jobs)
        return self._cache

    def threads(self) -> int:
        """Threads the session uses (``n_jobs``, or all cores: :func:`pyquint.parallel.resolve_n_jobs`)."""
        return resolve_n_jobs(self.n_jobs)

    def _n_classes(self) -> int:
        present = np.unique(self.labels_[self.labels_ > 0])
        if present.size < 2:
            raise InputError("label pixels of at least two classes before training "
                             f"(labelled so far: {present.tolist() or 'nothing'})")
        n = int(present.max())
        if self.class_names is not None:
            if len(self.class_names) < n:
                raise InputError(f"label {n} is used but only {len(self.class_names)} class names are given")
            n = len(self.class_names)
        return n

    def add_labels(self, labels: Any) -> np.ndarray:
        """Add labels (0 = none) to those of earlier steps; returns all labels so far."""
        labels = np.asarray(labels)
        if labels.shape[:2] != self.labels_.shape:
            raise InputError(f"labels have shape {labels.shape} but the image is {self.labels_.shape}")
        self.labels_ = merge_labels(self.labels_, labels)
        return self.labels_

    def set_labels(self, labels: Any) -> np.ndarray:
        """Replace all labels (e.g. by those saved beside the image); returns them."""
        labels = np.asarray(labels)
        if labels.shape[:2] != self.labels_.shape:
            raise InputError(f"labels have shape {labels.shape} but the image is {self.labels_.shape}")
        self.labels_ = merge_labels(None, labels)
        return self.labels_

    def train(self) -> FlatForest:
        """Train a forest on the cached features of every labelled pixel.

        Samples are the labelled pixels in row-major order, as :meth:`PixelClassifier.fit`
        takes them, so the same features, labels and seed give the same forest.
        """
        n_classes = self._n_classes()
        mask = self.labels_ > 0
        X = self.feature_cache[mask]
        y = self.labels_[mask].astype(np.int64)
        self.forest_ = train_forest(X, y, n_trees=self.n_trees, seed=self.seed, n_jobs=self.n_jobs,
                                    backend=self.trainer)
        self._n_classes_trained = n_classes
        self._trained_on = (self.labels_.copy(), self.n_trees, self.seed, self.trainer, self.class_names)
        return self.forest_

    def predict_proba(self) -> np.ndarray:
        """Probabilities of every pixel from the cached features (y, x, N) float32."""
        if self.forest_ is None:
            raise InputError("train() first")
        feats = self.feature_cache
        h, w, f = feats.shape
        flat = feats.reshape(-1, f)
        out = np.empty((h * w, self._n_classes_trained), np.float32)
        for start in range(0, h * w, _PREDICT_ROWS):
            out[start:start + _PREDICT_ROWS] = self.forest_.predict_proba(
                flat[start:start + _PREDICT_ROWS], n_classes=self._n_classes_trained, n_jobs=self.n_jobs)
        return out.reshape(h, w, -1)

    def step(self, labels: Any | None = None, *, n_suggestions: int = 5, suggestion_size: int = 32) -> Preview:
        """Add ``labels``, retrain, predict: one iteration of the loop.

        Only the first step computes features; later ones retrain and predict from the cache.
        """
        seconds = {}
        t0 = time.perf_counter()
        if labels is not None:
            self.add_labels(labels)
        if self._cache is None:
            self.feature_cache  # noqa: B018 - computed here so that its time is reported
            seconds["features"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        self.train()
        t2 = time.perf_counter()
        proba = self.predict_proba()
        seconds.update(train=t2 - t1, predict=time.perf_counter() - t2)
        self.iteration_ += 1
        return _preview(proba, self.labels_, n_suggestions, suggestion_size, seconds)

    def _trained_now(self) -> bool:
        if self.forest_ is None or self._trained_on is None:
            return False
        labels, *options = self._trained_on
        return options == [self.n_trees, self.seed, self.trainer, self.class_names] and np.array_equal(
            labels, self.labels_)

    def classifier(self) -> PixelClassifier:
        """The :class:`PixelClassifier` trained on the image and all labels so far (to save,
        or to predict other sections with).

        It is the forest of the last :meth:`train` (trained again only when labels or options
        changed since), so it equals ``PixelClassifier(...).fit(image, labels)`` with the same
        options: the same trees, metadata and training record.
        """
        if not self._trained_now():
            self.train()
        y = self.labels_[self.labels_ > 0]
        present = sorted(int(c) for c in np.unique(y))
        info = {"n_images": 1, "n_samples": int(y.size),
                "samples_per_class": {str(c): int(np.count_nonzero(y == c)) for c in present},
                "input_dtypes": [str(self.image.dtype)], "value_range": value_range([self.image])}
        return PixelClassifier.from_forest(
            self.forest_, features=self.features, ndim=2, n_input_channels=self.image.shape[-1],
            class_names=self.class_names, rounding=DEFAULT_ROUNDING,
            seed=self.seed, trainer=self.trainer, training_info=info, n_jobs=self.n_jobs)


# --------------------------------------------------------------------------- Fiji step
@dataclass
class StepReport:
    """What :func:`run_step` wrote (paths) and measured."""

    work_dir: Path
    files: dict[str, Path]
    iteration: int
    samples_per_class: dict[str, int]
    suggestions: list[Suggestion]
    seconds: dict

    def to_dict(self) -> dict:
        return {
            "work_dir": str(self.work_dir), "files": {k: str(v) for k, v in self.files.items()},
            "iteration": self.iteration, "samples_per_class": self.samples_per_class,
            "suggestions": [s.__dict__ for s in self.suggestions], "seconds": self.seconds,
        }


def work_dir_for(image_path: str | os.PathLike) -> Path:
    """Where the loop keeps the model and labels of an image: ``<dir>/<stem>_pyquint/``."""
    path = Path(image_path)
    return path.parent / f"{path.stem}_pyquint"


def _write_u8(path: Path, values: np.ndarray) -> Path:
    """0..1 floats as an 8-bit grey PNG (0..255), what ImageJ overlays directly."""
    from PIL import Image

    data = np.clip(np.rint(np.asarray(values, np.float64) * 255), 0, 255).astype(np.uint8)
    # zlib level 1: a third of the default's time for 15 % more bytes (previews are rewritten
    # every iteration, and this is the largest part of writing them)
    with atomic_output(path) as tmp:
        Image.fromarray(np.ascontiguousarray(data)).save(tmp, format="PNG", compress_level=1)
    return path


class StepCache:
    """What :func:`run_step` keeps between calls in one process: the session of the last image.

    The key is the image file's path, size and modification time, so a re-saved image gets
    its features computed again. A long-running process (the server of
    :mod:`pyquint.interactive_server`) passes the same cache to every :func:`run_step`.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._session: InteractiveSession | None = None

    def session(self, image_path: Path, n_jobs: int | None = None) -> InteractiveSession:
        """The session of ``image_path`` (read and made anew when the file changed)."""
        stat = image_path.stat()
        key = (str(image_path.resolve()), stat.st_size, stat.st_mtime_ns, n_jobs)
        if key != self._key or self._session is None:
            self._session = None  # free the old features before computing new ones
            self._session = _read_session(image_path, n_jobs)
            self._key = key
        return self._session


def _read_session(image_path: Path, n_jobs: int | None) -> InteractiveSession:
    data, axes = read_image(image_path)
    return InteractiveSession(_plane(to_canonical(data, axes)[0], str(image_path)), n_jobs=n_jobs)


def run_step(
    image_path: str | os.PathLike,
    labels_path: str | os.PathLike | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    show_class: str | int | None = None,
    n_suggestions: int = 5,
    suggestion_size: int = 32,
    n_trees: int = 100,
    seed: int = 0,
    trainer: str = "fast",
    n_jobs: int | None = None,
    cache: StepCache | None = None,
) -> StepReport:
    """One iteration for the Fiji macro: add labels, train, save the model, write the preview.

    Parameters
    ----------
    image_path : path
        The image being labelled (2-D, grey or colour). Never modified.
    labels_path : path, optional
        This iteration's label image (0 = unlabelled, k = class k), e.g. painted from the ROI
        Manager. Added to ``<work_dir>/labels.png`` (new labels win where both have one).
    work_dir : path, optional
        Default :func:`work_dir_for` ``(image_path)``.
    class_names : sequence of str, optional
        Class names for labels 1..N (kept in the model).
    show_class : str or int, optional
        The class whose probability is written (name or 1-based index; default the last).
    n_suggestions, suggestion_size : int
        How many "label here next" regions, and their edge in pixels.
    n_trees, seed, trainer, n_jobs
        The forest (see :class:`~pyquint.pixel.PixelClassifier`).
    cache : StepCache, optional
        Keeps the image's features for the next call (default: none kept).

    Returns
    -------
    StepReport
        Files in ``work_dir``: ``labels.png`` (all labels so far), ``model.h5``,
        ``probability.png`` (8-bit, p × 255), ``segmentation.png`` (Glasbey palette, value =
        class), ``uncertainty.png`` (8-bit), ``suggestions.csv`` and ``step.json``. The model
        is the one ``PixelClassifier(...).fit(image, labels)`` gives.
    """
    t0 = time.perf_counter()
    if class_names is not None:
        if len(set(class_names)) != len(class_names):
            raise InputError(f"class names must be distinct, not {list(class_names)}")
        _class_index(show_class, list(class_names))  # a wrong class name fails before any work
    image_path = Path(image_path)
    if not image_path.is_file():
        raise InputError(f"{image_path}: no such image (save the image before training)")
    work = Path(work_dir) if work_dir is not None else work_dir_for(image_path)
    if work.resolve() == image_path.parent.resolve():
        raise InputError(f"{work}: the work folder must not be the image's own folder")
    session = (cache or StepCache()).session(image_path, n_jobs)
    shape = session.image.shape[:2]
    saved = work / "labels.png"
    old = read_image(saved)[0][..., 0] if saved.is_file() else None
    if labels_path is not None:
        new, _ = read_image(labels_path)
        new = new[..., 0] if new.ndim == 3 else new
        if new.shape != shape:
            raise InputError(f"{labels_path}: labels have shape {new.shape} but {image_path.name} is {shape}")
    elif old is None:
        raise InputError(f"no labels: give a label image (no saved labels in {saved})")
    else:
        new = np.zeros_like(old)
    if old is not None and old.shape != shape:
        raise InputError(f"{saved} does not match {image_path.name}; delete it to start over")
    labels = merge_labels(old, new)
    session.class_names = list(class_names) if class_names is not None else None
    session.n_trees, session.seed, session.trainer = n_trees, seed, trainer
    session.set_labels(labels)
    t1 = time.perf_counter()
    cached = session.has_features
    session.feature_cache  # noqa: B018 - computed here (once per image with a cache) to time it
    t2 = time.perf_counter()
    session.train()
    t3 = time.perf_counter()
    proba = session.predict_proba()
    t4 = time.perf_counter()
    clf = session.classifier()
    k = _class_index(show_class, clf.class_names_)
    preview = _preview(proba, labels, n_suggestions, suggestion_size, {})
    work.mkdir(parents=True, exist_ok=True)
    writers = {
        "labels": lambda: write_image(saved, labels, "yx"),
        "model": lambda: clf.save(work / "model.h5", overwrite=True),  # rewritten each step
        "probability": lambda: _write_u8(work / "probability.png", proba[..., k]),
        "segmentation": lambda: write_palette_png(work / "segmentation.png", preview.segmentation,
                                                  glasbey_lut("glasbey")),
        "uncertainty": lambda: _write_u8(work / "uncertainty.png", preview.uncertainty),
        "suggestions": lambda: _write_suggestions(work / "suggestions.csv", preview.suggestions),
    }
    # PNG compression releases the GIL: the files are written side by side (each atomically)
    with ThreadPoolExecutor(max_workers=session.threads()) as pool:
        futures = {name: pool.submit(write) for name, write in writers.items()}
        files = {name: future.result() for name, future in futures.items()}
    previous = _read_json(work / "step.json")
    seconds = {"read": round(t1 - t0, 3), "features": round(t2 - t1, 3), "train": round(t3 - t2, 3),
               "predict": round(t4 - t3, 3), "write": round(time.perf_counter() - t4, 3),
               "total": round(time.perf_counter() - t0, 3)}
    report = StepReport(work, files, int(previous.get("iteration", 0)) + 1,
                        dict(clf.training_info_["samples_per_class"]), preview.suggestions, seconds)
    info = report.to_dict() | {"image": str(image_path), "class_names": clf.class_names_,
                               "shown_class": clf.class_names_[k], "n_trees": n_trees, "trainer": trainer,
                               "features_cached": cached}
    with atomic_output(work / "step.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    files["step"] = work / "step.json"
    return report


def _class_index(show_class: str | int | None, names: list[str]) -> int:
    if show_class is None or show_class == "":
        return len(names) - 1
    if isinstance(show_class, int) or str(show_class).isdigit():
        k = int(show_class)
        if not 1 <= k <= len(names):
            raise InputError(f"class {k} does not exist; classes are 1..{len(names)}")
        return k - 1
    lower = [n.lower() for n in names]
    if str(show_class).lower() not in lower:
        raise InputError(f"no class named {show_class!r}; classes: {', '.join(names)}")
    return lower.index(str(show_class).lower())


def _write_suggestions(path: Path, suggestions: list[Suggestion]) -> Path:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "x", "y", "width", "height", "uncertainty"])
        for i, s in enumerate(suggestions, 1):
            writer.writerow([f"{SUGGESTION_PREFIX} {i}", s.x, s.y, s.width, s.height, s.uncertainty])
    return path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
