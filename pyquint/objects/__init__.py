"""Object classification as ilastik does it: threshold + size filter, object features, forest.

- :func:`threshold_objects`: ilastik's "Threshold and Size Filter" on a probability map.
- :func:`compute_object_features`: object features with ilastik's ids and display names.
- :class:`ObjectClassifier`: a random forest over objects (cells vs. artefacts).
- :mod:`pyquint.objects.export`: Object Predictions/Probabilities/Identities and the
  ``{nickname}_table.csv`` table.
"""

from __future__ import annotations

from .classifier import ObjectClassifier
from .features import (
    DEFAULT_FEATURES,
    FEATURES,
    FeatureInfo,
    column_names,
    compute_object_features,
    feature_matrix,
)
from .threshold import (
    gaussian_kernel,
    load_probabilities,
    normalize_probabilities,
    size_filter,
    smooth,
    threshold_objects,
)

__all__ = [
    "DEFAULT_FEATURES",
    "FEATURES",
    "FeatureInfo",
    "ObjectClassifier",
    "column_names",
    "compute_object_features",
    "feature_matrix",
    "gaussian_kernel",
    "load_probabilities",
    "normalize_probabilities",
    "size_filter",
    "smooth",
    "threshold_objects",
]

