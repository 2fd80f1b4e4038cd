"""Pixel classification as in ilastik: features → random forest → probabilities.

:class:`PixelClassifier` trains on sparse label images (0 = unlabelled, 1..N = classes, the
ilastik convention), predicts ilastik's three result types (Probabilities, Simple
Segmentation, Uncertainty) and saves itself to a pickle-free model file
(``docs/model-format.md``) that carries its feature selection, class names and colours.

>>> import numpy as np
>>> from pyquint.pixel import PixelClassifier
>>> rng = np.random.default_rng(0)
>>> image = rng.normal(100, 5, (64, 64)).astype(np.float32); image[:, 32:] += 50
>>> labels = np.zeros((64, 64), np.uint8); labels[10, 5:20] = 1; labels[40, 40:60] = 2
>>> clf = PixelClassifier(n_trees=10, seed=0).fit(image, labels)
>>> int(clf.predict(image)[50, 50]), clf.predict_proba(image).shape
(2, (64, 64, 2))
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .batch import value_range
from .errors import InputError, ModelFileError
from .export import EXPORT_SOURCES
from .features import (
    DEFAULT_ROUNDING,
    ROUNDINGS,
    FeatureSelection,
    compute_features,
    feature_bands,
    feature_halo,
    feature_names,
)
from .forest import (
    DEFAULT_TRAINER,
    FlatForest,
    load_model,
    resolve_seed,
    save_model,
    train_forest,
)
from .parallel import resolve_n_jobs
from .pixel_sources import (
    ILASTIK_LABEL_COLORS,
    _as_list,
    _canonical,
    _check_labels,
    check_colors,
    default_class_colors,
    default_class_names,
    forest_sources,
    simple_segmentation,
    sources_from_proba,
    uncertainty_from_proba,
)
from .tiling import windows

__all__ = [
    "ILASTIK_LABEL_COLORS",
    "PixelClassifier",
    "default_class_colors",
    "default_class_names",
    "simple_segmentation",
    "sources_from_proba",
    "uncertainty_from_proba",
]

# Feature memory per prediction tile (float32 channels over the tile and its halo; for the
# banded fast 2-D path, the pre-smoothed planes).
_TILE_BYTES = 256 * 2**20


# --------------------------------------------------------------------------- classifier
class PixelClassifier:
    """ilastik-style pixel classifier: ilastik features and a random forest.

    Parameters
    ----------
    features : FeatureSelection, optional
        Which ilastik features to compute; default :meth:`FeatureSelection.all` (49 channels
        for a 2-D grey image).
    n_trees : int
        Number of trees (ilastik: 100 in total).
    seed : int, optional
        Seed of the forest; the same seed and data give the same model and probabilities.
        When None, a seed is drawn at :meth:`fit` and recorded (``seed_``).
    class_names : sequence of str, optional
        Name of each class (label value ``i + 1`` is ``class_names[i]``). Also fixes the
        number of classes N (classes without labels get an all-zero probability channel).
        Default ``Label 1``, ``Label 2``, ...
    class_colors : sequence of (r, g, b), optional
        Colour of each class (0..255); default ilastik's label colours.
    n_jobs : int, optional
        Threads for training and prediction (:func:`pyquint.parallel.resolve_n_jobs`;
        default: all cores).
    rounding : {"fast", "exact", "muladd", "vigra"}
        Arithmetic of the feature filters (:data:`pyquint.features.ROUNDINGS`, see
        :func:`pyquint.features.compute_features`); the default ``"fast"``
        (:data:`pyquint.features.DEFAULT_ROUNDING`) is within 1e-5 of ``"exact"`` (which
        reproduces ilastik ≥ 1.4 bit for bit).
    trainer : {"fast", "sklearn"}
        Forest trainer: pyquint's compiled vigra-like trainer (default: bootstrap, Gini,
        round(√F) features, exact splits at midpoints, grown to purity; about 10× faster than
        scikit-learn's, so that retraining while labelling takes seconds; agrees with
        scikit-learn's forest on ≥ 99.7 % of pixels in tests) or scikit-learn's
        RandomForestClassifier with ilastik's settings. The two give other trees for the same
        seed; model files record which one was used.

    Attributes
    ----------
    forest_ : FlatForest
    n_classes_ : int
    classes_ : ndarray
        Label values that had training samples.
    class_names_, class_colors_ : list
    n_input_channels_ : int
    ndim_ : int
        2 (``yxc`` images) or 3 (``zyxc``).
    seed_ : int
    feature_names_ : list of str
        ilastik's names of the feature channels.
    training_info_ : dict
    """

    def __init__(
        self,
        features: FeatureSelection | None = None,
        n_trees: int = 100,
        seed: int | None = None,
        class_names: Sequence[str] | None = None,
        class_colors: Sequence[Sequence[int]] | None = None,
        n_jobs: int | None = None,
        rounding: str = DEFAULT_ROUNDING,
        trainer: str = DEFAULT_TRAINER,
    ) -> None:
        self.features = features
        self.n_trees = n_trees
        self.seed = seed
        self.class_names = class_names
        self.class_colors = class_colors
        self.n_jobs = n_jobs
        self.rounding = rounding
        self.trainer = trainer

    @property
    def selection_(self) -> FeatureSelection:
        """The feature selection in use: ``features``, or every feature when it is None."""
        return self._selection()

    # ------------------------------------------------------------------ helpers
    def _selection(self) -> FeatureSelection:
        sel = FeatureSelection.all() if self.features is None else self.features
        if not isinstance(sel, FeatureSelection):
            raise InputError(f"features must be a FeatureSelection, not {type(sel).__name__}")
        return sel

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise InputError("this PixelClassifier is not trained yet; call fit() or load()")

    def _features(self, image: np.ndarray, axes: str) -> np.ndarray:
        return compute_features(image, self._selection(), axes=axes, rounding=self.rounding,
                                n_jobs=self.n_jobs)

    def _banded(self, ndim: int) -> bool:
        # 2-D fast features are produced band by band and fed to the forest while in cache
        return self.rounding == "fast" and ndim == 2

    def _tile_size(self, ndim: int, image: np.ndarray) -> int:
        """Tile edge whose features (with halo) take about ``_TILE_BYTES``."""
        selection = self._selection()
        if self._banded(ndim):  # only the pre-smoothed planes exist for a whole tile
            n_scales = len({j for _, j, _ in selection.blocks(2, 1)})
            per_pixel = 4 * n_scales * image.shape[-1]
        else:
            depth = image.shape[0] if ndim == 3 else 1
            per_pixel = 4 * selection.n_channels(image.shape[-1], ndim) * depth
        edge = int(math.sqrt(_TILE_BYTES / per_pixel))
        return max(64, edge - 2 * feature_halo(selection))

    def _tiles(self, image: np.ndarray, axes: str, tile: int, halo: int,
               consume: Any, pool: ThreadPoolExecutor | None, rows: Any = None) -> None:
        """Features of every tile's core, in pieces: ``consume(core_index, features)``.

        ``core_index`` indexes the image's spatial axes; ``features`` holds the features of
        exactly those pixels (computed with the tile's halo, so they equal whole-image
        features). ``rows(core)`` may narrow a tile to the y range that is needed
        (``(y0, y1)`` within the core, or None to skip the tile).
        """
        ndim = image.ndim - 1
        for window in windows(image.shape[:-1], tile, halo, "even"):
            core, outer, inner = window.core, window.outer, window.inner
            span = (core[-2].start, core[-2].stop) if rows is None else rows(core)
            if span is None:
                continue
            if not self._banded(ndim):
                feats = self._features(image[outer], axes)
                consume(core, feats[inner])
                continue
            bands = feature_bands(image[outer], self._selection(), axes=axes,
                                  n_jobs=resolve_n_jobs(self.n_jobs))
            oy = outer[-2].start

            def band(y0: int, y1: int, feats: np.ndarray, core: Any = core, inner: Any = inner,
                     oy: int = oy) -> None:
                consume((slice(oy + y0, oy + y1), core[-1]), feats[:, inner[-1]])

            bands.map(band, rows=(span[0] - oy, span[1] - oy), pool=pool)

    def _pool(self) -> ThreadPoolExecutor | None:
        n = resolve_n_jobs(self.n_jobs)
        return ThreadPoolExecutor(n) if n > 1 else None

    def _check_image(self, image: Any, name: str = "image") -> tuple[np.ndarray, str]:
        self._check_fitted()
        image, axes = _canonical(image, name)
        ndim = image.ndim - 1
        if ndim != self.ndim_:
            raise InputError(f"{name} is {ndim}-D ({axes}) but the model was trained on "
                             f"{self.ndim_}-D images")
        if image.shape[-1] != self.n_input_channels_:
            raise InputError(f"{name} has {image.shape[-1]} channel(s) but the model was trained "
                             f"on {self.n_input_channels_}-channel images")
        return image, axes

    # ------------------------------------------------------------------ training
    def fit(self, images: Any, labels: Any) -> PixelClassifier:
        """Train on one or several images and their sparse label images.

        Parameters
        ----------
        images : array or list of arrays
            ``yx``, ``yxc`` or ``zyxc`` images (all with the same number of channels and
            spatial dimensions); integer or float pixels, never normalised.
        labels : array or list of arrays
            One label image per image, same spatial shape (an extra channel axis of size 1
            is allowed): 0 = unlabelled, 1..N = classes (at most 255).

        Returns
        -------
        self
        """
        images, labels = _as_list(images), _as_list(labels)
        if len(images) != len(labels):
            raise InputError(f"{len(images)} image(s) but {len(labels)} label image(s)")
        if not images:
            raise InputError("no training images given")
        if self.rounding not in ROUNDINGS:
            raise InputError(f"rounding must be one of {ROUNDINGS}, not {self.rounding!r}")
        selection = self._selection()
        halo = feature_halo(selection)
        # Check everything cheap first, so that bad input fails before any feature work.
        pairs, dtypes, present = [], [], set()
        ndim = n_channels = None
        for k, (image, lab) in enumerate(zip(images, labels)):
            name = f"image {k + 1}" if len(images) > 1 else "image"
            image, axes = _canonical(image, name)
            if ndim is None:
                ndim, n_channels = image.ndim - 1, image.shape[-1]
            elif (image.ndim - 1, image.shape[-1]) != (ndim, n_channels):
                raise InputError(f"{name} is {image.ndim - 1}-D with {image.shape[-1]} channel(s) "
                                 f"but image 1 is {ndim}-D with {n_channels}; training images "
                                 f"must agree")
            lab = _check_labels(lab, image.shape[:-1], f"label image {k + 1}")
            dtypes.append(str(image.dtype))
            counts = np.bincount(lab.ravel(), minlength=256)
            present.update(int(c) for c in np.nonzero(counts[1:])[0] + 1)
            pairs.append((image, axes, lab))
        if not present:
            raise InputError("the label images hold no labels (every pixel is 0 = unlabelled); "
                             "label some pixels of at least two classes")
        if len(present) < 2:
            raise InputError(f"only one class (label {present.pop()}) is labelled; a classifier "
                             f"needs labels of at least two classes")
        n_classes = max(present)
        names = list(self.class_names) if self.class_names is not None else None
        if names is not None:
            if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                raise InputError(f"class_names must be distinct strings, not {names!r}")
            if len(names) < n_classes:
                raise InputError(f"label value {n_classes} is used but only {len(names)} class "
                                 f"name(s) are given: {names}")
            n_classes = len(names)
        else:
            names = default_class_names(n_classes)
        colors = check_colors(self.class_colors, n_classes)

        xs, ys = [], []
        pool = self._pool() if self._banded(ndim) else None
        try:
            for image, axes, lab in pairs:
                if lab.any():
                    x_img, y_img = self._labelled_features(image, axes, lab, halo, pool)
                    xs.append(x_img)
                    ys.append(y_img)
        finally:
            if pool is not None:
                pool.shutdown()
        X, y = np.concatenate(xs), np.concatenate(ys)
        seed = resolve_seed(self.seed)
        self.forest_: FlatForest = train_forest(X, y.astype(np.int64), n_trees=self.n_trees,
                                                seed=seed, n_jobs=self.n_jobs, backend=self.trainer)
        self.seed_ = seed
        self.n_classes_ = n_classes
        self.classes_ = np.array(sorted(present), dtype=np.int64)
        self.class_names_ = names
        self.class_colors_ = colors
        self.ndim_ = int(ndim)
        self.n_input_channels_ = int(n_channels)
        self.feature_names_ = feature_names(selection, self.n_input_channels_, self.ndim_)
        counts = {str(c): int(np.count_nonzero(y == c)) for c in sorted(present)}
        self.training_info_ = {
            "n_images": len(images), "n_samples": int(y.size), "samples_per_class": counts,
            "input_dtypes": sorted(set(dtypes)),
            # what the images held, so that prediction can warn about unlike inputs
            "value_range": value_range(images),
        }
        return self

    def _labelled_features(self, image: np.ndarray, axes: str, lab: np.ndarray, halo: int,
                           pool: ThreadPoolExecutor | None) -> tuple[np.ndarray, np.ndarray]:
        """Feature vectors and labels of the labelled pixels of one image, in row-major order.

        Features are computed tile by tile and, within a tile, only for the rows that hold
        labels (memory stays bounded, unlabelled areas cost nothing); samples are put back in
        the row-major order of the whole image, so the forest depends on neither.
        """
        idx, xs, ys = [], [], []
        lock = threading.Lock()

        def rows(core: Any) -> tuple[int, int] | None:
            hit = np.nonzero(lab[core].reshape(-1, *lab[core].shape[-2:]).any(axis=(0, 2)))[0]
            if hit.size == 0:
                return None
            return core[-2].start + int(hit[0]), core[-2].start + int(hit[-1]) + 1

        def consume(core: Any, feats: np.ndarray) -> None:
            mask = lab[core] > 0
            coords = [c + s_.start for c, s_ in zip(np.nonzero(mask), core)]
            with lock:
                xs.append(feats[mask])
                ys.append(lab[core][mask])
                idx.append(np.ravel_multi_index(coords, lab.shape))

        self._tiles(image, axes, self._tile_size(image.ndim - 1, image), halo, consume, pool, rows)
        order = np.argsort(np.concatenate(idx), kind="stable")
        return np.concatenate(xs)[order], np.concatenate(ys)[order]

    # ------------------------------------------------------------------ prediction
    def transform(self, image: Any) -> np.ndarray:
        """The feature channels of ``image`` (ilastik's "Features" export), float32."""
        image, axes = self._check_image(image)
        return self._features(image, axes)

    def predict_proba(self, image: Any, *, tile_size: int | None = None) -> np.ndarray:
        """Class probabilities of every pixel (ilastik's Probabilities).

        Parameters
        ----------
        image : array
            ``yx``, ``yxc`` or ``zyxc``, with the training images' channels and dimensions.
        tile_size : int, optional
            Edge of the y/x tiles the image is processed in (features of one tile plus its
            halo at a time, which bounds memory); the result does not depend on it. Default:
            tiles whose features take about 256 MB.

        Returns
        -------
        float32 array, shape spatial + (N,)
            Channel ``i`` is label ``i + 1``; rows sum to 1; multiples of 1/n_trees.
        """
        return self._predict(image, tile_size, labels=False)

    def predict(self, image: Any, *, tile_size: int | None = None) -> np.ndarray:
        """Simple Segmentation: uint8 class 1..N of every pixel (argmax + 1, ties → lower).

        Equal to ``simple_segmentation(self.predict_proba(image))``, computed without the
        probabilities: a pixel's trees stop as soon as the rest cannot change its class
        (:meth:`pyquint.forest.FlatForest.predict`).
        """
        return self._predict(image, tile_size, labels=True)

    def uncertainty(self, image: Any) -> np.ndarray:
        """Uncertainty ``1 − (p1 − p2)`` of every pixel, float32 (0 everywhere for N = 1)."""
        return uncertainty_from_proba(self.predict_proba(image))

    def predict_sources(self, image: Any, sources: Any) -> dict[str, np.ndarray]:
        """ilastik's export sources of one image, each with channels last.

        Parameters
        ----------
        image : array
            As in :meth:`predict_proba`.
        sources : sequence of str
            Any of :data:`pyquint.export.EXPORT_SOURCES` ("Probabilities", "Simple
            Segmentation", "Uncertainty", "Features", "Labels").

        Returns
        -------
        dict
            ``source → array`` (spatial + (channels,)): Probabilities float32 (N channels),
            Simple Segmentation uint8, Uncertainty float32, Features float32, Labels uint8 (all
            0: prediction inputs carry no labels, as in ilastik's batch mode). Features are
            computed once; when only the segmentation is asked for, no probabilities are made.
        """
        image, _ = self._check_image(image)
        sources = list(dict.fromkeys(sources))
        unknown = [s for s in sources if s not in EXPORT_SOURCES]
        if unknown:
            raise InputError(f"unknown export source(s) {unknown}; choose from {list(EXPORT_SOURCES)}")
        out: dict[str, np.ndarray] = {}
        if "Features" in sources:  # one feature pass for the features and the forest
            feats = out["Features"] = self.transform(image)
            kw = {"n_classes": self.n_classes_, "n_jobs": self.n_jobs}
            out.update(forest_sources(sources, lambda: self.forest_.predict_proba(feats, **kw),
                                      lambda: self.forest_.predict(feats, **kw)))
        else:
            out.update(forest_sources(sources, lambda: self.predict_proba(image),
                                      lambda: self.predict(image)))
        if "Labels" in sources:
            out["Labels"] = np.zeros(image.shape[:-1] + (1,), np.uint8)
        return {s: out[s] for s in sources}

    def _predict(self, image: Any, tile_size: int | None, labels: bool) -> np.ndarray:
        image, axes = self._check_image(image)
        spatial = image.shape[:-1]
        halo = feature_halo(self._selection())
        if tile_size is None:
            tile_size = self._tile_size(self.ndim_, image)
        elif tile_size < 1:
            raise InputError(f"tile_size must be positive, not {tile_size}")
        if labels:
            out = np.empty(spatial, dtype=np.uint8)
            forest = self.forest_.predict
        else:
            out = np.empty(spatial + (self.n_classes_,), dtype=np.float32)
            forest = self.forest_.predict_proba
        banded = self._banded(self.ndim_)

        def consume(core: Any, feats: np.ndarray) -> None:
            # bands arrive in worker threads, one forest thread each; whole tiles use them all
            out[core] = forest(feats, n_classes=self.n_classes_, n_jobs=1 if banded else self.n_jobs)

        pool = self._pool() if banded else None
        try:
            self._tiles(image, axes, tile_size, halo, consume, pool)
        finally:
            if pool is not None:
                pool.shutdown()
        return out

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """What the model file records besides the forest (JSON-able)."""
        self._check_fitted()
        return {
            "features": self._selection().to_dict(),
            "rounding": self.rounding,
            "trainer": self.trainer,
            "n_trees": int(self.forest_.n_trees),
            "seed": int(self.seed_),
            "n_classes": int(self.n_classes_),
            "class_names": list(self.class_names_),
            "class_colors": [list(c) for c in self.class_colors_],
            "n_input_channels": int(self.n_input_channels_),
            "ndim": int(self.ndim_),
            "feature_names": list(self.feature_names_),
            "training": dict(self.training_info_),
            "pyquint_version": __version__,
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the trained classifier to a model file (HDF5, no pickle), atomically; an
        existing file is an :class:`InputError` unless ``overwrite``."""
        return save_model(path, "pixel", self.forest_, self.metadata(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PixelClassifier:
        """Read a classifier written by :meth:`save`; raises ModelFileError if invalid."""
        forest, meta = load_model(path, expected_kind="pixel")
        where = str(path)
        try:
            selection = FeatureSelection.from_dict(meta["features"])
            ndim, n_in = int(meta["ndim"]), int(meta["n_input_channels"])
            n_classes = int(meta["n_classes"])
            names = meta["class_names"]
            colors = check_colors(meta["class_colors"], n_classes)
            rounding = meta.get("rounding", DEFAULT_ROUNDING)
            seed = int(meta["seed"])
        except KeyError as exc:
            raise ModelFileError(f"{where}: metadata lacks {exc}") from exc
        except (InputError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: invalid metadata: {exc}") from exc
        if ndim not in (2, 3) or n_in < 1 or not 1 <= n_classes <= 255:
            raise ModelFileError(f"{where}: invalid ndim/channels/classes in metadata")
        if rounding not in ROUNDINGS:
            raise ModelFileError(f"{where}: unknown rounding {rounding!r}")
        if (not isinstance(names, list) or len(names) != n_classes
                or not all(isinstance(n, str) for n in names)):
            raise ModelFileError(f"{where}: class_names must be {n_classes} strings")
        trainer = meta.get("trainer", "sklearn")  # files before the "trainer" key: sklearn
        if trainer not in ("sklearn", "fast"):
            raise ModelFileError(f"{where}: unknown trainer {trainer!r}")
        info = meta.get("training", {}) if isinstance(meta.get("training"), dict) else {}
        try:  # from_forest checks that the forest fits the features and the classes
            return cls.from_forest(forest, features=selection, ndim=ndim, n_input_channels=n_in,
                                   class_names=names, class_colors=colors, rounding=rounding,
                                   seed=seed, trainer=trainer, training_info=info)
        except InputError as exc:
            raise ModelFileError(f"{where}: invalid metadata: {exc}") from exc

    @classmethod
    def from_forest(
        cls,
        forest: FlatForest,
        *,
        features: FeatureSelection,
        ndim: int,
        n_input_channels: int,
        class_names: Sequence[str] | None = None,
        class_colors: Sequence[Sequence[int]] | None = None,
        rounding: str = DEFAULT_ROUNDING,
        seed: int = 0,
        trainer: str = DEFAULT_TRAINER,
        training_info: dict | None = None,
        n_jobs: int | None = None,
    ) -> PixelClassifier:
        """A fitted classifier around a forest trained elsewhere (a model file, an ilastik
        project's stored vigra forest): the one way, besides :meth:`fit`, to a fitted one.

        Parameters
        ----------
        forest : FlatForest
            Its classes are label values ``1..N`` and it expects the features ``features``
            give for ``n_input_channels``-channel ``ndim``-D images.
        features, rounding, n_jobs, trainer
            As in the constructor (``trainer`` records how the forest was grown).
        ndim : {2, 3}
        n_input_channels : int
        class_names, class_colors : optional
            N names/colours (default: as many as the forest's largest class).
        seed : int
            Recorded as ``seed_``.
        training_info : dict, optional
            Recorded as ``training_info_``.

        Raises
        ------
        InputError
            When the forest does not fit the features or the classes.
        """
        if not isinstance(forest, FlatForest):
            raise InputError(f"forest must be a FlatForest, not {type(forest).__name__}")
        n_classes = len(class_names) if class_names is not None else int(forest.classes.max())
        names = list(class_names) if class_names is not None else default_class_names(n_classes)
        colors = check_colors(class_colors, n_classes)
        clf = cls(features=features, n_trees=forest.n_trees, seed=seed, class_names=names,
                  class_colors=colors, n_jobs=n_jobs, rounding=rounding, trainer=trainer)
        selection = clf._selection()
        if ndim not in (2, 3) or n_input_channels < 1:
            raise InputError(f"ndim must be 2 or 3 and n_input_channels ≥ 1, not {ndim}, "
                             f"{n_input_channels}")
        if selection.n_channels(n_input_channels, ndim) != forest.n_features:
            raise InputError(f"the feature selection gives "
                             f"{selection.n_channels(n_input_channels, ndim)} channels for "
                             f"{n_input_channels}-channel {ndim}-D images but the forest "
                             f"expects {forest.n_features}")
        if np.any((forest.classes < 1) | (forest.classes > n_classes)):
            raise InputError(f"forest classes {forest.classes.tolist()} are not within "
                             f"1..{n_classes}")
        clf.forest_ = forest
        clf.seed_ = int(seed)
        clf.n_classes_ = n_classes
        clf.classes_ = forest.classes.copy()
        clf.class_names_ = names
        clf.class_colors_ = colors
        clf.ndim_ = int(ndim)
        clf.n_input_channels_ = int(n_input_channels)
        clf.feature_names_ = feature_names(selection, clf.n_input_channels_, clf.ndim_)
        clf.training_info_ = dict(training_info or {})
        return clf
