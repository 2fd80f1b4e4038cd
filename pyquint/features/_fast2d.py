"""The ``rounding="fast"`` path for 2-D images: OpenCV pre-smoothing, one fused numba stage 2.

Stage 1 pre-smooths each (input channel, scale) plane with OpenCV's float32 ``sepFilter2D``
(``BORDER_REFLECT_101`` = vigra's mirror). Stage 2 never materialises a filtered image: for a
band of rows it runs the small σ' ≤ 1 kernels (radius ≤ 2) along x for the band and its
margin, then along y row by row, derives every selected channel (Gaussian, DoG, LoG, gradient
magnitude, Hessian and structure-tensor eigenvalues) and stores it straight into the
pixel-major ``(y, x, F)`` output, all while the band is in cache. Passes run x first, then y,
with mirror borders after every pass (fastfilters' order); the arithmetic is a float32 multiply
and add per tap (no FMA), so results are within a few float32 ulps of ``"exact"``.
Kernels release the GIL; bands are spread over threads.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from ._kernels import full_kernel, half_kernel
from ._selection import (
    FILTER_WINDOW,
    PRESMOOTH_WINDOW,
    FeatureSelection,
    filter_sigma,
    presmooth_sigma,
)

# Families in the order of the offset table; kernels in the order of the kernel table.
_FAMILY = {"GaussianSmoothing": 0, "LaplacianOfGaussian": 1, "GaussianGradientMagnitude": 2,
           "DifferenceOfGaussians": 3, "StructureTensorEigenvalues": 4,
           "HessianOfGaussianEigenvalues": 5}
K0, K1, K2, KD, KH0, KH1 = range(6)  # σ' orders 0/1/2, DoG's 0.66σ', structure tensor's σ'/2
_MAX_TAPS = 3  # radius ≤ 2 for every stage-2 kernel (σ' ≤ 1, window 2)
#: Output rows per band (the band's x-pass rows stay in cache).
BAND = 16


def presmooth(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Stage 1 of scale ``sigma`` on a float32 2-D plane (OpenCV, mirror borders)."""
    import cv2

    k = full_kernel(presmooth_sigma(sigma), 0, PRESMOOTH_WINDOW)
    if k.size == 1:
        return plane * k[0]
    return cv2.sepFilter2D(plane, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)


def plane_tables(selection: FeatureSelection, n_in: int) -> tuple[list[tuple[int, int]], np.ndarray,
                                                                  np.ndarray, np.ndarray]:
    """For every (input channel, scale) plane with a selected feature: its kernels, radii and
    output offsets (channel index of each family's first channel, -1 if not selected)."""
    blocks = selection.blocks(2, 1)
    start, pos = {}, 0
    for fid, j, n in blocks:
        start[(fid, j)] = (pos, n)
        pos += n * n_in
    scales = sorted({j for _, j, _ in blocks})
    planes = [(c, j) for j in scales for c in range(n_in)]
    kern = np.zeros((len(planes), 6, _MAX_TAPS), np.float32)
    rad = np.zeros((len(planes), 6), np.int64)
    offs = np.full((len(planes), 6), -1, np.int64)
    for p, (c, j) in enumerate(planes):
        sp = filter_sigma(selection.scales[j])
        fams = {fid for fid, jj, _ in blocks if jj == j}
        specs = {K0: (sp, 0), K1: (sp, 1), K2: (sp, 2), KD: (0.66 * sp, 0)}
        if "StructureTensorEigenvalues" in fams:
            specs.update({KH0: (0.5 * sp, 0), KH1: (0.5 * sp, 1)})
        for kind, (s, order) in specs.items():
            if order and kind in (K1, K2) and fams <= {"GaussianSmoothing", "DifferenceOfGaussians"}:
                continue  # no derivative needed (σ' may be too small for one)
            h = half_kernel(s, order, FILTER_WINDOW)
            kern[p, kind, :h.size] = h
            rad[p, kind] = h.size - 1
        for fid in fams:
            first, n = start[(fid, j)]
            offs[p, _FAMILY[fid]] = first + c * n
    return planes, kern, rad, offs


@njit(cache=True, nogil=True, inline="always")
def _mirror(i, n):  # pragma: no cover - compiled
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


@njit(cache=True, nogil=True)
def _xpass(src, c, r, antisym, dst):  # pragma: no cover - compiled
    # dst[x] = c0·src[x] + Σ_k c_k·(src[x+k] ± src[x-k]), mirror at both ends
    w = src.shape[0]
    c0 = c[0]
    for x in range(w):
        dst[x] = c0 * src[x]
    for k in range(1, r + 1):
        ck = c[k]
        for x in range(min(k, w)):  # left border
            hi, lo = src[_mirror(x + k, w)], src[_mirror(x - k, w)]
            dst[x] += ck * (hi - lo if antisym else hi + lo)
        if antisym:
            for x in range(k, w - k):
                dst[x] += ck * (src[x + k] - src[x - k])
        else:
            for x in range(k, w - k):
                dst[x] += ck * (src[x + k] + src[x - k])
        for x in range(max(k, w - k), w):  # right border
            hi, lo = src[_mirror(x + k, w)], src[_mirror(x - k, w)]
            dst[x] += ck * (hi - lo if antisym else hi + lo)


@njit(cache=True, nogil=True)
def _ypass(rows, lo, y, h, c, r, antisym, dst):  # pragma: no cover - compiled
    # dst = c0·rows[y] + Σ_k c_k·(rows[y+k] ± rows[y-k]); rows[i - lo] holds image row i
    w = dst.shape[0]
    c0 = c[0]
    a = rows[y - lo]
    for x in range(w):
        dst[x] = c0 * a[x]
    for k in range(1, r + 1):
        ck = c[k]
        hi = rows[_mirror(y + k, h) - lo]
        lw = rows[_mirror(y - k, h) - lo]
        if antisym:
            for x in range(w):
                dst[x] += ck * (hi[x] - lw[x])
        else:
            for x in range(w):
                dst[x] += ck * (hi[x] + lw[x])


@njit(cache=True, nogil=True, inline="always")
def _eig2_store(a, b, c, out, y, o):  # pragma: no cover - compiled
    # eigenvalues of [[a, c], [c, b]], descending, float32 as fastfilters
    for x in range(a.shape[0]):
        t0 = (a[x] + b[x]) * np.float32(0.5)
        t1 = (a[x] - b[x]) * np.float32(0.5)
        d = np.sqrt(t1 * t1 + c[x] * c[x])
        out[y, x, o] = t0 + d
        out[y, x, o + 1] = t0 - d


@njit(cache=True, nogil=True, error_model="numpy")
def stage2_rows(planes, y_start, y_stop, kern, rad, offs, out):  # pragma: no cover - compiled
    """Stage-2 features of output rows ``y_start..y_stop`` of every plane into ``out``.

    ``planes`` (P, H, W) pre-smoothed float32; ``kern`` (P, 6, 3) half-kernels and ``rad``
    (P, 6) radii (K0, K1, K2, KD, KH0, KH1); ``offs`` (P, 6) first output channel per family
    (GS, LoG, GGM, DoG, STE, HoGE) or -1.
    """
    n_planes, h, w = planes.shape
    nb = BAND + 2 * 3  # margin: the largest stage-2 reach, σ' (radius 2) after σ'/2 (radius 1)
    xb = np.zeros((6, nb, w), np.float32)   # x-pass rows per kernel kind
    gb = np.zeros((3, nb, w), np.float32)   # structure tensor: gx², gy², gx·gy, x-smoothed
    ga = np.zeros(w, np.float32)
    gc = np.zeros(w, np.float32)
    t = np.zeros((8, w), np.float32)        # y-pass results of one output row
    for y0 in range(y_start, y_stop, BAND):
        y1 = min(y0 + BAND, y_stop)
        for p in range(n_planes):
            src = planes[p]
            o_gs, o_log, o_ggm, o_dog, o_ste, o_hog = (offs[p, 0], offs[p, 1], offs[p, 2],
                                                      offs[p, 3], offs[p, 4], offs[p, 5])
            r0, rd, rh = rad[p, K0], rad[p, KD], rad[p, KH0]
            need_ste = o_ste >= 0
            need_d1 = o_ggm >= 0 or o_hog >= 0
            need_d2 = o_log >= 0 or o_hog >= 0
            reach = max(r0, rd)
            if need_ste:
                reach = max(reach, r0 + rh)
            lo = max(0, y0 - reach)
            hi = min(h, y1 + reach)
            # x passes of the band and its margin
            for i in range(lo, hi):
                row = src[i]
                _xpass(row, kern[p, K0], r0, False, xb[K0, i - lo])
                if need_d1:
                    _xpass(row, kern[p, K1], r0, True, xb[K1, i - lo])
                if need_d2:
                    _xpass(row, kern[p, K2], r0, False, xb[K2, i - lo])
                if o_dog >= 0:
                    _xpass(row, kern[p, KD], rd, False, xb[KD, i - lo])
                if need_ste:
                    _xpass(row, kern[p, KH0], rh, False, xb[KH0, i - lo])
                    _xpass(row, kern[p, KH1], rh, True, xb[KH1, i - lo])
            if need_ste:
                # gradients at σ'/2 on rows glo..ghi (all rows the σ' smoothing reaches),
                # their products, smoothed along x
                glo = max(0, y0 - r0)
                ghi = min(h, y1 + r0)
                for i in range(glo, ghi):
                    _ypass(xb[KH1], lo, i, h, kern[p, KH0], rh, False, ga)  # ∂x
                    _ypass(xb[KH0], lo, i, h, kern[p, KH1], rh, True, gc)   # ∂y
                    for x in range(w):
                        t[0, x] = ga[x] * ga[x]
                        t[1, x] = gc[x] * gc[x]
                        t[2, x] = ga[x] * gc[x]
                    for q in range(3):
                        _xpass(t[q], kern[p, K0], r0, False, gb[q, i - glo])
            for y in range(y0, y1):
                _ypass(xb[K0], lo, y, h, kern[p, K0], r0, False, t[0])          # G
                if o_gs >= 0:
                    for x in range(w):
                        out[y, x, o_gs] = t[0, x]
                if o_dog >= 0:
                    _ypass(xb[KD], lo, y, h, kern[p, KD], rd, False, t[1])
                    for x in range(w):
                        out[y, x, o_dog] = t[0, x] - t[1, x]
                if need_d2:
                    _ypass(xb[K0], lo, y, h, kern[p, K2], r0, False, t[2])      # ∂yy
                    _ypass(xb[K2], lo, y, h, kern[p, K0], r0, False, t[3])      # ∂xx
                    if o_log >= 0:
                        for x in range(w):
                            out[y, x, o_log] = t[2, x] + t[3, x]
                if need_d1:
                    _ypass(xb[K1], lo, y, h, kern[p, K0], r0, False, t[4])      # ∂x
                    if o_ggm >= 0:
                        _ypass(xb[K0], lo, y, h, kern[p, K1], r0, True, t[5])   # ∂y
                        for x in range(w):
                            out[y, x, o_ggm] = np.sqrt(t[4, x] * t[4, x] + t[5, x] * t[5, x])
                    if o_hog >= 0:
                        _ypass(xb[K1], lo, y, h, kern[p, K1], r0, True, t[6])   # ∂xy
                        _eig2_store(t[3], t[2], t[6], out, y, o_hog)
                if need_ste:
                    glo = max(0, y0 - r0)
                    _ypass(gb[0], glo, y, h, kern[p, K0], r0, False, t[5])
                    _ypass(gb[1], glo, y, h, kern[p, K0], r0, False, t[6])
                    _ypass(gb[2], glo, y, h, kern[p, K0], r0, False, t[7])
                    _eig2_store(t[5], t[6], t[7], out, y, o_ste)


def compute_2d_fast(data: np.ndarray, selection: FeatureSelection, n_threads: int) -> np.ndarray:
    """Features of a canonical ``yxc`` float32 image (2-D, every scale in 2-D)."""
    h, w, n_in = data.shape
    planes_ids, kern, rad, offs = plane_tables(selection, n_in)
    n_feat = selection.n_channels(n_in, 2)
    planes = np.empty((len(planes_ids), h, w), np.float32)

    def smooth(p: int) -> None:
        c, j = planes_ids[p]
        planes[p] = presmooth(np.ascontiguousarray(data[..., c]), selection.scales[j])

    out = np.empty((h, w, n_feat), np.float32)
    n_bands = math.ceil(h / BAND)
    # a few row chunks per thread, in whole bands, even out the work
    n_chunks = min(n_bands, 4 * n_threads) if n_threads > 1 else 1
    edges = (np.linspace(0, n_bands, n_chunks + 1).round().astype(int) * BAND).clip(0, h)

    def stage2(a: int, b: int) -> None:
        stage2_rows(planes, int(a), int(b), kern, rad, offs, out)

    if n_threads > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            for f in [pool.submit(smooth, p) for p in range(len(planes_ids))]:
                f.result()
            for f in [pool.submit(stage2, a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]:
                f.result()
    else:
        for p in range(len(planes_ids)):
            smooth(p)
        stage2(0, h)
    return out
