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


def _f32(values: np.ndarray) -> np.ndarray:
    """Round to float32 and widen again: fastfilters stores every intermediate tap as float."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


@lru_cache(maxsize=256)
def _half_kernel(sigma: float, order: int, window: float) -> tuple[float, ...]:
    r = kernel_radius(sigma, window)
    if order == 0 and r == 0:
        return (1.0,)
    if r == 0:
        raise ValueError(f"sigma {sigma} is too small for a derivative kernel (radius 0)")
    if order not in (0, 1, 2):
        raise ValueError(f"derivative order {order} is not supported (0, 1 or 2)")
    x = np.arange(r + 1, dtype=np.float64)
    e = np.exp(-(x * x) / (2.0 * sigma * sigma))
    # The taps live in a float array; sums and scale factors are computed in double from the
    # stored float values. Rounding the samples before normalising matters: without it the
    # Laplacian at σ=3.5 and a Hessian eigenvalue at σ=5 of pc.ilp are off in the last bits.
    if order == 0:
        c = _f32(e / (math.sqrt(2.0 * math.pi) * sigma))
        c = _f32(c / (c[0] + 2.0 * c[1:].sum()))
    elif order == 1:
        c = _f32(-x * e / (math.sqrt(2.0 * math.pi) * sigma**3))
        # scale so that Σ k(x)·x = 1 with k(x) = c[x] for x > 0
        c = -_f32(c / (-2.0 * (x * c).sum()))
    else:
        c = _f32(-(1.0 - x * x / (sigma * sigma)) * e / (math.sqrt(2.0 * math.pi) * sigma**3))
        c = _f32(c - (c[0] + 2.0 * c[1:].sum()) / (2 * r + 1))  # zero sum
        c = _f32(c / (c[1:] * x[1:] ** 2).sum())  # response 2 to x²
    return tuple(float(v) for v in c)


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


def _make_numba_pass():  # pragma: no cover - exercised when numba is installed
    import numba

    @numba.njit(cache=True, nogil=True)
    def run(x, c, antisym, fma, out):  # x, out: (outer, n, inner) float32; c: float32 half-kernel
        n_outer, n, inner = x.shape
        r = c.shape[0] - 1
        c0 = c[0]
        for o in range(n_outer):
            for i in range(n):
                for j in range(inner):
                    out[o, i, j] = c0 * x[o, i, j]
                for k in range(1, r + 1):
                    lo = i - k
                    if lo < 0:
                        lo = -lo
                    hi = i + k
                    if hi >= n:
                        hi = 2 * (n - 1) - hi
                    ck = c[k]
                    ck64 = np.float64(ck)
                    for j in range(inner):
                        if antisym:
                            pair = x[o, hi, j] - x[o, lo, j]
                        else:
                            pair = x[o, hi, j] + x[o, lo, j]
                        if fma:
                            out[o, i, j] = np.float32(np.float64(pair) * ck64 + np.float64(out[o, i, j]))
                        else:
                            prod = pair * ck
                            out[o, i, j] = out[o, i, j] + prod
        return out

    return run


_NUMBA_PASS = None


def _numba_pass():
    global _NUMBA_PASS
    if _NUMBA_PASS is None:
        try:
            _NUMBA_PASS = _make_numba_pass()
        except ImportError:  # pragma: no cover - numba is a dependency, numpy is the fallback
            _NUMBA_PASS = False
    return _NUMBA_PASS


def transpose_rows(x: np.ndarray) -> np.ndarray:
    """``x`` as a 2-D (rows, n) array, transposed to (n, rows) (a fast OpenCV copy)."""
    import cv2

    return cv2.transpose(np.ascontiguousarray(x).reshape(-1, x.shape[-1]))


def _correlate_rounded(
    x: np.ndarray, c: np.ndarray, antisym: bool, axis: int, fma: bool, xt: np.ndarray | None = None
) -> np.ndarray:
    """One 1-D pass along ``axis`` with fastfilters' per-tap float32 rounding."""
    r = len(c) - 1
    run = _numba_pass() if USE_NUMBA else False
    if run and r <= x.shape[axis] - 1:  # one reflection suffices
        shape = x.shape
        x3 = np.ascontiguousarray(x).reshape(
            (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))
        )
        c = np.ascontiguousarray(c, dtype=np.float32)
        if x3.shape[2] == 1 and x3.shape[0] > 1:
            # Along rows the compiled loop cannot vectorise (each output chains its taps): filter
            # the transposed image down its columns instead (same taps, same order, same bits).
            import cv2

            xt = (transpose_rows(x) if xt is None else xt)[np.newaxis]
            out = run(xt, c, antisym, fma, np.empty_like(xt))
            return cv2.transpose(out[0]).reshape(shape)
        return run(x3, c, antisym, fma, np.empty_like(x3)).reshape(shape)
    return _correlate_rounded_numpy(x, c, antisym, axis, fma)


#: Use the compiled (numba) pass; the numpy version gives identical bits, slower.
USE_NUMBA = True


def _correlate_rounded_numpy(x: np.ndarray, c: np.ndarray, antisym: bool, axis: int, fma: bool) -> np.ndarray:
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
    x: np.ndarray, c: np.ndarray, antisym: bool, axis: int, rounding: str = "exact",
    xt: np.ndarray | None = None,
) -> np.ndarray:
    """Correlate float32 ``x`` along ``axis`` with the half-kernel ``c`` (mirror borders).

    ``antisym`` selects the order-1 form ``k(-x) = -c[x]``. ``rounding`` is ``"exact"``
    (fastfilters with FMA), ``"muladd"`` (no FMA) or ``"fast"`` (scipy, float64 inside).
    ``xt`` may give :func:`transpose_rows` of ``x`` for a pass along the last axis, to share
    that copy between several kernels.
    """
    if rounding == "fast":
        return _correlate_fast(x, c, antisym, axis)
    if axis != x.ndim - 1:
        xt = None
    return _correlate_rounded(x, c, antisym, axis, fma=(rounding == "exact"), xt=xt)


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
