"""``rounding="vigra"``: ilastik's vigra code path (double passes, vigra's structure tensor
scales), checked against scipy.ndimage built independently from the same definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from pyquint.features import FeatureSelection, compute_features, feature_names
from pyquint.features._vigra import vigra_kernel


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.normal(100, 40, shape), 1.5).astype(np.float32)


@pytest.mark.parametrize("sigma, window", [(0.3, 3.5), (1.0, 2.0), (4.9, 3.5)])
def test_kernels_follow_vigra_normalisation(sigma: float, window: float) -> None:
    r = int(window * sigma + 0.5)
    x = np.arange(-r, r + 1)
    k0, k1, k2 = (vigra_kernel(sigma, o, window) for o in (0, 1, 2))
    assert len(k0) == 2 * r + 1
    assert np.isclose(k0.sum(), 1.0, atol=1e-15) and np.allclose(k0, k0[::-1])
    assert np.isclose((k1 * x).sum(), 1.0) and np.allclose(k1, -k1[::-1])
    assert np.isclose(k2.sum(), 0.0, atol=1e-15) and np.isclose((k2 * x * x).sum(), 2.0)
    # order 0 is scipy's sampled Gaussian with truncate = window
    e = np.exp(-x * x / (2 * sigma * sigma))
    assert np.allclose(k0, e / e.sum(), rtol=1e-14)


def test_smoothing_equals_scipy_two_stages() -> None:
    img = _image((40, 52))
    matrix = np.zeros((6, 3), bool)
    matrix[0, :] = True
    sel = FeatureSelection(matrix, (0.7, 1.6, 3.5))
    got = compute_features(img, sel, rounding="vigra")
    for j, s in enumerate((0.7, 1.6, 3.5)):
        pre = s if s <= 1 else np.sqrt(s * s - 1)
        p = ndi.gaussian_filter(img.astype(np.float64), pre, truncate=3.5, mode="mirror")
        want = ndi.gaussian_filter(p.astype(np.float32).astype(np.float64), min(s, 1.0), truncate=2.0,
                                   mode="mirror").astype(np.float32)
        np.testing.assert_allclose(got[..., j], want, rtol=2e-7, atol=2e-6)


def test_structure_tensor_uses_vigra_scales_and_other_features_agree() -> None:
    img = _image((36, 44), seed=1)
    matrix = np.zeros((6, 2), bool)
    matrix[:, :] = True
    sel = FeatureSelection(matrix, (0.7, 1.6))
    vig = compute_features(img, sel, rounding="vigra")
    ff = compute_features(img, sel, rounding="exact")
    names = feature_names(sel, 1, 2)
    ste = [i for i, n in enumerate(names) if n.startswith("Structure Tensor")]
    rest = [i for i in range(len(names)) if i not in ste]
    # everything but the structure tensor is the same recipe: only rounding differs
    np.testing.assert_allclose(vig[..., rest], ff[..., rest], rtol=1e-4, atol=1e-3)
    # the structure tensor: gradient at σ' and smoothing at σ'/2 (fastfilters swaps them)
    p = ndi.gaussian_filter(img.astype(np.float64), 0.7, truncate=3.5, mode="mirror")
    p = p.astype(np.float32).astype(np.float64)

    def conv(a, kx, ky):
        return ndi.correlate1d(ndi.correlate1d(a, kx, axis=1, mode="mirror"), ky, axis=0, mode="mirror")

    d1, d0 = vigra_kernel(0.7, 1, 2.0), vigra_kernel(0.7, 0, 2.0)
    gx, gy = conv(p, d1, d0), conv(p, d0, d1)
    sm = vigra_kernel(0.35, 0, 2.0)
    xx, yy, xy = conv(gx * gx, sm, sm), conv(gy * gy, sm, sm), conv(gx * gy, sm, sm)
    big = 0.5 * (xx + yy) + 0.5 * np.sqrt((xx - yy) ** 2 + 4 * xy * xy)
    np.testing.assert_allclose(vig[..., ste[0]], big, rtol=1e-5, atol=1e-4)
    assert np.abs(ff[..., ste[0]] - big).max() > 10 * np.abs(vig[..., ste[0]] - big).max()


def test_vigra_rounding_3d_and_2d_slices() -> None:
    vol = _image((6, 20, 24), seed=2)
    matrix = np.zeros((6, 2), bool)
    matrix[[0, 5], :] = True
    sel3 = FeatureSelection(matrix, (0.7, 1.6), compute_in_2d=(False, True))
    got = compute_features(vol[..., None], sel3, axes="zyxc", rounding="vigra")
    ff = compute_features(vol[..., None], sel3, axes="zyxc", rounding="exact")
    assert got.shape == ff.shape == vol.shape + (1 + 1 + 3 + 2,)
    np.testing.assert_allclose(got, ff, rtol=1e-4, atol=1e-3)
