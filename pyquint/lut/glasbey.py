"""pyquint's own Glasbey palettes (Glasbey, van der Heijden, Toh & Gray 2007).

A Glasbey palette is built by sequential farthest-point selection: starting from fixed
colour(s), each new colour is the one of the candidate set (here every one of the 2**24
8-bit sRGB colours) whose smallest distance to the colours chosen so far is largest, with
distances measured in a perceptual colour space. Ties go to the lowest ``r*65536+g*256+b``.

The three variants are made to reproduce Fiji's files (``luts/`` of the Fiji distribution):

``glasbey``
    First colour white; distances in CIELAB with the D50 white of ICC colour management
    (sRGB decoded, the ICC sRGB profile's D50 matrix). This gives exactly the 256 colours
    of Fiji's table (G. Landini, 2009, from Glasbey et al.), 252 of them at the same index:
    entries 145/146 and 169/170 come out swapped (near-ties, 0.0007 and 0.0004 apart in
    CIELAB, decided by the matrix's 4th decimal: the full-precision matrix gives Fiji's order
    of these colours but a different colour at entry 17; see docs/luts.md). Entries 1-3 are blue (0,0,255), red (255,0,0), green (0,255,0).
``glasbey_on_dark``
    First colour black; distances in CAM02-UCS (CIECAM02 under sRGB viewing conditions,
    Luo et al. 2006); candidates closer than 35 to black are excluded. This is the
    algorithm of the ``glasbey`` tool Fiji's file was made with, and reproduces it exactly.
``glasbey_inverted``
    ``glasbey`` colours inverted (255 - c) and quantised the way ImageJ's
    Image > Type > 8-bit Color did when Fiji's file was made (Heckbert median cut on a
    32x32x32 histogram; colours become multiples of 8 and are reordered; see
    :func:`median_cut_palette`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import InputError
from .formats import PYQUINT_LUT_DIR, Lut, read_lut

__all__ = [
    "GLASBEY_VARIANTS",
    "cam02ucs_from_srgb",
    "farthest_point_palette",
    "glasbey_lut",
    "glasbey_palette",
    "lab_d50_from_srgb",
    "median_cut_palette",
]

GLASBEY_VARIANTS = ("glasbey", "glasbey_on_dark", "glasbey_inverted")
_BLOCK = 8  # candidate blocks are 8x8x8 sub-cubes of the RGB cube
_CHUNK = 1 << 20

# ---------------------------------------------------------------- colour spaces
# sRGB (IEC 61966-2-1): the XYZ -> linear RGB matrix as specified; RGB -> XYZ is its inverse.
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
_SRGB_TO_XYZ = np.linalg.inv(_XYZ_TO_SRGB)
# The ICC sRGB profile's colorants (already adapted to the D50 connection space, 4 decimals)
_SRGB_TO_XYZ_D50 = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
_D50 = np.array([0.96422, 1.0, 0.82521])
_D65 = np.array([95.047, 100.0, 108.883])


def _srgb_decode(rgb255: np.ndarray) -> np.ndarray:
    """8-bit sRGB values -> linear light 0..1 (float64), via a 256-entry table."""
    v = np.arange(256) / 255.0
    table = np.where(v < 0.04045, v / 12.92, ((v + 0.055) / (1 + 0.055)) ** 2.4)
    return table[np.asarray(rgb255, dtype=np.intp)]


def lab_d50_from_srgb(rgb255: np.ndarray) -> np.ndarray:
    """CIELAB (D50 white, as in ICC colour management) of 8-bit sRGB colours, shape (..., 3)."""
    linear = _srgb_decode(rgb255)
    t = np.einsum("ij,...j->...i", _SRGB_TO_XYZ_D50, linear) / _D50
    eps = (6.0 / 29.0) ** 3
    f = np.where(t > eps, np.cbrt(t), t / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    return np.stack(
        [116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


class _Ciecam02:
    """CIECAM02 constants for sRGB viewing conditions: D65 white, Y_b = 20,
    L_A = 64/pi/5 cd/m^2, average surround."""

    M_CAT02 = np.array([[0.7328, 0.4296, -0.1624], [-0.7036, 1.6975, 0.0061], [0.0030, 0.0136, 0.9834]])
    M_HPE = np.array([[0.38971, 0.68898, -0.07868], [-0.22981, 1.18340, 0.04641], [0.0, 0.0, 1.0]])

    def __init__(self) -> None:
        white, y_b, l_a = _D65, 20.0, (64 / np.pi) / 5
        f, self.c, self.n_c = 1.0, 0.69, 1.0
        rgb_w = self.M_CAT02 @ white
        d = np.clip(f * (1 - (1 / 3.6) * np.exp((-l_a - 42) / 92)), 0, 1)
        self.d_rgb = d * white[1] / rgb_w + 1 - d
        k = 1 / (5 * l_a + 1)
        self.f_l = 0.2 * k**4 * (5 * l_a) + 0.1 * (1 - k**4) ** 2 * (5 * l_a) ** (1.0 / 3)
        self.n = y_b / white[1]
        self.z = 1.48 + np.sqrt(self.n)
        self.n_bb = self.n_cb = 0.725 * (1 / self.n) ** 0.2
        self.hpe_from_cat = self.M_HPE @ np.linalg.inv(self.M_CAT02)
        rgbp_w = self.hpe_from_cat @ (self.d_rgb * rgb_w)
        tmp = ((self.f_l * rgbp_w) / 100) ** 0.42
        rgbp_aw = 400 * (tmp / (tmp + 27.13)) + 0.1
        self.a_w = (np.dot([2, 1, 1.0 / 20], rgbp_aw) - 0.305) * self.n_bb

    def jmh(self, xyz100: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb = np.inner(xyz100, self.M_CAT02)
        rgbp = np.inner(self.d_rgb * rgb, self.hpe_from_cat)
        signs = np.sign(rgbp)
        tmp = (self.f_l * signs * rgbp / 100) ** 0.42
        rgbp_a = signs * 400 * (tmp / (tmp + 27.13)) + 0.1
        a = np.inner(rgbp_a, [1, -12.0 / 11, 1.0 / 11])
        b = np.inner(rgbp_a, [1.0 / 9, 1.0 / 9, -2.0 / 9])
        h_rad = np.arctan2(b, a)
        h = np.rad2deg(h_rad) % 360
        big_a = (np.inner(rgbp_a, [2, 1, 1.0 / 20]) - 0.305) * self.n_bb
        j = 100 * (big_a / self.a_w) ** (self.c * self.z)
        e = (12500.0 / 13) * self.n_c * self.n_cb * (np.cos(h_rad + 2) + 3.8)
        t = e * np.sqrt(a**2 + b**2) / np.inner(rgbp_a, [1, 1, 21.0 / 20])
        c = t**0.9 * (j / 100) ** 0.5 * (1.64 - 0.29**self.n) ** 0.73
        return j, c * self.f_l**0.25, h


def cam02ucs_from_srgb(rgb255: np.ndarray) -> np.ndarray:
    """CAM02-UCS ``(J', a', b')`` (Luo, Cui & Li 2006) of 8-bit sRGB colours, shape (..., 3)."""
    cam = _Ciecam02()
    xyz100 = np.einsum("ij,...j->...i", _SRGB_TO_XYZ, _srgb_decode(rgb255))
    xyz100 *= 100
    j, m, h = cam.jmh(xyz100)
    c1, c2 = 0.007, 0.0228
    jp = (1 + 100 * c1) * j / (1 + c1 * j)
    mp = (1.0 / c2) * np.log(1 + c2 * m)
    h_rad = np.deg2rad(h)
    return np.stack([jp, mp * np.cos(h_rad), mp * np.sin(h_rad)], axis=-1)


_SPACES = {"cielab-d50": lab_d50_from_srgb, "cam02-ucs": cam02ucs_from_srgb}


# ---------------------------------------------------------------- farthest-point selection
def _cube_in_blocks() -> np.ndarray:
    """Every 8-bit RGB colour as a flat index ``r<<16 | g<<8 | b``, grouped in 8x8x8 blocks
    (block after block, each block in increasing index order)."""
    s = 256 // _BLOCK
    blk = np.indices((s, s, s)).reshape(3, -1).T * _BLOCK  # block origins
    off = np.indices((_BLOCK,) * 3).reshape(3, -1).T  # offsets inside a block
    rgb = (blk[:, None, :] + off[None, :, :]).reshape(-1, 3)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def _numba_kernel():
    from numba import njit

    @njit(cache=True, nogil=True)
    def select(points, gidx, dist, block, seeds, n_pick, out):  # pragma: no cover - jitted
        n_blocks = points.shape[0] // block
        lo = np.empty((n_blocks, 3))
        hi = np.empty((n_blocks, 3))
        bmax = np.full(n_blocks, -1.0)
        barg = np.zeros(n_blocks, np.int64)
        for k in range(n_blocks):
            for a in range(3):
                lo[k, a] = np.inf
                hi[k, a] = -np.inf
            for i in range(k * block, (k + 1) * block):
                if dist[i] < 0:  # excluded candidate
                    continue
                for a in range(3):
                    lo[k, a] = min(lo[k, a], points[i, a])
                    hi[k, a] = max(hi[k, a], points[i, a])
                if dist[i] > bmax[k]:
                    bmax[k] = dist[i]
                    barg[k] = i
        n_seeds = seeds.shape[0]
        for step in range(n_seeds + n_pick):
            if step < n_seeds:
                c0, c1, c2 = seeds[step, 0], seeds[step, 1], seeds[step, 2]
            else:
                best = -1.0
                bi = -1
                for k in range(n_blocks):
                    if bmax[k] > best or (bmax[k] == best and bi >= 0 and gidx[barg[k]] < gidx[bi]):
                        best = bmax[k]
                        bi = barg[k]
                out[step - n_seeds] = gidx[bi]
                c0, c1, c2 = points[bi, 0], points[bi, 1], points[bi, 2]
            for k in range(n_blocks):
                if bmax[k] < 0:
                    continue
                # smallest possible distance from the new colour to this block's box
                d0 = max(lo[k, 0] - c0, 0.0, c0 - hi[k, 0])
                d1 = max(lo[k, 1] - c1, 0.0, c1 - hi[k, 1])
                d2 = max(lo[k, 2] - c2, 0.0, c2 - hi[k, 2])
                if np.sqrt(d0 * d0 + d1 * d1 + d2 * d2) > bmax[k] * (1 + 1e-9) + 1e-9:
                    continue  # nothing in this block gets closer than its current maximum
                m = -1.0
                arg = k * block
                for i in range(k * block, (k + 1) * block):
                    di = dist[i]
                    if di < 0:
                        continue
                    d = np.sqrt((points[i, 0] - c0) ** 2 + (points[i, 1] - c1) ** 2 + (points[i, 2] - c2) ** 2)
                    if d < di:
                        di = d
                        dist[i] = d
                    if di > m:
                        m = di
                        arg = i
                bmax[k] = m
                barg[k] = arg

    return select


_KERNEL = None


def farthest_point_palette(
    points: np.ndarray,
    n: int,
    seeds: np.ndarray,
    *,
    index: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    block: int = 1,
) -> np.ndarray:
    """Sequential farthest-point selection (the Glasbey algorithm) on candidate points.

    Parameters
    ----------
    points : ndarray, shape (N, 3)
        Candidate colours in a perceptual space (float64).
    n : int
        How many candidates to pick after the seeds.
    seeds : ndarray, shape (S, 3)
        Coordinates of the fixed first colour(s).
    index : ndarray of int, shape (N,), optional
        Tie-break key of each candidate (lowest wins) and the value returned for it;
        default ``arange(N)``.
    exclude : ndarray of bool, shape (N,), optional
        Candidates that may never be picked.
    block : int
        Candidates are processed in consecutive groups of this size; a group whose bounding
        box is far from a new colour is skipped (the result does not depend on it, but the
        speed does: spatially compact groups make it fast). ``N`` must be a multiple.

    Returns
    -------
    ndarray of int64, shape (n,)
        ``index`` of the picked candidates, in order.
    """
    global _KERNEL
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] % block:
        raise InputError("points must have shape (N, 3) with N a multiple of block")
    seeds = np.ascontiguousarray(np.atleast_2d(seeds), dtype=np.float64)
    index = np.arange(points.shape[0]) if index is None else np.asarray(index, dtype=np.int64)
    dist = np.full(points.shape[0], 1000.0)
    if exclude is not None:
        dist[np.asarray(exclude, dtype=bool)] = -1.0
    if n > int(np.count_nonzero(dist >= 0)):
        raise InputError(f"cannot pick {n} colours from {np.count_nonzero(dist >= 0)} candidates")
    if _KERNEL is None:
        _KERNEL = _numba_kernel()
    out = np.empty(n, dtype=np.int64)
    _KERNEL(points, index, dist, block, seeds, n, out)
    return out


def _convert_cube(space: str, gidx: np.ndarray) -> np.ndarray:
    rgb = np.stack([gidx >> 16, (gidx >> 8) & 255, gidx & 255], axis=1)
    convert = _SPACES[space]
    out = np.empty((len(gidx), 3))
    for start in range(0, len(gidx), _CHUNK):
        out[start : start + _CHUNK] = convert(rgb[start : start + _CHUNK])
    return out


def glasbey_palette(
    n: int,
    base: list[tuple[int, int, int]] | np.ndarray = ((255, 255, 255),),
    *,
    space: str = "cielab-d50",
    min_distance_from_base: float | None = None,
) -> np.ndarray:
    """Generate ``n`` maximally distinct colours after the ``base`` colours.

    Parameters
    ----------
    n : int
        Total number of colours, base included (256 for a LUT).
    base : sequence of (r, g, b)
        Fixed first colours (white for ``glasbey``, black for ``glasbey_on_dark``).
    space : {"cielab-d50", "cam02-ucs"}
        Perceptual space in which distances are measured.
    min_distance_from_base : float, optional
        Exclude candidates within this distance of the first base colour (``glasbey``'s
        ``--no-black`` uses 35 in CAM02-UCS).

    Returns
    -------
    ndarray of uint8, shape (n, 3)
    """
    if space not in _SPACES:
        raise InputError(f"unknown colour space {space!r}; use one of {', '.join(_SPACES)}")
    base = np.asarray(base, dtype=np.int64).reshape(-1, 3)
    if n < len(base):
        raise InputError(f"n={n} is smaller than the {len(base)} base colours")
    gidx = _cube_in_blocks()
    points = _convert_cube(space, gidx)
    seeds = _SPACES[space](base)
    exclude = None
    if min_distance_from_base is not None:
        exclude = np.sqrt(((points - seeds[0]) ** 2).sum(axis=1)) <= min_distance_from_base
    picked = farthest_point_palette(
        points, n - len(base), seeds, index=gidx, exclude=exclude, block=_BLOCK**3
    )
    rgb = np.stack([picked >> 16, (picked >> 8) & 255, picked & 255], axis=1)
    return np.concatenate([base, rgb]).astype(np.uint8)


# ---------------------------------------------------------------- ImageJ's "8-bit Color"
def median_cut_palette(colors: np.ndarray, counts: np.ndarray | None = None, max_colors: int = 256) -> np.ndarray:
    """Palette ImageJ's median cut (``ij.process.MedianCut`` before 1.54h) makes of an image.

    Pixels are binned to 5 bits per channel; the bins are split at the count median along
    the longest side of their box, lowest tree level first, until ``max_colors`` boxes; each
    box's colour is the count-weighted mean of its bin origins (so multiples of 8), with
    (248, 248, 248) restored to white. Palette order is the order of the box list.

    Parameters
    ----------
    colors : ndarray of uint8, shape (K, 3)
        The image's colours.
    counts : ndarray of int, shape (K,), optional
        Pixels of each colour (default: equal, as in a LUT ramp image).
    max_colors : int

    Returns
    -------
    ndarray of uint8, shape (M, 3), M <= max_colors
    """
    colors = np.asarray(colors, dtype=np.int64).reshape(-1, 3)
    counts = np.ones(len(colors), np.int64) if counts is None else np.asarray(counts, np.int64)
    r5, g5, b5 = colors[:, 0] >> 3, colors[:, 1] >> 3, colors[:, 2] >> 3
    hist = np.bincount((b5 << 10) | (g5 << 5) | r5, weights=counts, minlength=1 << 15).astype(np.int64)
    bins = np.nonzero(hist)[0]  # histogram order: b, g, r (5 bits each)
    comp = np.stack([bins & 31, (bins >> 5) & 31, bins >> 10], axis=1)
    # sort keys per axis: the split axis first, then ImageJ's remaining order
    keys = [
        (comp[:, 0] << 10) | (comp[:, 2] << 5) | comp[:, 1],
        (comp[:, 1] << 10) | (comp[:, 2] << 5) | comp[:, 0],
        bins,
    ]
    order = np.arange(len(bins))  # positions into bins, rearranged as boxes are split
    boxes = [[0, len(bins) - 1, int(hist.sum()), 0]]  # lower, upper, count, level
    while len(boxes) < max_colors:
        split, level = -1, 255
        for k, (lower, upper, _, lev) in enumerate(boxes):
            if lower != upper and lev < level:
                split, level = k, lev
        if split < 0:
            break
        lower, upper, count, lev = boxes[split]
        part = order[lower : upper + 1]
        extent = comp[part].max(axis=0) - comp[part].min(axis=0)
        # ties go to blue, then green (ImageJ tests red, green, blue in turn, last wins)
        axis = 2 if extent[2] >= extent.max() else (1 if extent[1] >= extent[0] else 0)
        part = part[np.argsort(keys[axis][part], kind="stable")]
        order[lower : upper + 1] = part
        csum, median = 0, lower
        while median <= upper - 1 and csum < count // 2:
            csum += int(hist[bins[order[median]]])
            median += 1
        boxes[split] = [lower, median - 1, csum, lev + 1]
        boxes.append([median, upper, count - csum, lev + 1])
    palette = np.empty((len(boxes), 3), dtype=np.uint8)
    for k, (lower, upper, count, _) in enumerate(boxes):
        part = order[lower : upper + 1]
        w = hist[bins[part]].astype(np.float32)
        mean = [int(np.float32((comp[part, a] * 8).astype(np.float32) @ w) / np.float32(count)) for a in range(3)]
        palette[k] = (255, 255, 255) if mean == [248, 248, 248] else mean
    return palette


# ---------------------------------------------------------------- the three LUTs
@functools.lru_cache(maxsize=1)
def _glasbey_table() -> np.ndarray:
    table = glasbey_palette(256, [(255, 255, 255)], space="cielab-d50")
    table.setflags(write=False)
    return table


def glasbey_lut(variant: str = "glasbey", *, cached: bool = True) -> Lut:
    """One of pyquint's Glasbey LUTs.

    Parameters
    ----------
    variant : {"glasbey", "glasbey_on_dark", "glasbey_inverted"}
        Spaces are accepted for underscores ("glasbey on dark"), case-insensitively.
    cached : bool
        Read the generator's output shipped in ``pyquint/lut/tables/`` when it is there
        (a test keeps it equal to a fresh generation); ``False`` always runs the generator
        (about 5-10 s per variant).
    """
    key = str(variant).strip().lower().replace(" ", "_")
    if key.endswith(".lut"):
        key = key[:-4]
    if key not in GLASBEY_VARIANTS:
        raise InputError(f"unknown Glasbey variant {variant!r}; use one of {', '.join(GLASBEY_VARIANTS)}")
    if cached:
        path = PYQUINT_LUT_DIR / f"{key}.lut"
        if path.is_file():
            return read_lut(path)
    if key == "glasbey":
        table = _glasbey_table()
    elif key == "glasbey_on_dark":
        table = glasbey_palette(256, [(0, 0, 0)], space="cam02-ucs", min_distance_from_base=35)
    else:  # glasbey_inverted
        inverted = 255 - _glasbey_table().astype(np.int64)
        table = median_cut_palette(inverted, max_colors=256)
        if len(table) != 256:  # pragma: no cover - the glasbey colours stay distinct in 15 bits
            table = np.vstack([table, np.zeros((256 - len(table), 3), np.uint8)])
    return Lut(key, table)
