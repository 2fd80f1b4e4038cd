"""1-D kernels and separable passes with fastfilters' arithmetic (spec ilastik.md §1, §1b).

Kernels are stored as half-kernels ``c[0..r]`` (float32 taps computed in double): the full
correlation kernel is ``k(x) = c[|x|]`` (orders 0 and 2, symmetric) or ``k(x) = sign(x)·c[|x|]``
(order 1, antisymmetric). Three ways to apply a kernel along an axis:

``"exact"``
    fastfilters' AVX loop: ``acc = c0·x[i]`` (float32), then per tap the pair sum/difference is
    rounded to float32 and one fused multiply-add is done. A float32 FMA is emulated as
    ``float32(float64(a)·float64(b) + float64(acc))`` (the product of two float32 is exact in
    float64).
``"muladd"``
    the same loop with a float32 multiply, then a float32 add (builds without FMA, ilastik < 1.4).
``"fast"``
    OpenCV's float32 ``sepFilter2D`` (``BORDER_REFLECT_101``) for y/x, scipy for z: a few ulps
    away from the exact path, many times faster.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["half_kernel", "full_kernel", "kernel_radius", "correlate_axis"]


def kernel_radius(sigma: float, window: float) -> int:
    """fastfilters/vigra radius ``floor(window·σ + 0.5)`` (0 for σ < 1e-6)."""
    if sigma < 1e-6:
        return 0
    return int(math.floor(window * sigma + 0.5))


@lru_cache(maxsize=256)
def _half_kernel(sigma: float, order: int, window: float) -> tuple[float, ...]:
    r = kernel_radius(sigma, window)
    if order == 0 and r == 0:
        return (1.0,)
    if r == 0:
        raise ValueError(f"sigma {sigma} is too small for a derivative kernel (radius 0)")
    x = np.arange(r + 1, dtype=np.float64)
    if order == 0:
        g = np.exp(-(x * x) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    else:
        g = -np.exp(-(x * x) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma**3)
    if order == 0:
        c = g
        c = c / (c[0] + 2.0 * c[1:].sum())
    elif order == 1:
        c = x * g
        c = -(c / (-2.0 * (x * c).sum()))
    elif order == 2:
        c = (1.0 - x * x / (sigma * sigma)) * g
        c = c - (c[0] + 2.0 * c[1:].sum()) / (2 * r + 1)
        c = c / (c[1:] * x[1:] ** 2).sum()
    else:
        raise ValueError(f"derivative order {order} is not supported (0, 1 or 2)")
    return tuple(float(v) for v in c.astype(np.float32))


def half_kernel(sigma: float, order: int, window: float = 2.0) -> np.ndarray:
    """Half-kernel ``c[0..r]`` (float32) of a vigra/fastfilters Gaussian (derivative).

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels.
    order : {0, 1, 2}
        Derivative order. Order 0 sums to 1; order 1 is scaled so that ``Σ k(x)·x = 1``;
        order 2 has zero sum and ``Σ k(x)·x² = 2``.
    window : float
        Radius ``r = floor(window·σ + 0.5)``.
    """
    return np.array(_half_kernel(float(sigma), int(order), float(window)), dtype=np.float32)


def full_kernel(sigma: float, order: int, window: float = 2.0) -> np.ndarray:
    """The full correlation kernel ``k(-r..r)`` (float32), ``out[i] = Σ k(x)·in[i+x]``."""
    c = half_kernel(sigma, order, window)
    left = -c[:0:-1] if order == 1 else c[:0:-1]
    return np.concatenate([left, c]).astype(np.float32)


# --------------------------------------------------------------------------- passes
def _pad_mirror(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    # numpy's "reflect" does not repeat the edge pixel: scipy's "mirror", vigra's mirror.
    return np.pad(x, pad, mode="reflect")


def _sl(ndim: int, axis: int, start: int, stop: int) -> tuple[slice, ...]:
    idx = [slice(None)] * ndim
    idx[axis] = slice(start, stop)
    return tuple(idx)


def _correlate_rounded(x: np.ndarray, c: np.ndarray, antisym: bool, axis: int, fma: bool) -> np.ndarray:
    """One 1-D pass along ``axis`` with fastfilters' per-tap float32 rounding."""
    r = len(c) - 1
    acc = x * c[0]  # float32 product, as _mm256_mul_ps
    if r == 0:
        return acc
    n = x.shape[axis]
    xp = _pad_mirror(x, r, axis)
    pair = np.empty_like(x)
    wide = np.empty(x.shape, dtype=np.float64) if fma else None
    op = np.subtract if antisym else np.add
    for k in range(1, r + 1):
        op(xp[_sl(x.ndim, axis, r + k, r + k + n)], xp[_sl(x.ndim, axis, r - k, r - k + n)], out=pair)
        if fma:
            # float64 holds the float32×float32 product exactly; one rounding of the sum.
            np.multiply(pair, np.float64(c[k]), out=wide)
            np.add(wide, acc, out=wide)
            acc[...] = wide
        else:
            np.multiply(pair, c[k], out=pair)
            np.add(acc, pair, out=acc)
    return acc


def _correlate_fast(x: np.ndarray, c: np.ndarray, antisym: bool, axis: int) -> np.ndarray:
    from scipy.ndimage import correlate1d

    full = np.concatenate([(-c[:0:-1] if antisym else c[:0:-1]), c]).astype(np.float64)
    return correlate1d(x, full, axis=axis, mode="mirror", output=np.float32)


def correlate_axis(
    x: np.ndarray, c: np.ndarray, antisym: bool, axis: int, rounding: str = "exact"
) -> np.ndarray:
    """Correlate float32 ``x`` along ``axis`` with the half-kernel ``c`` (mirror borders).

    ``antisym`` selects the order-1 form ``k(-x) = -c[x]``. ``rounding`` is ``"exact"``
    (fastfilters with FMA), ``"muladd"`` (no FMA) or ``"fast"`` (scipy, float64 inside).
    """
    if rounding == "fast":
        return _correlate_fast(x, c, antisym, axis)
    return _correlate_rounded(x, c, antisym, axis, fma=(rounding == "exact"))


def sep_filter_2d_fast(img: np.ndarray, cx: np.ndarray, ax: bool, cy: np.ndarray, ay: bool) -> np.ndarray:
    """Separable 2-D correlation of each ``(..., y, x)`` plane with OpenCV, float32, mirror."""
    import cv2

    kx = np.concatenate([(-cx[:0:-1] if ax else cx[:0:-1]), cx]).astype(np.float32)
    ky = np.concatenate([(-cy[:0:-1] if ay else cy[:0:-1]), cy]).astype(np.float32)
    img = np.ascontiguousarray(img, dtype=np.float32)
    if img.ndim == 2:
        return cv2.sepFilter2D(img, cv2.CV_32F, kx, ky, borderType=cv2.BORDER_REFLECT_101)
    out = np.empty_like(img)
    for idx in np.ndindex(img.shape[:-2]):
        out[idx] = cv2.sepFilter2D(img[idx], cv2.CV_32F, kx, ky, borderType=cv2.BORDER_REFLECT_101)
    return out
