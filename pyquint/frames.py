"""Time series for pixel classification: ilastik computes features per time point, never across ``t``.

A classifier works on ``yxc`` or ``zyxc`` images; these helpers run it on each frame of a
canonical ``tyxc`` / ``tzyxc`` array and stack the results back along ``t``, and split
training images and their labels into the frames that hold labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["frame_pairs", "frames", "predict_sources_by_frame"]


def frames(image: np.ndarray, axes: str) -> tuple[list[np.ndarray], str]:
    """The frames of a canonical image and their axes (the image itself when it has no ``t``).

    >>> parts, axes = frames(np.zeros((3, 4, 5, 1)), "tyxc")
    >>> len(parts), parts[0].shape, axes
    (3, (4, 5, 1), 'yxc')
    """
    axes = axes.lower()
    if "t" not in axes:
        return [image], axes
    if not axes.startswith("t"):
        raise InputError(f"time must be the first axis of a canonical image, not {axes!r}")
    return [image[i] for i in range(image.shape[0])], axes[1:]


def predict_sources_by_frame(
    classifier: Any, image: np.ndarray, axes: str, sources: Sequence[str]
) -> dict[str, np.ndarray]:
    """``classifier.predict_sources`` frame by frame, results stacked along ``t``.

    Parameters
    ----------
    classifier : pyquint.pixel.PixelClassifier
        Fitted on 2-D or 3-D images.
    image : ndarray
        Canonical (``yxc``, ``zyxc``, ``tyxc`` or ``tzyxc``).
    axes : str
        Axes of ``image``.
    sources : sequence of str
        Export sources.

    Returns
    -------
    dict
        ``source → array`` in ``axes`` order with the source's channels last.
    """
    parts, _ = frames(image, axes)
    if "t" not in axes.lower():
        return classifier.predict_sources(image, list(sources))
    results = [classifier.predict_sources(part, list(sources)) for part in parts]
    return {s: np.stack([r[s] for r in results]) for s in sources}


def frame_pairs(
    image: np.ndarray, axes: str, labels: np.ndarray
) -> list[tuple[int | None, np.ndarray, np.ndarray]]:
    """``(frame index or None, frame, frame labels)`` for every frame that holds labels.

    ``labels`` has the image's shape with one channel (or none); frames without a single
    labelled pixel are left out, so training draws samples from every labelled frame only.
    """
    if "t" not in axes.lower():
        return [(None, image, labels)] if np.any(labels) else []
    if labels.shape[0] != image.shape[0]:
        raise InputError(f"labels have {labels.shape[0]} time points but the image has {image.shape[0]}")
    return [(t, image[t], labels[t]) for t in range(image.shape[0]) if np.any(labels[t])]
