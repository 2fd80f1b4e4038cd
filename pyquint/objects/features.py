"""Object features with ilastik's definitions, ids and display names.

Feature ids are ilastik's (vigra's) names, e.g. ``"Count"``, ``"Mean"``, ``"RegionCenter"``,
``"Convexity"``; :data:`FEATURES` maps each to its plugin, its display name (the column name
of ilastik's CSV table, from [DOC] ``objectfeatures.json`` / ``vigra_objfeats.py``) and
whether it is computed per raw channel.

Definitions (vigra ``extractRegionFeatures`` on the raw image cast to float32, background 0
ignored):

- Count = pixels; Sum; Mean; Variance = m2/N (population); Skewness = √N·m3/m2^1.5;
  Kurtosis = N·m4/m2² − 3 (excess); m_k are central sums. Constant objects give NaN
  (ilastik's classifier turns NaN into 0).
- Quantiles 0, 10, 25, 50, 75, 90, 100 %: 0 % and 100 % are the object's min and max; the
  others interpolate linearly inside a 64-bin histogram whose range is the global min..max
  over all object pixels (vigra's ``GlobalRangeHistogram<64>`` + ``StandardQuantiles``),
  the first and last occupied bins being narrowed to the object's own min and max.
- RegionCenter = mean pixel coordinate, RegionRadii = √ of the eigenvalues of the
  population coordinate covariance (descending), RegionAxes = its eigenvectors (component i
  of axis j at column i·d + j, each axis's sign fixed so its largest component is positive),
  Coord<Minimum>, Coord<Maximum> + 1 (exclusive). Coordinates in vigra order: x, y[, z].
- Convex hull (2-D only, shape.py): vigra's pixel-count version: HullVolume = pixels whose
  centre lies in the convex hull of the object's pixel centres; Convexity = Count/HullVolume.
- Skeleton length (2-D only): pyquint's approximation, see shape.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .shape import shape_features

__all__ = [
    "DEFAULT_FEATURES",
    "FEATURES",
    "FeatureInfo",
    "as_raw_channels",
    "column_names",
    "compute_object_features",
    "feature_matrix",
    "feature_table",
]

STANDARD = "Standard Object Features"
HULL2D = "2D Convex Hull Features"
SKELETON2D = "2D Skeleton Features"
N_BINS = 64
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


@dataclass(frozen=True)
class FeatureInfo:
    """One object feature: ilastik id, plugin, display name, per-channel or not."""

    name: str
    plugin: str
    display: str
    per_channel: bool = False
    only_2d: bool = False


_SPECS = [
    ("Count", STANDARD, "Size in pixels", False),
    ("Sum", STANDARD, "Total Intensity", True),
    ("Mean", STANDARD, "Mean Intensity", True),
    ("Variance", STANDARD, "Variance of Intensity", True),
    ("Skewness", STANDARD, "Skewness of Intensity", True),
    ("Kurtosis", STANDARD, "Kurtosis of Intensity", True),
    ("Minimum", STANDARD, "Minimum intensity", True),
    ("Maximum", STANDARD, "Maximum intensity", True),
    ("Quantiles", STANDARD, "Quantiles of Intensity", True),
    ("Histogram", STANDARD, "Histogram of Intensity", True),
    ("RegionCenter", STANDARD, "Center of the object", False),
    ("RegionRadii", STANDARD, "Radii of the object", False),
    ("RegionAxes", STANDARD, "Principal components of the object", False),
    ("Coord<Minimum>", STANDARD, "Bounding Box Minimum", False),
    ("Coord<Maximum>", STANDARD, "Bounding Box Maximum", False),
    ("InputVolume", HULL2D, "Object Area", False),
    ("HullVolume", HULL2D, "Convex Hull Area", False),
    ("Convexity", HULL2D, "Convexity", False),
    ("DefectCount", HULL2D, "Number of Defects", False),
    ("DefectVolumeMean", HULL2D, "Mean Defect Area", False),
    ("DefectVolumeVariance", HULL2D, "Variance of Defect Area", False),
    ("DefectVolumeSkewness", HULL2D, "Skewness of Defect Area", False),
    ("DefectVolumeKurtosis", HULL2D, "Kurtosis of Defect Area", False),
    ("DefectDisplacementMean", HULL2D, "Mean Defect Displacement", False),
    ("InputCenter", HULL2D, "Object Center", False),
    ("HullCenter", HULL2D, "Convex Hull Center", False),
    ("DefectCenter", HULL2D, "Defect Center", False),
    ("Total Length", SKELETON2D, "Length of the Skeleton", False),
]
FEATURES: dict[str, FeatureInfo] = {
    name: FeatureInfo(name, plugin, display, per_channel, plugin != STANDARD)
    for name, plugin, display, per_channel in _SPECS
}
_BY_DISPLAY = {info.display.lower(): name for name, info in FEATURES.items()}

#: Features an ObjectClassifier uses by default: intensity statistics and shape, no location
#: (position in the image says nothing about cell vs. artefact and would not generalise).
DEFAULT_FEATURES: tuple[str, ...] = (
    "Count", "Mean", "Variance", "Skewness", "Kurtosis", "Minimum", "Maximum", "Quantiles",
    "RegionRadii", "Convexity", "DefectCount", "DefectVolumeMean", "Total Length",
)


def resolve_features(features: Iterable[str] | None, ndim: int = 2) -> list[str]:
    """Feature ids from ids or display names (case-insensitive), in ilastik's column order
    (plugin name, then feature id, both sorted as strings)."""
    if features is None:
        features = DEFAULT_FEATURES
    if isinstance(features, str):
        features = [features]
    out: list[str] = []
    for raw in features:
        name = raw if raw in FEATURES else _BY_DISPLAY.get(str(raw).lower())
        if name is None:
            lowered = {k.lower(): k for k in FEATURES}
            name = lowered.get(str(raw).lower())
        if name is None:
            raise InputError(
                f"unknown object feature {raw!r}; known: {', '.join(FEATURES)} "
                "(ilastik ids or display names)"
            )
        if name not in out:
            out.append(name)
    if ndim == 3:
        dropped = [n for n in out if FEATURES[n].only_2d]
        if dropped:
            raise InputError(f"features {', '.join(dropped)} are 2-D only; leave them out for 3-D labels")
    return sorted(out, key=lambda n: (FEATURES[n].plugin, n))


def as_raw_channels(raw: np.ndarray, labels_shape: tuple[int, ...], name: str = "raw image") -> np.ndarray:
    """Raw pixels as float32 with a trailing channel axis matching ``labels_shape``.

    ``raw`` may have the labels' spatial shape (one channel) or that shape plus a channel
    axis (canonical ``yxc``/``zyxc``).
    """
    raw = np.asarray(raw)
    if raw.dtype.kind not in "biuf":
        raise InputError(f"{name}: unsupported pixel type {raw.dtype}")
    if raw.shape == tuple(labels_shape):
        raw = raw[..., np.newaxis]
    elif raw.ndim != len(labels_shape) + 1 or raw.shape[:-1] != tuple(labels_shape):
        raise InputError(
            f"{name} of shape {raw.shape} does not match the object labels of shape "
            f"{tuple(labels_shape)} (expected {tuple(labels_shape)} or {tuple(labels_shape)} + (channels,))"
        )
    # vigra_objfeats casts raw to float32 before extracting features.
    return raw.astype(np.float32, copy=False)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"object labels must be 2-D (yx) or 3-D (zyx), not of shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise InputError(f"object labels must be integers, not {labels.dtype}")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError("object labels must be >= 0")
    return labels.astype(np.int64, copy=False)


class _Groups:
    """Foreground pixels grouped by object id, sorted once, for reductions per object."""

    def __init__(self, labels: np.ndarray):
        self.n = int(labels.max()) if labels.size else 0
        flat = labels.ravel()
        self.index = np.flatnonzero(flat)
        ids = flat[self.index]
        order = np.argsort(ids, kind="stable")
        self.index = self.index[order]
        self.ids = ids[order]
        self.count = np.bincount(self.ids, minlength=self.n + 1)[1:].astype(np.float64)
        self.present = self.count > 0
        self.starts = np.searchsorted(self.ids, np.arange(1, self.n + 1))[self.present]
        # coordinates in vigra order: x, y[, z]
        coords = np.unravel_index(self.index, labels.shape)
        self.coords = [c.astype(np.float64) for c in coords[::-1]]

    def reduce(self, values: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
        out = np.full(self.n, np.nan)
        if self.starts.size:
            out[self.present] = ufunc.reduceat(values, self.starts)
        return out

    def total(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.ids, weights=values, minlength=self.n + 1)[1:]


def _moments(g: _Groups, v: np.ndarray) -> dict[str, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        n = g.count
        s = g.total(v)
        mean = s / n
        d = v - mean[g.ids - 1]
        d2 = d * d
        m2 = g.total(d2)
        m3 = g.total(d2 * d)
        m4 = g.total(d2 * d2)
        return {
            "Sum": s,
            "Mean": mean,
            "Variance": m2 / n,
            "Skewness": np.sqrt(n) * m3 / m2**1.5,
            "Kurtosis": n * m4 / (m2 * m2) - 3.0,
        }


def _histogram(g: _Groups, v: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Per-object 64-bin histograms over the global range, as vigra's RangeHistogramBase."""
    if v.size == 0:
        return np.zeros((g.n, N_BINS)), 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        hi += N_BINS * np.finfo(np.float64).eps
    scale = N_BINS / (hi - lo)
    # the global maximum maps onto 64 and goes into the last bin; clip rounding strays
    bins = np.clip(np.floor(scale * (v - lo)), 0, N_BINS - 1).astype(np.int64)
    hist = np.bincount((g.ids - 1) * N_BINS + bins, minlength=g.n * N_BINS)
    return hist.reshape(g.n, N_BINS).astype(np.float64), lo, scale


def _quantiles(hist: np.ndarray, lo: float, scale: float, vmin: np.ndarray, vmax: np.ndarray,
               count: np.ndarray) -> np.ndarray:
    """vigra's StandardQuantiles from a histogram (see the module docstring)."""
    n = hist.shape[0]
    out = np.full((n, len(QUANTILES)), np.nan)
    ok = count > 0
    if not ok.any():
        return out
    cum = np.cumsum(hist[ok], axis=1)
    cnt = count[ok]
    mapped_min = scale * (vmin[ok] - lo)
    mapped_max = scale * (vmax[ok] - lo)
    rows = np.arange(cum.shape[0])
    res = np.empty((cum.shape[0], len(QUANTILES)))
    for k, q in enumerate(QUANTILES):
        if q == 0.0:
            res[:, k] = vmin[ok]
            continue
        if q == 1.0:
            res[:, k] = vmax[ok]
            continue
        qcount = cnt * q
        j = np.argmax(cum >= qcount[:, None], axis=1)
        prev = np.where(j > 0, cum[rows, np.maximum(j - 1, 0)], 0.0)
        lower = np.maximum(j.astype(np.float64), mapped_min)
        upper = np.minimum(j + 1.0, mapped_max)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (qcount - prev) / (cum[rows, j] - prev) * (upper - lower)
        res[:, k] = (lower + t) / scale + lo
    out[ok] = res
    return out


def _coordinate_features(g: _Groups, wanted: set[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    d = len(g.coords)
    with np.errstate(invalid="ignore", divide="ignore"):
        centers = np.stack([g.total(c) / g.count for c in g.coords], axis=1) if g.n else np.zeros((0, d))
    out["RegionCenter"] = centers
    if "Coord<Minimum>" in wanted:
        out["Coord<Minimum>"] = np.stack([g.reduce(c, np.minimum) for c in g.coords], axis=1)
    if "Coord<Maximum>" in wanted:
        out["Coord<Maximum>"] = np.stack([g.reduce(c, np.maximum) + 1 for c in g.coords], axis=1)
    if wanted & {"RegionRadii", "RegionAxes"}:
        cov = np.zeros((g.n, d, d))
        dev = [c - centers[g.ids - 1, i] for i, c in enumerate(g.coords)]
        with np.errstate(invalid="ignore", divide="ignore"):
            for i in range(d):
                for j in range(i, d):
                    cov[:, i, j] = cov[:, j, i] = g.total(dev[i] * dev[j]) / g.count
        valid = g.present
        evals = np.full((g.n, d), np.nan)
        evecs = np.full((g.n, d, d), np.nan)
        if valid.any():
            w, v = np.linalg.eigh(cov[valid])
            w, v = w[:, ::-1], v[:, :, ::-1]  # descending, like vigra
            # eigenvector signs are arbitrary: make each axis's largest component positive
            big = np.take_along_axis(v, np.abs(v).argmax(axis=1)[:, None, :], axis=1)
            v = v * np.where(big < 0, -1.0, 1.0)
            evals[valid], evecs[valid] = w, v
        out["RegionRadii"] = np.sqrt(np.clip(evals, 0, None))
        out["RegionAxes"] = evecs.reshape(g.n, d * d)
    return out


def compute_object_features(
    raw: np.ndarray,
    labels: np.ndarray,
    features: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Object features of every object id 1..labels.max().

    Parameters
    ----------
    raw : ndarray
        Raw intensities: the labels' spatial shape, or that shape + channels (``yxc``/``zyxc``).
    labels : ndarray of int
        Object labels, 2-D (``yx``) or 3-D (``zyx``), 0 = background.
    features : iterable of str, optional
        ilastik feature ids or display names (default :data:`DEFAULT_FEATURES`).

    Returns
    -------
    dict
        Feature id -> float64 array ``(n_objects, k)``, in ilastik's column order. Per-channel
        features hold ``k_per_channel * n_channels`` columns, channel-major. Ids without
        pixels get NaN rows.
    """
    labels = _check_labels(labels)
    names = resolve_features(features, labels.ndim)
    channels = as_raw_channels(raw, labels.shape)
    g = _Groups(labels)
    wanted = set(names)
    result: dict[str, np.ndarray] = {}
    if "Count" in wanted:
        result["Count"] = g.count[:, None]
    per_channel = [n for n in names if FEATURES[n].per_channel]
    if per_channel:
        stats: dict[str, list[np.ndarray]] = {n: [] for n in per_channel}
        for c in range(channels.shape[-1]):
            v = channels[..., c].ravel()[g.index].astype(np.float64)
            moments = _moments(g, v)
            vmin, vmax = g.reduce(v, np.minimum), g.reduce(v, np.maximum)
            for n in per_channel:
                if n in moments:
                    stats[n].append(moments[n][:, None])
                elif n == "Minimum":
                    stats[n].append(vmin[:, None])
                elif n == "Maximum":
                    stats[n].append(vmax[:, None])
            if wanted & {"Quantiles", "Histogram"}:
                hist, lo, scale = _histogram(g, v)
                if "Histogram" in wanted:
                    stats["Histogram"].append(hist)
                if "Quantiles" in wanted:
                    stats["Quantiles"].append(_quantiles(hist, lo, scale, vmin, vmax, g.count))
        for n in per_channel:
            result[n] = np.concatenate(stats[n], axis=1)
    coord_names = {"RegionCenter", "RegionRadii", "RegionAxes", "Coord<Minimum>", "Coord<Maximum>"}
    if wanted & coord_names:
        coord = _coordinate_features(g, wanted)
        result.update({k: v for k, v in coord.items() if k in wanted})
    shape_names = [n for n in names if FEATURES[n].plugin != STANDARD]
    if shape_names:
        result.update(shape_features(labels, g.n, shape_names))
    return {n: np.asarray(result[n], dtype=np.float64).reshape(g.n, _width(result[n])) for n in names}


def _width(values: np.ndarray) -> int:
    values = np.asarray(values)
    return 1 if values.ndim < 2 else int(np.prod(values.shape[1:]))


def column_names(features: dict[str, np.ndarray]) -> list[str]:
    """Table column names: the display name, with ``_k`` suffixes for vector features."""
    cols: list[str] = []
    for name, values in features.items():
        display = FEATURES[name].display if name in FEATURES else name
        k = values.shape[1]
        cols.extend([display] if k == 1 else [f"{display}_{i}" for i in range(k)])
    return cols


def feature_table(features: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """(column names, float64 matrix) of a feature dict, for the CSV table."""
    n = next(iter(features.values())).shape[0] if features else 0
    matrix = np.concatenate(list(features.values()), axis=1) if features else np.zeros((n, 0))
    return column_names(features), matrix


def feature_matrix(features: dict[str, np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """float32 classifier input: the named features' columns, NaN/inf replaced by 0 (ilastik)."""
    names = list(features) if names is None else list(names)
    missing = [n for n in names if n not in features]
    if missing:
        raise InputError(f"features not computed: {', '.join(missing)}")
    if not names:
        raise InputError("no features selected")
    matrix = np.concatenate([features[n] for n in names], axis=1)
    matrix = np.where(np.isfinite(matrix), matrix, 0.0)
    return matrix.astype(np.float32)
