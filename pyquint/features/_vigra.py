"""``rounding="vigra"``: ilastik's features as its vigra code path computed them (ilastik 1.2).

Before fastfilters was found, ilastik's ``OpPixelFeaturesPresmoothed`` (lazyflow
``operators/vigraOperators.py`` until May 2018) fell back to vigra's filters. They differ from
fastfilters in two ways that show in a project's stored forest:

- the structure tensor takes ilastik's scales as vigra defines them: the gradient at the inner
  scale σ' and the tensor smoothed at the outer scale σ'/2 (fastfilters swaps the two);
- kernels are double, every 1-D pass accumulates in double and only the filter's result is
  stored as float32 (the pre-smoothed image too, which ilastik keeps in a float32 array).

The recipe is otherwise the same two stages (pre-smoothing window 3.5, features at σ' = min(σ, 1)
with window 2, DoG at 0.66·σ', mirror borders), so this module reuses the selection's rules and
writes channels in the same order as :func:`pyquint.features.compute_features`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._selection import (
    FILTER_WINDOW,
    PRESMOOTH_WINDOW,
    FeatureSelection,
    filter_sigma,
    presmooth_sigma,
)

__all__ = ["vigra_features", "vigra_kernel"]


@lru_cache(maxsize=256)
def vigra_kernel(sigma: float, order: int, window: float) -> np.ndarray:
    """vigra's ``initGaussian`` / ``initGaussianDerivative`` kernel (double), taps ``-r..r``.

    Radius ``int(window·σ + 0.5)``; order 0 sums to 1, order 1 has ``Σ k(x)·x = 1`` (the sign
    never matters: magnitudes and products of two first derivatives), order 2 has its mean
    removed and ``Σ k(x)·x² = 2``.
    """
    r = int(window * sigma + 0.5) if sigma >= 1e-6 else 0
    x = np.arange(-r, r + 1, dtype=np.float64)
    e = np.exp(-(x * x) / (2.0 * sigma * sigma)) if r else np.ones(1)
    if order == 0:
        k = e / e.sum()
    elif order == 1:
        k = x * e
        k = k / (k * x).sum()
    else:
        k = (x * x / (sigma * sigma) - 1.0) * e
        k = k - k.mean()
        k = k / ((k * x * x).sum() / 2.0)
    k.setflags(write=False)
    return k


def _filter(img: np.ndarray, orders: tuple[int, ...], sigma: float, window: float) -> np.ndarray:
    """Separable Gaussian (derivative) filter in double, mirror borders, x first."""
    from scipy.ndimage import correlate1d

    out = np.asarray(img, dtype=np.float64)
    for axis in reversed(range(out.ndim)):  # x (last axis) first, as vigra's x-first arrays
        out = correlate1d(out, vigra_kernel(sigma, orders[axis], window), axis=axis, mode="mirror")
    return out


def _eig(tensor: list[np.ndarray], nd: int) -> list[np.ndarray]:
    """Eigenvalues, descending, computed in double from float32 tensor components."""
    t = [c.astype(np.float32).astype(np.float64) for c in tensor]  # vigra stores the tensor as float
    if nd == 2:
        xx, yy, xy = t
        mean = 0.5 * (xx + yy)
        d = 0.5 * np.hypot(xx - yy, 2.0 * xy)
        return [(mean + d).astype(np.float32), (mean - d).astype(np.float32)]
    xx, yy, zz, xy, xz, yz = t
    m = np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1),
                  np.stack([xz, yz, zz], -1)], -2)
    ev = np.linalg.eigvalsh(m)[..., ::-1]
    return [ev[..., i].astype(np.float32) for i in range(3)]


def _stage2(p: np.ndarray, fid: str, s: float) -> list[np.ndarray]:
    nd, w = p.ndim, FILTER_WINDOW

    def f(axis_orders: dict[int, int], sigma: float = s) -> np.ndarray:  # axis 0 = x
        orders = tuple(axis_orders.get(nd - 1 - a, 0) for a in range(nd))
        return _filter(p, orders, sigma, w)

    f32 = np.float32
    if fid == "GaussianSmoothing":
        return [f({}).astype(f32)]
    if fid == "DifferenceOfGaussians":
        return [f({}).astype(f32) - f({}, 0.66 * s).astype(f32)]
    if fid == "LaplacianOfGaussian":
        return [sum(f({a: 2}) for a in range(nd)).astype(f32)]
    if fid == "GaussianGradientMagnitude":
        return [np.sqrt(sum(f({a: 1}) ** 2 for a in range(nd))).astype(f32)]
    if fid == "HessianOfGaussianEigenvalues":
        if nd == 2:
            return _eig([f({0: 2}), f({1: 2}), f({0: 1, 1: 1})], 2)
        return _eig([f({0: 2}), f({1: 2}), f({2: 2}), f({0: 1, 1: 1}), f({0: 1, 2: 1}),
                     f({1: 1, 2: 1})], 3)
    if fid == "StructureTensorEigenvalues":  # vigra: gradient at inner σ', smoothing at σ'/2
        g = [f({a: 1}) for a in range(nd)]
        pairs = [(0, 0), (1, 1), (0, 1)] if nd == 2 else \
            [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
        return _eig([_filter(g[a] * g[b], (0,) * nd, 0.5 * s, w) for a, b in pairs], nd)
    raise ValueError(f"unknown feature id {fid!r}")  # pragma: no cover - validated earlier


def vigra_features(data: np.ndarray, selection: FeatureSelection) -> np.ndarray:
    """Features of a canonical float32 ``yxc`` / ``zyxc`` image (no ``t``), channels last.

    Channel order as :func:`pyquint.features.compute_features`: feature rows → selected scales
    → input channels → eigenvalue index. Validation is the caller's.
    """
    spatial = data.shape[:-1]
    nd, n_in = len(spatial), data.shape[-1]
    z_size = spatial[0] if nd == 3 else 1
    in2d = selection.in_2d(nd, z_size)
    channels: list[np.ndarray] = []
    cache: dict[tuple[int, int], np.ndarray] = {}

    def presmoothed(c: int, j: int) -> np.ndarray:
        if (c, j) not in cache:
            sigma, img = selection.scales[j], data[..., c]
            if nd == 3 and in2d[j]:  # slice by slice in yx
                planes = [_filter(img[z], (0, 0), presmooth_sigma(sigma), PRESMOOTH_WINDOW)
                          for z in range(img.shape[0])]
                cache[(c, j)] = np.stack(planes).astype(np.float32)
            else:
                cache[(c, j)] = _filter(img, (0,) * nd, presmooth_sigma(sigma),
                                        PRESMOOTH_WINDOW).astype(np.float32)
        return cache[(c, j)]

    for fid, j, _n in selection.blocks(nd, z_size):
        s = filter_sigma(selection.scales[j])
        for c in range(n_in):
            p = presmoothed(c, j)
            if nd == 3 and in2d[j]:
                per_z = [_stage2(p[z], fid, s) for z in range(p.shape[0])]
                channels.extend(np.stack([pz[e] for pz in per_z]) for e in range(len(per_z[0])))
            else:
                channels.extend(_stage2(p, fid, s))
    out = np.empty(spatial + (len(channels),), np.float32)
    for i, ch in enumerate(channels):
        out[..., i] = ch
    return out
