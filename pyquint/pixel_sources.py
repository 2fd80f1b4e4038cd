"""Helpers of pixel classification: class defaults, input checks, probabilities → export sources.

:func:`sources_from_proba` is the one place where ilastik's result types are derived from
probabilities (Simple Segmentation = argmax + 1, Uncertainty = 1 − (p1 − p2)); every
prediction path (whole images, tiles, Dask chunks, batches) calls it. Everything here is
re-exported by :mod:`pyquint.pixel`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "ILASTIK_LABEL_COLORS",
    "PROBABILITY_SOURCES",
    "check_colors",
    "default_class_colors",
    "default_class_names",
    "forest_sources",
    "needs_probabilities",
    "simple_segmentation",
    "sources_from_proba",
    "uncertainty_from_proba",
]

#: ilastik's default label colours (volumina ``default16_new`` without its transparent 0):
#: label 1 yellow, 2 blue, 3 red, ... (as stored in ``PixelClassification/LabelColors``).
ILASTIK_LABEL_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 225, 25), (0, 130, 200), (230, 25, 75), (70, 240, 240), (60, 180, 75),
    (250, 190, 190), (170, 110, 40), (145, 30, 180), (0, 128, 128), (245, 130, 48),
    (240, 50, 230), (210, 245, 60), (255, 215, 180), (230, 190, 255), (128, 128, 128),
)
#: Export sources that need the forest's probabilities (the segmentation alone does not).
PROBABILITY_SOURCES = ("Probabilities", "Uncertainty")


# --------------------------------------------------------------------------- classes
def default_class_names(n_classes: int) -> list[str]:
    """ilastik's default names: ``Label 1``, ``Label 2``, ..."""
    return [f"Label {i + 1}" for i in range(n_classes)]


def default_class_colors(n_classes: int) -> list[tuple[int, int, int]]:
    """ilastik's default label colours for ``n_classes`` classes (cycling after 15)."""
    return [ILASTIK_LABEL_COLORS[i % len(ILASTIK_LABEL_COLORS)] for i in range(n_classes)]


def _check_proba(proba: np.ndarray) -> np.ndarray:
    proba = np.asarray(proba)
    if proba.ndim < 2 or proba.shape[-1] < 1 or proba.dtype.kind != "f":
        raise InputError(f"probabilities must be a float array with classes on the last axis, "
                         f"not {proba.dtype} of shape {proba.shape}")
    return proba


def simple_segmentation(proba: np.ndarray) -> np.ndarray:
    """ilastik's Simple Segmentation: ``argmax + 1`` over the last axis, as uint8.

    Ties go to the lower class (the first maximum); an all-zero row becomes 1.

    Parameters
    ----------
    proba : float array, shape spatial + (N,)

    Returns
    -------
    uint8 array, shape spatial, values 1..N
    """
    proba = _check_proba(proba)
    if proba.shape[-1] > 255:
        raise InputError(f"{proba.shape[-1]} classes do not fit a uint8 segmentation")
    return (np.argmax(proba, axis=-1) + 1).astype(np.uint8)


def uncertainty_from_proba(proba: np.ndarray) -> np.ndarray:
    """ilastik's Uncertainty: ``1 − (p_max − p_second)`` over the last axis, float32.

    All zeros when there is a single class.

    Parameters
    ----------
    proba : float array, shape spatial + (N,)

    Returns
    -------
    float32 array, shape spatial
    """
    proba = _check_proba(proba)
    if proba.shape[-1] == 1:
        return np.zeros(proba.shape[:-1], dtype=np.float32)
    top2 = np.partition(proba, proba.shape[-1] - 2, axis=-1)[..., -2:]
    # float32 arithmetic, as ilastik's OpEnsembleMargin computes on float32 probabilities
    return (np.float32(1) - (top2[..., 1].astype(np.float32) - top2[..., 0].astype(np.float32))
            ).astype(np.float32)


def needs_probabilities(sources: Iterable[str]) -> bool:
    """True when ``sources`` ask for a result that needs the class probabilities."""
    return bool(set(PROBABILITY_SOURCES) & set(sources))


def sources_from_proba(proba: np.ndarray, sources: Any) -> dict[str, np.ndarray]:
    """The export sources that follow from probabilities, channels last.

    "Probabilities" (``proba`` itself), "Simple Segmentation" (uint8 argmax + 1) and
    "Uncertainty" (float32); other names in ``sources`` are ignored.
    """
    out: dict[str, np.ndarray] = {}
    if "Probabilities" in sources:
        out["Probabilities"] = proba
    if "Simple Segmentation" in sources:
        out["Simple Segmentation"] = simple_segmentation(proba)[..., np.newaxis]
    if "Uncertainty" in sources:
        out["Uncertainty"] = uncertainty_from_proba(proba)[..., np.newaxis]
    return out


def forest_sources(sources: Iterable[str], probabilities: Callable[[], np.ndarray],
                   segmentation: Callable[[], np.ndarray]) -> dict[str, np.ndarray]:
    """The forest's export sources among ``sources`` from one forest pass.

    ``probabilities()`` is called when a source needs them (the segmentation then follows
    from them); otherwise ``segmentation()`` (the forest's early-stopping class vote) when
    Simple Segmentation is asked for; neither for Features/Labels alone.
    """
    sources = list(sources)
    if needs_probabilities(sources):
        return sources_from_proba(probabilities(), sources)
    if "Simple Segmentation" in sources:
        return {"Simple Segmentation": segmentation()[..., np.newaxis]}
    return {}


# --------------------------------------------------------------------------- inputs
def _canonical(image: Any, name: str) -> tuple[np.ndarray, str]:
    """An image as ``yxc`` or ``zyxc`` (2-D input is ``yx``), validated."""
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} is not an array: {exc}") from exc
    if image.dtype.kind not in "uifb":
        raise InputError(f"{name}: unsupported pixel type {image.dtype}; use integer or float pixels")
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim not in (3, 4):
        raise InputError(f"{name} must be 2-D (yx), 3-D (yxc) or 4-D (zyxc), not shape {image.shape}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        bad = int(image.size - np.count_nonzero(np.isfinite(image)))
        raise InputError(f"{name}: {bad} pixel(s) are NaN or infinite")
    if min(image.shape) == 0:
        raise InputError(f"{name} is empty (shape {image.shape})")
    return image, ("yxc" if image.ndim == 3 else "zyxc")


def _check_labels(labels: Any, spatial: tuple[int, ...], name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape == spatial + (1,):
        labels = labels[..., 0]
    if labels.shape != spatial:
        raise InputError(f"{name} has shape {labels.shape} but its image's spatial shape is "
                         f"{spatial}; label images must match their image pixel for pixel")
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    elif labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError(f"{name}: label values must be whole numbers (0 = unlabelled, 1..N)")
    elif labels.dtype.kind not in "ui":
        raise InputError(f"{name}: unsupported label type {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InputError(f"{name}: negative label values; use 0 = unlabelled and 1..N for classes")
    if labels.size and labels.max() > 255:
        raise InputError(f"{name}: label value {labels.max()} is above 255; ilastik label "
                         f"images are uint8 (classes 1..255)")
    return labels.astype(np.uint8)


def _as_list(obj: Any) -> list[Any]:
    if isinstance(obj, np.ndarray) or not isinstance(obj, (list, tuple)):
        return [obj]
    return list(obj)


def check_colors(colors: Any, n_classes: int) -> list[tuple[int, int, int]]:
    """``n_classes`` (r, g, b) integer triples from ``colors`` (default ilastik's), validated."""
    if colors is None:
        return default_class_colors(n_classes)
    try:
        arr = np.asarray(colors)
    except ValueError as exc:
        raise InputError(f"class colours must be (r, g, b) triples: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "ui":
        raise InputError(f"class colours must be (r, g, b) integer triples, not {colors!r}")
    if arr.shape[0] < n_classes:
        raise InputError(f"{arr.shape[0]} class colour(s) given for {n_classes} classes")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError("class colour components must be within 0..255")
    return [tuple(int(v) for v in row) for row in arr[:n_classes]]
