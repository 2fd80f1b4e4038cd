"""2-D shape features per object: ilastik's "2D Convex Hull Features" and a skeleton length.

Convex hull (vigra ``ConvexHullFeatures``, pixel-count version, which ilastik's plugin calls
through ``extract2DConvexHullFeatures``): the hull is the convex hull of the object's pixel
centres plus vigra's seed points (centre, centre + ½ along each axis); HullVolume counts the
bounding-box pixels whose centre lies inside or on it; Convexity = Count / HullVolume;
defects are the hull pixels outside the object, split into 4-connected components
(DefectCount). DefectVolumeMean/Variance/Skewness/Kurtosis are the unbiased statistics of
the defect sizes (0 when there are too few defects: variance needs 2, skewness 3, kurtosis
4); DefectDisplacementMean = Σ size·|defect centre − object centre| / Σ size.

Skeleton ("Length of the Skeleton"): pyquint's own measure, not vigra's pruned skeleton
graph: skimage's skeleton of the object, its length counting 1 per 4-neighbour link and √2
per diagonal link not already bridged by a 4-neighbour. A round cell gives a short skeleton
relative to its size; a long thin streak a long one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["convex_hull_mask", "shape_features", "skeleton_length"]

HULL_NAMES = (
    "InputVolume", "HullVolume", "Convexity", "DefectCount", "DefectVolumeMean",
    "DefectVolumeVariance", "DefectVolumeSkewness", "DefectVolumeKurtosis",
    "DefectDisplacementMean", "InputCenter", "HullCenter", "DefectCenter",
)
_VECTOR = {"InputCenter", "HullCenter", "DefectCenter"}


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _hull_vertices(points: np.ndarray) -> list[tuple[float, float]]:
    """Counter-clockwise convex hull of (x, y) points (Andrew's monotone chain)."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) <= 2:
        return pts
    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask``'s array whose centre lies in the convex hull of its pixel centres
    (with vigra's seed points, so a one-pixel-wide object keeps a hull)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros_like(mask, dtype=bool)
    # Only the outermost pixel of each row can be a hull vertex.
    rows = np.flatnonzero(mask.any(axis=1))
    first = mask[rows].argmax(axis=1)
    last = mask.shape[1] - 1 - mask[rows, ::-1].argmax(axis=1)
    cx, cy = xs.mean(), ys.mean()
    points = np.concatenate([
        np.stack([first, rows], axis=1), np.stack([last, rows], axis=1),
        [[cx, cy], [cx + 0.5, cy], [cx, cy + 0.5]],
    ]).astype(np.float64)
    verts = _hull_vertices(points)
    gy, gx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float64)
    inside = np.ones(mask.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        (ax, ay), (bx, by) = verts[i], verts[(i + 1) % n]
        length = np.hypot(bx - ax, by - ay)
        if length == 0:
            continue
        # signed distance to the left of a->b (interior of a CCW polygon) must be >= -tol
        inside &= ((bx - ax) * (gy - ay) - (by - ay) * (gx - ax)) / length >= -1e-9
    return inside | mask.astype(bool)


def skeleton_length(mask: np.ndarray) -> float:
    """Length of the object's skeleton: 1 per 4-link, √2 per unbridged diagonal link."""
    from skimage.morphology import skeletonize

    skel = skeletonize(np.pad(mask.astype(bool), 1))
    s = skel.astype(np.int32)
    horizontal = int((s[:, 1:] & s[:, :-1]).sum())
    vertical = int((s[1:, :] & s[:-1, :]).sum())
    # a diagonal link counts only when neither pixel it skips is on the skeleton
    d1 = s[1:, 1:] & s[:-1, :-1] & (1 - s[:-1, 1:]) & (1 - s[1:, :-1])
    d2 = s[1:, :-1] & s[:-1, 1:] & (1 - s[:-1, :-1]) & (1 - s[1:, 1:])
    return horizontal + vertical + np.sqrt(2.0) * int(d1.sum() + d2.sum())


def _unbiased_stats(sizes: np.ndarray) -> tuple[float, float, float, float]:
    n = float(sizes.size)
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0
    mean = float(sizes.mean())
    d = sizes - mean
    m2, m3, m4 = (d**2).sum(), (d**3).sum(), (d**4).sum()
    var = skew = kurt = 0.0
    if n > 1:
        var = m2 / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if n > 2:
            skew = np.sqrt(n * (n - 1)) / (n - 2) * (np.sqrt(n) * m3 / m2**1.5)
        if n > 3:
            kurt = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * (n * m4 / m2**2 - 3.0) + 6.0)
    return mean, float(var), float(skew), float(kurt)


def _hull_row(mask: np.ndarray, offset: tuple[int, int]) -> dict[str, object]:
    hull = convex_hull_mask(mask)
    ys, xs = np.nonzero(mask)
    count = ys.size
    center = np.array([xs.mean(), ys.mean()])
    hy, hx = np.nonzero(hull)
    defects = hull & ~mask
    dlabels, n_def = ndi.label(defects)
    oy, ox = offset
    row: dict[str, object] = {
        "InputVolume": count,
        "HullVolume": hy.size,
        "Convexity": count / hy.size,
        "DefectCount": n_def,
        "InputCenter": center + (ox, oy),
        "HullCenter": np.array([hx.mean() + ox, hy.mean() + oy]),
    }
    if n_def:
        dy, dx = np.nonzero(defects)
        row["DefectCenter"] = np.array([dx.mean() + ox, dy.mean() + oy])
        idx = np.arange(1, n_def + 1)
        sizes = ndi.sum_labels(defects, dlabels, idx)
        cyx = np.array(ndi.center_of_mass(defects, dlabels, idx)).reshape(n_def, 2)
        dist = np.hypot(cyx[:, 1] - center[0], cyx[:, 0] - center[1])
        row["DefectDisplacementMean"] = float((sizes * dist).sum() / sizes.sum())
        (row["DefectVolumeMean"], row["DefectVolumeVariance"], row["DefectVolumeSkewness"],
         row["DefectVolumeKurtosis"]) = _unbiased_stats(np.asarray(sizes, dtype=np.float64))
    else:
        row["DefectCenter"] = np.array([np.nan, np.nan])  # vigra: mean of no pixels
        row["DefectDisplacementMean"] = 0.0
        row["DefectVolumeMean"] = row["DefectVolumeVariance"] = 0.0
        row["DefectVolumeSkewness"] = row["DefectVolumeKurtosis"] = 0.0
    return row


def shape_features(labels: np.ndarray, n_objects: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Convex-hull and skeleton features of objects 1..n_objects of a 2-D label image."""
    out = {n: np.full((n_objects, 2 if n in _VECTOR else 1), np.nan) for n in names}
    want_hull = any(n in HULL_NAMES for n in names)
    want_skeleton = "Total Length" in names
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n_objects)):
        if sl is None:
            continue
        mask = labels[sl] == i + 1
        if want_hull:
            row = _hull_row(mask, (sl[0].start, sl[1].start))
            for n in names:
                if n in row:
                    out[n][i] = row[n]
        if want_skeleton:
            out["Total Length"][i] = skeleton_length(mask)
    return out
