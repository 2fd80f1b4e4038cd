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
#: Rows kept per ring: 2 × the largest stage-2 reach (3: σ' radius 2 after σ'/2 radius 1) + 1.
RING = 7


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
def _xpass(src, c, r, antisym, dst, w):  # pragma: no cover - compiled
    # dst[x] = c0·src[x] + Σ_k c_k·(src[x+k] ± src[x-k]) for x < w, taps in order, mirror
    # at both ends (rows may be longer than w: padding)
    c0 = c[0]
    for x in range(w):
        dst[x] = c0 * src[x]
    for k in range(1, r + 1):
        ck = c[k]
        n = w - 2 * k
        if n > 0:
            # shifted views: indices start at 0, so the loop vectorises
            d, hi, lo = dst[k:w - k], src[2 * k:], src[:n]
            if antisym:
                for x in range(n):
                    d[x] += ck * (hi[x] - lo[x])
            else:
                for x in range(n):
                    d[x] += ck * (hi[x] + lo[x])
        left = min(k, w)
        for x in range(left):  # borders
            _border_tap(src, ck, x, k, w, antisym, dst)
        for x in range(max(left, w - k), w):
            _border_tap(src, ck, x, k, w, antisym, dst)


@njit(cache=True, nogil=True, inline="always")
def _border_tap(src, ck, x, k, w, antisym, dst):  # pragma: no cover - compiled
    a, b = src[_mirror(x + k, w)], src[_mirror(x - k, w)]
    dst[x] += ck * (a - b if antisym else a + b)


@njit(cache=True, nogil=True)
def _ypass(ring, y, h, c, r, antisym, dst, w):  # pragma: no cover - compiled
    # dst = c0·row[y] + Σ_k c_k·(row[y+k] ± row[y-k]); image row i lives in ring[i % RING]
    c0 = c[0]
    a = ring[y % RING]
    for x in range(w):
        dst[x] = c0 * a[x]
    for k in range(1, r + 1):
        ck = c[k]
        hi = ring[_mirror(y + k, h) % RING]
        lw = ring[_mirror(y - k, h) % RING]
        if antisym:
            for x in range(w):
                dst[x] += ck * (hi[x] - lw[x])
        else:
            for x in range(w):
                dst[x] += ck * (hi[x] + lw[x])


@njit(cache=True, nogil=True)
def _eig2(a, b, c, e0, e1, w):  # pragma: no cover - compiled
    # eigenvalues of [[a, c], [c, b]], descending, float32 as fastfilters
    half = np.float32(0.5)
    for x in range(w):
        t0 = (a[x] + b[x]) * half
        t1 = (a[x] - b[x]) * half
        d = np.sqrt(t1 * t1 + c[x] * c[x])
        e0[x] = t0 + d
        e1[x] = t0 - d


@njit(cache=True, nogil=True)
def _add_rows(p, i, h, g_min, planes, kern, rad, offs, xr, gr, tmp):  # pragma: no cover
    """Bring image row ``i`` of plane ``p`` into the rings: its x passes, and (structure
    tensor) the x-smoothed gradient products of row ``i - rh``, whose inputs are then all
    present (rows before ``g_min`` are not needed)."""
    r0, rd, rh = rad[p, K0], rad[p, KD], rad[p, KH0]
    if i < h:
        src = planes[p, i]
        w = src.shape[0]
        slot = i % RING
        _xpass(src, kern[p, K0], r0, False, xr[p, K0, slot], w)
        if offs[p, 2] >= 0 or offs[p, 5] >= 0:
            _xpass(src, kern[p, K1], r0, True, xr[p, K1, slot], w)
        if offs[p, 1] >= 0 or offs[p, 5] >= 0:
            _xpass(src, kern[p, K2], r0, False, xr[p, K2, slot], w)
        if offs[p, 3] >= 0:
            _xpass(src, kern[p, KD], rd, False, xr[p, KD, slot], w)
        if offs[p, 4] >= 0:
            _xpass(src, kern[p, KH0], rh, False, xr[p, KH0, slot], w)
            _xpass(src, kern[p, KH1], rh, True, xr[p, KH1, slot], w)
    g = i - rh
    if offs[p, 4] >= 0 and max(0, g_min) <= g < h:
        _structure_row(p, g, h, planes.shape[2], kern, rad, xr, gr, tmp)


@njit(cache=True, nogil=True)
def _structure_row(p, g, h, w, kern, rad, xr, gr, tmp):  # pragma: no cover - compiled
    r0, rh = rad[p, K0], rad[p, KH0]
    _ypass(xr[p, KH1], g, h, kern[p, KH0], rh, False, tmp[0], w)  # ∂x at σ'/2
    _ypass(xr[p, KH0], g, h, kern[p, KH1], rh, True, tmp[1], w)   # ∂y at σ'/2
    gx, gy = tmp[0], tmp[1]
    for x in range(w):
        tmp[2, x] = gx[x] * gx[x]
        tmp[3, x] = gy[x] * gy[x]
        tmp[4, x] = gx[x] * gy[x]
    slot = g % RING
    for q in range(3):
        _xpass(tmp[2 + q], kern[p, K0], r0, False, gr[p, q, slot], w)


@njit(cache=True, nogil=True)
def _out_row(p, y, h, w, kern, rad, offs, xr, gr, t, chans):  # pragma: no cover - compiled
    """Every selected channel of plane ``p`` at output row ``y`` into ``chans[channel]``."""
    r0, rd = rad[p, K0], rad[p, KD]
    o_gs, o_log, o_ggm, o_dog, o_ste, o_hog = offs[p, 0], offs[p, 1], offs[p, 2], offs[p, 3], \
        offs[p, 4], offs[p, 5]
    _ypass(xr[p, K0], y, h, kern[p, K0], r0, False, t[0], w)                     # G
    if o_gs >= 0:
        chans[o_gs, :] = t[0]
    if o_dog >= 0:
        _ypass(xr[p, KD], y, h, kern[p, KD], rd, False, t[1], w)
        d = chans[o_dog]
        for x in range(w):
            d[x] = t[0, x] - t[1, x]
    if o_log >= 0 or o_hog >= 0:
        _ypass(xr[p, K0], y, h, kern[p, K2], r0, False, t[2], w)                 # ∂yy
        _ypass(xr[p, K2], y, h, kern[p, K0], r0, False, t[3], w)                 # ∂xx
        if o_log >= 0:
            d = chans[o_log]
            for x in range(w):
                d[x] = t[2, x] + t[3, x]
    if o_ggm >= 0 or o_hog >= 0:
        _ypass(xr[p, K1], y, h, kern[p, K0], r0, False, t[4], w)                 # ∂x
        if o_ggm >= 0:
            _ypass(xr[p, K0], y, h, kern[p, K1], r0, True, t[5], w)              # ∂y
            d = chans[o_ggm]
            for x in range(w):
                d[x] = np.sqrt(t[4, x] * t[4, x] + t[5, x] * t[5, x])
        if o_hog >= 0:
            _ypass(xr[p, K1], y, h, kern[p, K1], r0, True, t[6], w)              # ∂xy
            _eig2(t[3], t[2], t[6], chans[o_hog], chans[o_hog + 1], w)
    if o_ste >= 0:
        _ypass(gr[p, 0], y, h, kern[p, K0], r0, False, t[0], w)
        _ypass(gr[p, 1], y, h, kern[p, K0], r0, False, t[1], w)
        _ypass(gr[p, 2], y, h, kern[p, K0], r0, False, t[2], w)
        _eig2(t[0], t[1], t[2], chans[o_ste], chans[o_ste + 1], w)


def work_buffers(n_planes: int, w: int, n_feat: int) -> tuple[np.ndarray, ...]:
    """One thread's rings and row buffers for :func:`stage2_rows`.

    Rows are 16 floats longer than ``w``: rows read side by side at a stride that is a
    multiple of 4 kB would share one L1 cache set (thrashing when ``w`` is a power of two).
    """
    wp = w + 16
    return (np.zeros((n_planes, 6, RING, wp), np.float32),
            np.zeros((n_planes, 3, RING, wp), np.float32),
            np.zeros((5, wp), np.float32), np.zeros((7, wp), np.float32),
            np.zeros((n_feat, wp), np.float32))


@njit(cache=True, nogil=True, error_model="numpy")
def stage2_rows(planes, y_start, y_stop, kern, rad, offs, out, row0, xr, gr, tmp, t, chans,
                resume):  # pragma: no cover - compiled
    """Stage-2 features of rows ``y_start..y_stop`` of every plane into ``out[y - row0]``.

    ``planes`` (P, H, W) pre-smoothed float32; ``kern`` (P, 6, 3) half-kernels and ``rad``
    (P, 6) radii (K0, K1, K2, KD, KH0, KH1); ``offs`` (P, 6) first output channel per family
    (GS, LoG, GGM, DoG, STE, HoGE) or -1; ``xr .. chans`` from :func:`work_buffers`. Rows go
    in order through rings of x-pass rows, so no row is filtered twice; ``resume=True``
    continues from a previous call that stopped at ``y_start``. Each output row's channels
    are computed channel-major, then interleaved into ``out`` in one sweep.
    """
    n_planes, h, w = planes.shape
    n_feat = out.shape[2]
    if not resume:
        for p in range(n_planes):
            reach = max(rad[p, K0], rad[p, KD])
            if offs[p, 4] >= 0:
                reach = max(reach, rad[p, K0] + rad[p, KH0])
            # rows the first output row needs; later rows add one row each
            for i in range(max(0, y_start - reach), y_start + reach):  # i >= h: mirrored only
                _add_rows(p, i, h, y_start - rad[p, K0], planes, kern, rad, offs, xr, gr, tmp)
    for y in range(y_start, y_stop):
        for p in range(n_planes):
            reach = max(rad[p, K0], rad[p, KD])
            if offs[p, 4] >= 0:
                reach = max(reach, rad[p, K0] + rad[p, KH0])
            _add_rows(p, y + reach, h, y - rad[p, K0], planes, kern, rad, offs, xr, gr, tmp)
            _out_row(p, y, h, w, kern, rad, offs, xr, gr, t, chans)
        row = out[y - row0]
        for x in range(w):  # interleave: channel-major rows -> pixel-major output row
            for f in range(n_feat):
                row[x, f] = chans[f, x]


def _chunks(start: int, stop: int, n_threads: int, band: int) -> list[tuple[int, int]]:
    """``start..stop`` in a few contiguous chunks per thread (whole bands)."""
    n_bands = max(1, math.ceil((stop - start) / band))
    n_chunks = min(n_bands, 4 * n_threads) if n_threads > 1 else 1
    edges = (np.linspace(0, n_bands, n_chunks + 1).round().astype(int) * band + start)
    edges = edges.clip(start, stop)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class FeatureBands:
    """Features of a 2-D ``yxc`` float32 image, produced band by band on demand.

    :meth:`smooth` computes stage 1 for the whole image (P float32 planes, ``4·P`` bytes per
    pixel); :meth:`map` then computes stage 2 for bands of rows in worker threads and hands
    each band, ``(rows, W, F)`` float32, to a callback while it is still in cache. The full
    ``(H, W, F)`` array never exists unless :meth:`compute` is asked for it.
    """

    def __init__(self, data: np.ndarray, selection: FeatureSelection, n_threads: int) -> None:
        self.data = data
        self.selection = selection
        self.n_threads = max(1, int(n_threads))
        h, w, n_in = data.shape
        self.ids, self.kern, self.rad, self.offs = plane_tables(selection, n_in)
        self.n_features = selection.n_channels(n_in, 2)
        self.planes: np.ndarray | None = None

    def smooth(self, pool: ThreadPoolExecutor | None = None) -> None:
        """Stage 1: the pre-smoothed plane of every (input channel, scale)."""
        h, w, _ = self.data.shape
        planes = np.empty((len(self.ids), h, w), np.float32)

        def one(p: int) -> None:
            c, j = self.ids[p]
            planes[p] = presmooth(np.ascontiguousarray(self.data[..., c]), self.selection.scales[j])

        if pool is None:
            for p in range(len(self.ids)):
                one(p)
        else:
            for f in [pool.submit(one, p) for p in range(len(self.ids))]:
                f.result()
        self.planes = planes

    def map(self, consume, rows: tuple[int, int] | None = None, band: int | None = None,
            pool: ThreadPoolExecutor | None = None) -> None:
        """Call ``consume(y0, y1, features)`` for consecutive bands covering ``rows``.

        ``features`` is a ``(y1 - y0, W, F)`` view of a per-thread buffer, valid during the
        call only. Calls come from worker threads when a ``pool`` is given.
        """
        if self.planes is None:
            self.smooth(pool)
        h, w, _ = self.data.shape
        start, stop = rows if rows is not None else (0, h)
        if band is None:  # about 4 MB of features per band
            band = int(np.clip((4 << 20) // (w * self.n_features * 4), 8, 256))

        def chunk(a: int, b: int) -> None:
            work = work_buffers(len(self.ids), w, self.n_features)
            buf = np.empty((min(band, b - a), w, self.n_features), np.float32)
            for y0 in range(a, b, band):
                y1 = min(b, y0 + band)
                stage2_rows(self.planes, y0, y1, self.kern, self.rad, self.offs, buf, y0,
                            *work, y0 > a)
                consume(y0, y1, buf[: y1 - y0])

        jobs = _chunks(start, stop, self.n_threads if pool is not None else 1, band)
        if pool is None:
            for a, b in jobs:
                chunk(a, b)
        else:
            for f in [pool.submit(chunk, a, b) for a, b in jobs]:
                f.result()

    def compute(self, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
        """All features, ``(H, W, F)`` float32."""
        if self.planes is None:
            self.smooth(pool)
        h, w, _ = self.data.shape
        out = np.empty((h, w, self.n_features), np.float32)

        def chunk(a: int, b: int) -> None:
            stage2_rows(self.planes, a, b, self.kern, self.rad, self.offs, out, 0,
                        *work_buffers(len(self.ids), w, self.n_features), False)

        jobs = _chunks(0, h, self.n_threads if pool is not None else 1, 16)
        if pool is None:
            for a, b in jobs:
                chunk(a, b)
        else:
            for f in [pool.submit(chunk, a, b) for a, b in jobs]:
                f.result()
        return out


def compute_2d_fast(data: np.ndarray, selection: FeatureSelection, n_threads: int) -> np.ndarray:
    """Features of a canonical ``yxc`` float32 image (2-D, every scale in 2-D)."""
    bands = FeatureBands(data, selection, n_threads)
    if n_threads <= 1:
        return bands.compute()
    with ThreadPoolExecutor(n_threads) as pool:
        return bands.compute(pool)
