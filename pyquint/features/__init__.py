"""ilastik's pixel features, reproduced exactly (spec ``ilastik.md`` §1, §1b).

Six families (Gaussian Smoothing, Laplacian of Gaussian, Gaussian Gradient Magnitude,
Difference of Gaussians, Structure Tensor Eigenvalues, Hessian of Gaussian Eigenvalues) at
ilastik's scales, computed in two stages (pre-smoothing at ``sqrt(σ²−1)``, then the filter at
``min(σ, 1)``) with fastfilters' kernels, mirror borders and float32 rounding.

>>> import numpy as np
>>> from pyquint.features import FeatureSelection, compute_features, feature_names
>>> img = np.zeros((64, 64), np.uint8)
>>> compute_features(img, FeatureSelection.all(), axes="yx").shape
(64, 64, 49)
>>> feature_names(FeatureSelection.all())[0]
'Gaussian Smoothing (σ=0.3) in 2D'
"""

from ._compute import DEFAULT_ROUNDING, EXPORT_ROUNDING, ROUNDINGS, compute_features, feature_bands
from ._kernels import full_kernel, half_kernel, kernel_radius
from ._selection import (
    DEFAULT_SCALES,
    FEATURE_DISPLAY_NAMES,
    FEATURE_IDS,
    MINIMUM_SCALES,
    FeatureSelection,
    feature_halo,
    feature_names,
    filter_sigma,
    parse_selection,
    presmooth_sigma,
)

__all__ = [
    "DEFAULT_ROUNDING",
    "DEFAULT_SCALES",
    "EXPORT_ROUNDING",
    "FEATURE_DISPLAY_NAMES",
    "FEATURE_IDS",
    "MINIMUM_SCALES",
    "ROUNDINGS",
    "FeatureSelection",
    "compute_features",
    "feature_bands",
    "feature_halo",
    "feature_names",
    "filter_sigma",
    "full_kernel",
    "half_kernel",
    "kernel_radius",
    "parse_selection",
    "presmooth_sigma",
]
