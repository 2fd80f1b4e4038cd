"""ilastik's "Threshold and Size Filter": probabilities -> smoothed -> binary -> labelled objects.

Follows ``ilastik/applets/thresholdTwoLevels`` (see ``specs/ilastik.md`` §5):

1. probabilities as float32, rescaled to 0..1 (uint8 /255, uint16 /65535, an HDF5
   ``drange`` attribute when present);
2. Gaussian smoothing per channel over the spatial axes with vigra's ``window_size=2.0``
   (radius ``floor(2σ + 0.5)``, taps normalised to sum 1, mirror borders); skipped entirely
   when any σ < 0.1;
3. *Simple*: ``smoothed[channel] >= threshold`` (inclusive);
   *Hysteresis*: cores ``smoothed[core_channel] >= high_threshold``, size-filtered; the final
   mask ``smoothed[channel] (+ smoothed[core_channel] when the channels differ) >= threshold``;
   a final component is kept when it overlaps a surviving core;
4. connected components with the direct neighbourhood (4 in 2-D, 6 in 3-D), size filter
   ``min_size <= count <= max_size``, ids 1..n in scan order, uint32.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..io import h5_dataset_name, read_image, split_h5_path, to_canonical

__all__ = [
    "METHODS",
    "gaussian_kernel",
    "load_probabilities",
    "normalize_probabilities",
    "relabel_sequential",
    "size_filter",
    "smooth",
    "threshold_objects",
]

METHODS = ("simple", "hysteresis")
# vigra's gaussianSmoothing(window_size=2.0) as called by ilastik's OpAnisotropicGaussianSmoothing5d.
WINDOW_SIZE = 2.0
MIN_SIGMA = 0.1
#: A larger σ would need a kernel wider than any image (and overflows int at 1e300).
MAX_SIGMA = 1000.0


# --------------------------------------------------------------------------- input
def normalize_probabilities(data: np.ndarray, drange: tuple[float, float] | None = None) -> np.ndarray:
    """Probabilities as float32 in 0..1, as ilastik's threshold applet sees them.

    uint8 is divided by 255 and uint16 by 65535 (their data range); floats are used as
    they are unless ``drange`` (e.g. an HDF5 ``drange`` attribute) says otherwise.
    """
    data = np.asarray(data)
    if drange is None:
        if data.dtype == np.uint8:
            drange = (0.0, 255.0)
        elif data.dtype == np.uint16:
            drange = (0.0, 65535.0)
        elif data.dtype.kind in "iub":
            raise InputError(
                f"probabilities of type {data.dtype} have no known range: use float (0..1), "
                "uint8 (0..255) or uint16 (0..65535)"
            )
    out = data.astype(np.float32)
    if drange is not None and (float(drange[0]), float(drange[1])) != (0.0, 1.0):
        lo, hi = float(drange[0]), float(drange[1])
        if hi <= lo:
            raise InputError(f"invalid probability data range {drange}")
        out = (out - np.float32(lo)) / np.float32(hi - lo)
    return out


def _h5_drange(path: str | os.PathLike) -> tuple[float, float] | None:
    file, inner = split_h5_path(path)
    if file.suffix.lower() not in (".h5", ".hdf5", ".hdf"):
        return None
    import h5py

    with h5py.File(file, "r") as f:
        inner = h5_dataset_name(f, inner)
        if inner is None:
            return None
        value = f[inner].attrs.get("drange")
    if value is None:
        return None
    value = np.asarray(value, dtype=float).ravel()
    return (float(value[0]), float(value[1])) if value.size == 2 else None


def read_probability_file(path: str | os.PathLike, axes: str | None = None
                          ) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """A probability file as stored: ``(data, axes, drange)``; an HDF5 file without an inner
    path is read at ilastik's ``exported_data`` when it has one, ``drange`` is its attribute."""
    file, inner = split_h5_path(path)
    if file.suffix.lower() in (".h5", ".hdf5", ".hdf") and inner is None:
        import h5py

        try:
            with h5py.File(file, "r") as f:
                if "exported_data" in f:
                    path = f"{file}/exported_data"
        except OSError as exc:
            raise InputError(f"{file}: not a readable HDF5 file ({exc})") from exc
    data, data_axes = read_image(path, axes)
    return data, data_axes, _h5_drange(path)


def load_probabilities(path: str | os.PathLike, axes: str | None = None) -> tuple[np.ndarray, str]:
    """Read a probability map (pyquint/ilastik H5 ``exported_data``, TIFF, PNG, .npy).

    Returns
    -------
    proba : float32 ndarray
        Canonical axes (``yxc`` or ``zyxc``), values rescaled to 0..1.
    axes : str
        ``"yxc"`` or ``"zyxc"``.
    """
    data, data_axes, drange = read_probability_file(path, axes)
    data, canon = to_canonical(data, data_axes)
    if canon.startswith("t"):
        raise InputError(f"{path}: time series are not supported; give one time point per file")
    try:
        return normalize_probabilities(data, drange), canon
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _as_canonical(proba: np.ndarray, axes: str | None) -> np.ndarray:
    proba = np.asarray(proba)
    if axes is None:
        if proba.ndim == 2:
            axes = "yx"
        elif proba.ndim == 3:
            axes = "yxc"
        elif proba.ndim == 4:
            axes = "zyxc"
        else:
            raise InputError(
                f"probabilities of shape {proba.shape}: give a 2-D (yx), 3-D (yxc) or 4-D (zyxc) "
                "array, or name its axes"
            )
    data, canon = to_canonical(proba, axes)
    if canon.startswith("t"):
        raise InputError("time series are not supported; threshold one time point at a time")
    return data


# --------------------------------------------------------------------------- smoothing
def gaussian_kernel(sigma: float, window_size: float = WINDOW_SIZE) -> np.ndarray:
    """vigra's normalised Gaussian taps: radius ``int(window_size * sigma + 0.5)``."""
    radius = int(window_size * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _sigmas(sigma: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    values = (float(sigma),) * ndim if np.isscalar(sigma) else tuple(float(s) for s in sigma)
    if len(values) == ndim + 1 and ndim == 2:
        values = values[1:]  # (z, y, x) as ilastik stores it, for a 2-D image
    if len(values) != ndim:
        raise InputError(f"sigma {sigma!r}: give one value per spatial axis ({ndim}) or one for all")
    if any(not np.isfinite(s) or not 0 <= s <= MAX_SIGMA for s in values):
        raise InputError(f"sigma {sigma!r}: values must lie in 0..{MAX_SIGMA:g}")
    return values


_SETTING_TYPES = {"channel": int, "core_channel": int, "min_size": int, "max_size": int,
                  "threshold": float, "high_threshold": float, "method": str}


def check_threshold_settings(settings: Any, where: object) -> dict[str, Any]:
    """Validate stored :func:`threshold_objects` settings (an object model's ``threshold``
    metadata) by type and range, so that a damaged file fails on load with one line, not
    deep inside a batch."""
    if not isinstance(settings, dict):
        raise InputError(f"{where}: threshold settings must be a JSON object, not "
                         f"{type(settings).__name__}")
    unknown = set(settings) - set(_SETTING_TYPES) - {"sigma"}
    if unknown:
        raise InputError(f"{where}: unknown threshold setting(s) {sorted(unknown)}")
    for key, kind in _SETTING_TYPES.items():
        if key not in settings:
            continue
        v = settings[key]
        ok = (isinstance(v, str) if kind is str else
              isinstance(v, int) and not isinstance(v, bool) if kind is int else
              isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok:
            raise InputError(f"{where}: threshold setting {key!r} must be {kind.__name__}, not {v!r}")
    if "method" in settings and settings["method"].lower() not in METHODS:
        raise InputError(f"{where}: threshold method {settings['method']!r}: use {', '.join(METHODS)}")
    for key in ("threshold", "high_threshold"):
        if key in settings and not (np.isfinite(settings[key]) and 0 <= settings[key] <= 1):
            raise InputError(f"{where}: threshold setting {key!r} = {settings[key]!r} must lie in [0, 1]")
    for key in ("channel", "core_channel", "min_size", "max_size"):
        if key in settings and not 0 <= settings[key] < 2**62:
            raise InputError(f"{where}: threshold setting {key!r} = {settings[key]!r} must be >= 0")
    if "sigma" in settings:
        sigma = settings["sigma"]
        values = sigma if isinstance(sigma, list) else [sigma]
        if not 1 <= len(values) <= 3 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
            raise InputError(f"{where}: threshold setting 'sigma' must be a number or 2-3 numbers")
        _sigmas(values[0] if len(values) == 1 else tuple(values),
                len(values) if len(values) > 1 else 2)
    return dict(settings)


def smooth(image: np.ndarray, sigma: float | Sequence[float] = 1.0) -> np.ndarray:
    """Gaussian smoothing of one channel as ilastik's threshold applet does it.

    ``image`` holds spatial axes only (``yx`` or ``zyx``); ``sigma`` is per axis in that
    order. Returns float32; the input unchanged (as float32) when any σ < 0.1.
    """
    image = np.asarray(image, dtype=np.float32)
    sigmas = _sigmas(sigma, image.ndim)
    if any(s < MIN_SIGMA for s in sigmas):
        return image.copy()
    out = image
    for axis, s in enumerate(sigmas):
        out = ndi.correlate1d(out, gaussian_kernel(s), axis=axis, mode="mirror", output=np.float32)
    return out


# --------------------------------------------------------------------------- labels
def relabel_sequential(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep the ids where ``keep[id]`` is true, renumbered 1..n in their old order (uint32)."""
    keep = np.asarray(keep, dtype=bool).copy()
    keep[0] = False
    lut = np.zeros(keep.shape[0], dtype=np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]


def size_filter(labels: np.ndarray, min_size: int = 10, max_size: int = 1_000_000) -> np.ndarray:
    """Keep objects with ``min_size <= pixel count <= max_size``; ids renumbered in scan order."""
    counts = np.bincount(labels.ravel())
    return relabel_sequential(labels, (counts >= min_size) & (counts <= max_size))


def _label(mask: np.ndarray) -> np.ndarray:
    # scipy's default structure is the direct neighbourhood (4 in 2-D, 6 in 3-D), ids in
    # C scan order, like vigra's labelMultiArrayWithBackground on an x-fastest view.
    labels, n = ndi.label(mask, output=np.int64)
    return labels.astype(np.uint32) if n < 2**32 else labels


def threshold_objects(
    proba: np.ndarray,
    *,
    channel: int = 0,
    method: str = "simple",
    threshold: float = 0.5,
    high_threshold: float = 0.8,
    core_channel: int = 0,
    sigma: float | Sequence[float] = 1.0,
    min_size: int = 10,
    max_size: int = 1_000_000,
    axes: str | None = None,
) -> np.ndarray:
    """Objects from a probability map, as ilastik's "Threshold and Size Filter" applet.

    Parameters
    ----------
    proba : ndarray
        Probabilities: 2-D ``yx``, 3-D ``yxc`` or 4-D ``zyxc`` (or any order named by
        ``axes``). uint8 is read as k/255 and uint16 as k/65535.
    channel : int
        The channel to threshold (ilastik's "Input Channel").
    method : {"simple", "hysteresis"}
        Simple: one threshold. Hysteresis: objects grown from cores above ``high_threshold``.
    threshold : float
        Low/final threshold in [0, 1]; pixels with ``p >= threshold`` are foreground.
    high_threshold : float
        Core threshold in [0, 1] (hysteresis only).
    core_channel : int
        Channel of the cores (hysteresis only).
    sigma : float or sequence of float
        Smoothing σ, one for all spatial axes or one per axis (``(y, x)`` or ``(z, y, x)``;
        ilastik's default is 1 on every axis); no smoothing if any σ < 0.1.
    min_size, max_size : int
        Size filter, inclusive on both ends.
    axes : str, optional
        Axes of ``proba`` when not canonical.

    Returns
    -------
    labels : ndarray of uint32
        Spatial shape; 0 = background, objects 1..n in scan order.
    """
    data = normalize_probabilities(_as_canonical(proba, axes))
    n_channels = data.shape[-1]
    method = str(method).lower()
    if method not in METHODS:
        raise InputError(f"method {method!r}: use one of {', '.join(METHODS)}")
    for name, value in (("channel", channel), ("core_channel", core_channel)):
        if not isinstance(value, (int, np.integer)) or not 0 <= value < n_channels:
            raise InputError(
                f"{name} {value!r} is out of range: the probability map has {n_channels} "
                f"channel(s) (0..{n_channels - 1})"
            )
    for name, value in (("threshold", threshold), ("high_threshold", high_threshold)):
        if not np.isfinite(value) or not 0.0 <= float(value) <= 1.0:
            raise InputError(f"{name} {value!r} must lie in [0, 1]")
    if min_size < 0 or max_size < 0:
        raise InputError(f"sizes must be >= 0 (min_size={min_size}, max_size={max_size})")
    if min_size > max_size:
        raise InputError(f"min_size ({min_size}) is larger than max_size ({max_size})")
    spatial_ndim = data.ndim - 1
    sigmas = _sigmas(sigma, spatial_ndim)

    # ilastik compares float32 smoothed values against the threshold.
    low = np.float32(threshold)
    smoothed = smooth(data[..., channel], sigmas)
    if method == "simple":
        labels = size_filter(_label(smoothed >= low), min_size, max_size)
    else:
        core_smoothed = smoothed if core_channel == channel else smooth(data[..., core_channel], sigmas)
        cores = size_filter(_label(core_smoothed >= np.float32(high_threshold)), min_size, max_size)
        final_values = smoothed if core_channel == channel else smoothed + core_smoothed
        final = _label(final_values >= low)
        keep = np.zeros(int(final.max()) + 1, dtype=bool)
        keep[np.unique(final[cores > 0])] = True
        labels = size_filter(relabel_sequential(final, keep), min_size, max_size)
    if labels.max() == 0:
        warnings.warn("no objects found: every pixel is background after thresholding and size "
                      "filtering", UserWarning, stacklevel=2)
    return labels
