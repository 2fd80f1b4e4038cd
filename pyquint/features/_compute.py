"""compute_features: ilastik's two-stage pixel features on numpy arrays (spec ilastik.md §1, §1b)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError
from ..io import to_canonical
from ..parallel import resolve_n_jobs
from ._eig3 import eig3_fastfilters
from ._fast2d import FeatureBands, compute_2d_fast
from ._kernels import correlate_axis, half_kernel, sep_filter_2d_fast, transpose_rows
from ._selection import (
    FILTER_WINDOW,
    PRESMOOTH_WINDOW,
    FeatureSelection,
    filter_sigma,
    presmooth_sigma,
)
from ._vigra import vigra_features

__all__ = ["DEFAULT_ROUNDING", "EXPORT_ROUNDING", "ROUNDINGS", "compute_features", "feature_bands"]

#: ``exact``: fastfilters' float32 FMA arithmetic (ilastik ≥ 1.4); ``muladd``: the same without
#: FMA (ilastik < 1.4 builds); ``fast``: OpenCV/scipy, a few float32 ulps from ``exact``;
#: ``vigra``: ilastik's vigra code path (double passes, unswapped structure tensor; 1.2 projects).
ROUNDINGS = ("exact", "muladd", "fast", "vigra")
# The one rule for defaults (docs/features.md): features computed for their own sake
# (compute_features, `pyquint features`) are ilastik's numbers bit for bit; classifying
# pixels with pyquint's own models uses the fast path (it changes ~1 pixel in 10^6 of a
# segmentation); ilastik and steinbock projects follow the ilastik version that made them
# (pyquint.ilastik.default_rounding).
EXPORT_ROUNDING = "exact"
DEFAULT_ROUNDING = "fast"

# A kernel spec: (sigma, derivative order, window). Order 1 kernels are antisymmetric.
_Kernel = tuple[float, int, float]


class _Separable:
    """Separable filtering of one image with per-axis kernels, caching shared partial passes.

    Passes run along x first, then y, then z (fastfilters' order); the result after the first
    k passes is cached, so e.g. the x-pass with the order-0 kernel is shared by GS, ∂y and ∂yy.
    """

    def __init__(self, image: np.ndarray, rounding: str) -> None:
        self.image = image  # float32 spatial array, (y, x) or (z, y, x)
        self.rounding = rounding
        self.cache: dict[tuple[_Kernel, ...], np.ndarray] = {}
        self._xt: np.ndarray | None = None

    def __call__(self, *kernels: _Kernel) -> np.ndarray:
        """Filter with ``kernels`` in pass order (x, y[, z]); fewer kernels than dimensions
        leave the leading axes alone (2-D slice by slice in a 3-D image)."""
        key = tuple(kernels)
        if key in self.cache:
            return self.cache[key]
        if self.rounding == "fast" and len(kernels) >= 2:
            out = self._fast(kernels)
        else:
            prev = self(*kernels[:-1]) if len(kernels) > 1 else self.image
            sigma, order, window = kernels[-1]
            axis = self.image.ndim - len(kernels)
            xt = None
            if len(kernels) == 1 and min(self.image.shape[:-1], default=1) > 1:
                # the x passes (k0, k1, k2, ...) of one image share its transposed copy
                if self._xt is None:
                    self._xt = transpose_rows(self.image)
                xt = self._xt
            out = correlate_axis(prev, half_kernel(sigma, order, window), order == 1, axis,
                                 self.rounding, xt=xt)
        self.cache[key] = out
        return out

    def _fast(self, kernels: tuple[_Kernel, ...]) -> np.ndarray:
        if len(kernels) == 2:
            (sx, ox, wx), (sy, oy, wy) = kernels
            return sep_filter_2d_fast(
                self.image, half_kernel(sx, ox, wx), ox == 1, half_kernel(sy, oy, wy), oy == 1
            )
        prev = self(*kernels[:2])
        sz, oz, wz = kernels[2]
        return correlate_axis(prev, half_kernel(sz, oz, wz), oz == 1, 0, "fast")


def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) of [[a, c], [c, b]] in float32, as fastfilters' linalg."""
    half = np.float32(0.5)
    t0 = (a + b) * half
    t1 = (a - b) * half
    t1 *= t1
    d = np.sqrt(t1 + c * c)
    return t0 + d, t0 - d


def _eig3_f64(a11, a22, a33, a12, a13, a23) -> list[np.ndarray]:
    """Eigenvalues (descending) of a symmetric 3×3 field (xx, yy, zz, xy, xz, yz), closed
    form (trigonometric) in float64, returned as float32."""
    a11, a22, a33, a12, a13, a23 = (v.astype(np.float64) for v in (a11, a22, a33, a12, a13, a23))
    q = (a11 + a22 + a33) / 3.0
    p1 = a12 * a12 + a13 * a13 + a23 * a23
    p = np.sqrt(((a11 - q) ** 2 + (a22 - q) ** 2 + (a33 - q) ** 2 + 2.0 * p1) / 6.0)
    safe = np.where(p > 0, p, 1.0)
    b11, b22, b33 = (a11 - q) / safe, (a22 - q) / safe, (a33 - q) / safe
    b12, b13, b23 = a12 / safe, a13 / safe, a23 / safe
    det = b11 * (b22 * b33 - b23 * b23) - b12 * (b12 * b33 - b23 * b13) + b13 * (b12 * b23 - b22 * b13)
    phi = np.arccos(np.clip(det / 2.0, -1.0, 1.0)) / 3.0
    e1 = q + 2.0 * p * np.cos(phi)
    e3 = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    e2 = 3.0 * q - e1 - e3
    return [e.astype(np.float32) for e in (e1, e2, e3)]


def _eig3(xx, yy, zz, xy, xz, yz, rounding: str = "exact") -> list[np.ndarray]:
    """Eigenvalues (descending) of a symmetric 3×3 field of the 3-D Hessian / structure tensor.

    ``exact`` and ``muladd``: fastfilters' float32 solver bit for bit
    (:mod:`pyquint.features._eig3`; its linear algebra has no FMA in either build), given the
    fields in its argument order (zz, yz, xz, yy, xy, xx). ``fast``: a float64 closed form.
    """
    if rounding == "fast":
        return _eig3_f64(xx, yy, zz, xy, xz, yz)
    return list(eig3_fastfilters(zz, yz, xz, yy, xy, xx))


def _stage2(sep: _Separable, fid: str, sp: float, nd: int) -> list[np.ndarray]:
    """Feature ``fid`` at stage-2 σ' on the pre-smoothed image behind ``sep``: its channels."""
    w = FILTER_WINDOW

    def filt(axis_orders: dict[int, int], sigma: float = sp) -> np.ndarray:
        # axis_orders: derivative order per axis in pass order (0 = x, 1 = y, 2 = z)
        return sep(*[(sigma, axis_orders.get(i, 0), w) for i in range(nd)])

    if fid == "GaussianSmoothing":
        return [filt({})]
    if fid == "DifferenceOfGaussians":
        return [filt({}) - filt({}, 0.66 * sp)]
    if fid == "LaplacianOfGaussian":
        out = filt({1: 2}) + filt({0: 2})  # yy + xx
        if nd == 3:
            out = out + filt({2: 2})
        return [out]
    if fid == "GaussianGradientMagnitude":
        total = None
        for i in range(nd):
            g = filt({i: 1})
            total = g * g if total is None else total + g * g
        return [np.sqrt(total)]
    if fid == "HessianOfGaussianEigenvalues":
        xx, yy, xy = filt({0: 2}), filt({1: 2}), filt({0: 1, 1: 1})
        if nd == 2:
            return list(_eig2(xx, yy, xy))
        return _eig3(xx, yy, filt({2: 2}), xy, filt({0: 1, 2: 1}), filt({1: 1, 2: 1}), rounding=sep.rounding)
    if fid == "StructureTensorEigenvalues":
        # fastfilters swaps ilastik's (inner, outer) scales: gradient at σ'/2, tensor smoothed at σ'.
        g = [filt({i: 1}, 0.5 * sp) for i in range(nd)]

        def smooth(prod: np.ndarray) -> np.ndarray:
            return _Separable(prod, sep.rounding)(*[(sp, 0, w)] * nd)

        if nd == 2:
            gx, gy = g
            return list(_eig2(smooth(gx * gx), smooth(gy * gy), smooth(gx * gy)))
        gx, gy, gz = g
        return _eig3(
            smooth(gx * gx), smooth(gy * gy), smooth(gz * gz),
            smooth(gx * gy), smooth(gx * gz), smooth(gy * gz), rounding=sep.rounding,
        )
    raise InputError(f"unknown feature id {fid!r}")  # pragma: no cover - validated earlier


def _as_float32(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    kind = image.dtype.kind
    if kind == "b":
        image = image.astype(np.uint8)
    elif kind not in "uif":
        raise InputError(f"image: unsupported pixel type {image.dtype}; use integer or float pixels")
    if image.size == 0:
        raise InputError(f"image: empty array of shape {image.shape}")
    if kind == "f" and not np.isfinite(image).all():
        bad = int(image.size - np.count_nonzero(np.isfinite(image)))
        raise InputError(f"image: {bad} pixel(s) are NaN or infinite; features need finite values")
    return np.ascontiguousarray(image, dtype=np.float32)


def _check_size(selection: FeatureSelection, spatial: tuple[int, ...], in2d: tuple[bool, ...]) -> None:
    names = "zyx"[-len(spatial):]
    for j, sigma in enumerate(selection.scales):
        if not selection.matrix[:, j].any():
            continue
        need = math.ceil(3.5 * sigma) + 1  # ilastik's "too small for sigma" rule
        for a in range(len(spatial) - 2 if in2d[j] else 0, len(spatial)):
            if spatial[a] < need:
                raise InputError(
                    f"image too small for σ={sigma}: its {names[a]} size is {spatial[a]} but "
                    f"σ={sigma} needs at least {need} pixels (ceil(3.5·σ)+1); "
                    f"deselect that scale or use a larger image"
                )


def _interleave(channels: list[np.ndarray], spatial: tuple[int, ...]) -> np.ndarray:
    """Stack planes channels-last; ``out[..., i] = plane`` is ~4× slower (strided writes)."""
    n_pix = math.prod(spatial)
    if len(channels) <= 512:  # OpenCV's channel limit
        import cv2

        flat = [np.ascontiguousarray(c).reshape(-1, spatial[-1]) for c in channels]
        merged = cv2.merge(flat)
        return merged.reshape(spatial + (len(channels),))
    out = np.empty((n_pix, len(channels)), dtype=np.float32)
    step = 1 << 14
    for p0 in range(0, n_pix, step):
        out[p0:p0 + step] = np.stack([c.reshape(-1)[p0:p0 + step] for c in channels], axis=1)
    return out.reshape(spatial + (len(channels),))


def compute_features(
    image: np.ndarray,
    selection: FeatureSelection | None = None,
    *,
    axes: str | None = None,
    rounding: str = EXPORT_ROUNDING,
    n_jobs: int | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """ilastik's pixel features of an image, channels last, float32.

    Parameters
    ----------
    image : ndarray
        Integer or float pixels (cast to float32, never normalised), e.g. ``(Y, X, C)``.
    selection : FeatureSelection, optional
        Which features and scales; default :meth:`FeatureSelection.all`.
    axes : str, optional
        Axes of ``image`` over ``tzyxc`` (``"yxc"``, ``"zyxc"``, ``"yx"``, ``"cyx"``, …); the
        output is in ilastik's canonical order (``yxc``, ``zyxc``; ``t`` first if present).
        Default: ``"yx"`` for a 2-D array (a grey image), ``"yxc"`` for 3-D, ``"zyxc"`` for 4-D.
    rounding : {"exact", "muladd", "fast", "vigra"}
        ``"exact"`` reproduces fastfilters (ilastik ≥ 1.4) bit for bit away from the image
        border; ``"muladd"`` its builds without FMA (ilastik < 1.4); ``"fast"`` uses OpenCV,
        several times faster, and differs from ``"exact"`` by a few float32 ulps of the
        pre-smoothed image (≤ 1e-5 relative for inputs of order 1); ``"vigra"`` ilastik's
        vigra filters (double arithmetic, structure tensor scales unswapped), which the stored
        forests of ilastik 1.2 projects fit best.
    n_jobs : int, optional
        Threads over (input channel, scale) pairs (:func:`pyquint.parallel.resolve_n_jobs`);
        default at most 4, each holding pre-smoothed copies of the image; ``-1`` every core.
    n_threads : int, optional
        Deprecated name of ``n_jobs``.

    Returns
    -------
    ndarray of float32, shape spatial + (F,)
        ``F = selection.n_channels(C, ndim)``, ordered as :func:`feature_names`: feature rows →
        selected scales → input channels → eigenvalue index.

    Raises
    ------
    InputError
        Unsupported dtype, NaN/inf pixels, bad axes, or an image too small for a selected σ.
    """
    if selection is None:
        selection = FeatureSelection.all()
    if not isinstance(selection, FeatureSelection):
        raise InputError(f"selection must be a FeatureSelection, not {type(selection).__name__}")
    if rounding not in ROUNDINGS:
        raise InputError(f"rounding must be one of {ROUNDINGS}, not {rounding!r}")
    if n_threads is not None:
        n_jobs = resolve_n_jobs(n_jobs, alias=n_threads)
    data = _as_float32(image)
    if axes is None:
        axes = {2: "yx", 3: "yxc", 4: "zyxc"}.get(data.ndim)
        if axes is None:
            raise InputError(f"cannot guess the axes of a {data.ndim}-D image; pass axes=")
    data, canon = to_canonical(data, axes)
    if canon.startswith("t"):  # time points are always processed independently
        return np.stack([
            compute_features(data[t], selection, axes=canon[1:], rounding=rounding, n_jobs=n_jobs)
            for t in range(data.shape[0])
        ])
    spatial = data.shape[:-1]
    nd, n_in = len(spatial), data.shape[-1]
    z_size = spatial[0] if nd == 3 else 1
    in2d = selection.in_2d(nd, z_size)
    _check_size(selection, spatial, in2d)
    if rounding == "vigra":  # ilastik 1.2's vigra filters (pyquint.features._vigra)
        return vigra_features(data, selection)

    # unset: at most 4 workers, since each holds pre-smoothed copies of the whole image
    n_threads = min(4, resolve_n_jobs()) if n_jobs is None else resolve_n_jobs(n_jobs)
    if rounding == "fast" and nd == 2:
        # fused stage 2 straight into the pixel-major output (same numbers as below, faster)
        return compute_2d_fast(data, selection, n_threads)

    blocks = selection.blocks(nd, z_size)
    offsets, pos = {}, 0
    for fid, j, n in blocks:
        offsets[(fid, j)] = pos
        pos += n * n_in
    channels: list[np.ndarray] = [None] * pos  # type: ignore[list-item]

    def task(c: int, j: int) -> None:
        sigma = selection.scales[j]
        fnd = 2 if in2d[j] else nd  # 2-D in a 3-D image: filter y and x only, slice by slice
        pre = _Separable(data[..., c], rounding)(*[(presmooth_sigma(sigma), 0, PRESMOOTH_WINDOW)] * fnd)
        sep = _Separable(pre, rounding)  # one pre-smoothed image shared by all families
        for fid, jj, n in blocks:
            if jj == j:
                start = offsets[(fid, j)] + c * n
                for e, channel in enumerate(_stage2(sep, fid, filter_sigma(sigma), fnd)):
                    channels[start + e] = channel

    jobs = [(c, j) for j in sorted({j for _, j, _ in blocks}) for c in range(n_in)]
    if n_threads == 1 or len(jobs) == 1:
        for c, j in jobs:
            task(c, j)
    else:
        with ThreadPoolExecutor(min(n_threads, len(jobs))) as pool:
            for future in [pool.submit(task, c, j) for c, j in jobs]:
                future.result()
    return _interleave(channels, spatial)


def feature_bands(
    image: np.ndarray,
    selection: FeatureSelection | None = None,
    *,
    axes: str = "yxc",
    n_jobs: int | None = None,
    n_threads: int | None = None,
) -> FeatureBands:
    """``rounding="fast"`` features of a 2-D image, to be consumed band by band.

    Validates like :func:`compute_features` and returns a :class:`FeatureBands` whose
    ``map(consume, rows, pool=...)`` hands ``(rows, W, F)`` feature bands to ``consume``
    (equal to the rows of ``compute_features(image, selection, axes=axes, rounding="fast")``)
    without ever holding the whole ``(H, W, F)`` array: a pixel classifier can run its forest
    on each band while it is in cache. ``n_jobs``: threads (default every core);
    ``n_threads`` is its deprecated name.

    Raises
    ------
    InputError
        As :func:`compute_features`, and for images that are not 2-D.
    """
    if selection is None:
        selection = FeatureSelection.all()
    if not isinstance(selection, FeatureSelection):
        raise InputError(f"selection must be a FeatureSelection, not {type(selection).__name__}")
    data, canon = to_canonical(_as_float32(image), axes)
    if canon != "yxc":
        raise InputError(f"feature bands need a 2-D image (yx or yxc), not axes {canon!r}")
    _check_size(selection, data.shape[:-1], (True,) * len(selection.scales))
    n_jobs = resolve_n_jobs(n_jobs, alias=n_threads)
    return FeatureBands(np.ascontiguousarray(data), selection, n_jobs)
