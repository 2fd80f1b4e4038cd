"""steinbock image files: TIFF input images and the steinbock Ilastik HDF5 layout.

The HDF5 layout (``ilastik_img/*.h5`` with ``/img``, ``ilastik_crops/*.h5`` with ``/crop``)
is written byte for byte as steinbock 0.16.5 writes it: float32 CYX, contiguous, no
compression, ``libver='earliest'``, attributes ``display_mode`` and ``axistags`` as
variable-length ASCII strings and ``steinbock`` as an HDF5 boolean (numpy bool enum),
created in that order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output, check_image_budget, check_tiff_complete

__all__ = [
    "AGGREGATIONS",
    "AXISTAGS_CYX",
    "H5_LIBVER",
    "create_ilastik_crop",
    "create_ilastik_image",
    "get_aggregation",
    "list_ilastik_files",
    "list_image_files",
    "read_ilastik_h5",
    "read_steinbock_image",
    "resize_like_steinbock",
    "steinbock_image_shape",
    "to_float32",
    "write_ilastik_h5",
]

H5_LIBVER = "earliest"
DISPLAY_MODE = "grayscale"
# vigra axis flags: Channels = 1, Space = 2 (steinbock writes no resolution/description keys)
AXISTAGS_CYX = json.dumps(
    {"axes": [{"key": "c", "typeFlags": 1}, {"key": "y", "typeFlags": 2}, {"key": "x", "typeFlags": 2}]}
)

#: Channel aggregations accepted by ``--aggr`` (numpy reductions called as ``f(stack, axis=0)``).
AGGREGATIONS: dict[str, Callable[..., np.ndarray]] = {
    name: getattr(np, name)
    for name in (
        "mean", "median", "sum", "max", "min", "amax", "amin", "std", "var", "prod",
        "nanmean", "nanmedian", "nansum", "nanmax", "nanmin", "nanstd", "nanvar",
    )
}


def get_aggregation(aggr: str | Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """The reduction ``f(stack, axis=0)`` named by ``aggr`` (or ``aggr`` itself if callable).

    steinbock accepts any attribute of numpy and fails with a raw AttributeError on a typo;
    pyquint accepts the reductions in :data:`AGGREGATIONS` and names them on error.
    """
    if callable(aggr):
        return aggr
    try:
        return AGGREGATIONS[aggr]
    except KeyError:
        raise InputError(
            f"unknown channel aggregation --aggr {aggr!r}; use one of {', '.join(AGGREGATIONS)}"
        ) from None


# --------------------------------------------------------------------------- listing
def list_image_files(img_dir: str | os.PathLike) -> list[Path]:
    """steinbock's image listing: sorted, recursive ``[!.]*.tiff`` under ``img_dir``."""
    img_dir = Path(img_dir)
    if not img_dir.is_dir():
        raise InputError(f"{img_dir}: image folder does not exist")
    return sorted(img_dir.rglob("[!.]*.tiff"))


def list_ilastik_files(folder: str | os.PathLike) -> list[Path]:
    """steinbock's Ilastik image/crop listing: sorted, recursive ``[!.]*.h5``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder does not exist")
    return sorted(folder.rglob("[!.]*.h5"))


# --------------------------------------------------------------------------- input images
def _fix_image_shape(path: Path, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple]:
    """CYX shape and the index that takes it out of a stored 2-6-D steinbock image."""
    ndim = len(shape)
    if ndim == 2:
        return (1, *shape), (np.newaxis,)
    if ndim == 3:
        return shape, ()
    if ndim == 4:
        if shape[-1] == 1:
            return shape[:3], (Ellipsis, 0)
        if shape[0] == 1:
            return shape[1:], (0,)
        raise InputError(f"{path}: unsupported four-dimensional image shape {shape}")
    if ndim == 5:
        if shape[0] != 1 or shape[1] != 1:
            raise InputError(f"{path}: unsupported TZCYX image shape {shape} (T and Z must be 1)")
        return shape[2:], (0, 0)
    if ndim == 6:
        if shape[0] != 1 or shape[1] != 1 or shape[5] != 1:
            raise InputError(f"{path}: unsupported TZCYXS image shape {shape} (T, Z, S must be 1)")
        return shape[2:5], (0, 0, Ellipsis, 0)
    raise InputError(f"{path}: unsupported number of image dimensions ({ndim})")


def steinbock_image_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """The CYX shape of a steinbock image from its TIFF header (no pixels are read)."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(series.get_shape(False)) if hasattr(series, "get_shape") else series.shape
            dtype = series.dtype
            # a truncated copy is found here, before any output is written
            check_tiff_complete(tif, path)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt files
        raise InputError(f"{path}: not a readable TIFF file ({exc})") from exc
    check_image_budget(path, shape, dtype)
    return _fix_image_shape(path, tuple(int(s) for s in shape))[0]


def read_steinbock_image(path: str | os.PathLike) -> np.ndarray:
    """Read a steinbock image as CYX in its stored dtype (steinbock's ``native_dtype=True``)."""
    import tifffile

    path = Path(path)
    try:
        data = tifffile.imread(path, squeeze=False)
    except Exception as exc:  # tifffile raises many types on corrupt files
        raise InputError(f"{path}: not a readable TIFF file ({exc})") from exc
    _, index = _fix_image_shape(path, data.shape)
    return data[index] if index else data


# --------------------------------------------------------------------------- HDF5
def to_float32(data: np.ndarray) -> np.ndarray:
    """steinbock's cast to float32 (``io._to_dtype``): no rescaling; float64 is clipped to the
    float32 range first (so huge values become ±3.4e38, not inf)."""
    if data.dtype == np.float32:
        return data
    if data.dtype.kind == "f" and np.finfo(data.dtype).max > np.finfo(np.float32).max:
        info = np.finfo(np.float32)
        data = np.clip(data, info.min, info.max)
    return data.astype(np.float32)


def write_ilastik_h5(path: str | os.PathLike, data: np.ndarray, dataset: str = "img") -> Path:
    """Write ``data`` (CYX) atomically as a steinbock Ilastik HDF5 file (dataset ``dataset``)."""
    import h5py

    data = np.ascontiguousarray(to_float32(np.asarray(data)))
    if data.ndim != 3:
        raise InputError(f"{path}: steinbock Ilastik images are CYX (3-D), not {data.ndim}-D")
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w", libver=H5_LIBVER) as f:
            ds = f.create_dataset(dataset, data=data)
            # bytes give variable-length ASCII strings, exactly what steinbock writes
            ds.attrs["display_mode"] = DISPLAY_MODE.encode("ascii")
            ds.attrs["axistags"] = AXISTAGS_CYX.encode("ascii")
            ds.attrs["steinbock"] = np.bool_(True)
    return Path(path)


def read_ilastik_h5(path: str | os.PathLike, dataset: str = "img") -> np.ndarray:
    """Read the float32 CYX array of a steinbock Ilastik HDF5 file."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                raise InputError(f"{path}: no dataset {dataset!r} (not a steinbock Ilastik file?)")
            data = f[dataset][()]
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if data.ndim != 3:
        raise InputError(f"{path}/{dataset}: expected CYX (3-D) data, found shape {data.shape}")
    return to_float32(data)


# --------------------------------------------------------------------------- pixels
def resize_like_steinbock(channel: np.ndarray, scale: int) -> np.ndarray:
    """Bilinear upscaling of one YX channel exactly as steinbock calls OpenCV.

    ``cv2.resize(ch, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)``: half-pixel
    centres, clamped edges. Dtypes OpenCV cannot resize (e.g. the uint64 of ``--aggr sum`` on
    uint16 images, which steinbock skips) are resized in float64 instead.
    """
    import cv2

    if channel.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        channel = channel.astype(np.float64)
    return cv2.resize(channel, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)


def create_ilastik_image(
    img: np.ndarray,
    groups: np.ndarray | None = None,
    aggr: str | Callable[..., np.ndarray] = "mean",
    *,
    mean: bool = True,
    mean_factor: float = 100.0,
    scale: int = 1,
    source: object = "image",
) -> np.ndarray:
    """Build the steinbock Ilastik image of one CYX image.

    Parameters
    ----------
    img : ndarray (C, Y, X)
        The image in its stored dtype (steinbock reads it with ``native_dtype=True``; the
        dtype decides numpy's and OpenCV's arithmetic, see the spec §2.3).
    groups : ndarray (C,) of float, optional
        ``ilastik`` panel groups aligned with the channels (NaN = unused). Channels of one
        group are aggregated; groups come out in sorted numeric order. None: all channels.
    aggr : str or callable, default "mean"
        Reduction over the channels of a group, called as ``f(stack, axis=0)``.
    mean : bool, default True
        Prepend the mean of the (aggregated) channels times ``mean_factor``.
    mean_factor : float, default 100.0
    scale : int, default 1
        Integer upscale factor (bilinear, OpenCV); ``<= 1`` means no resizing.
    source : object
        Names the image in error messages.

    Returns
    -------
    ndarray (C', scale*Y, scale*X) float32
    """
    img = np.asarray(img)
    if img.ndim != 3:
        raise InputError(f"{source}: expected a CYX image, found shape {img.shape}")
    aggr_func = get_aggregation(aggr)
    out = img
    if groups is not None:
        groups = np.asarray(groups, dtype=np.float64)
        if groups.shape != (img.shape[0],):
            raise InputError(
                f"{source}: the panel has {groups.size} kept channels but the image has "
                f"{img.shape[0]}; steinbock would skip this image"
            )
        labels = [g for g in np.unique(groups) if not np.isnan(g)]
        out = np.stack([aggr_func(img[groups == g], axis=0) for g in labels])
    if mean:
        # the mean of the aggregated stack, not of the raw channels (as steinbock does)
        mean_img = out.mean(axis=0, keepdims=True) * mean_factor
        out = np.concatenate((mean_img, out))
    if scale > 1:
        out = np.stack([resize_like_steinbock(ch, scale) for ch in out])
    return to_float32(out)


def create_ilastik_crop(
    ilastik_img: np.ndarray, crop_size: int, rng: np.random.Generator
) -> tuple[int, int, np.ndarray] | None:
    """Draw steinbock's random crop of a CYX Ilastik image, or None when it is too small.

    The draws are steinbock's: ``x = rng.integers(W - cs)`` only if ``W > cs`` (else 0), then
    ``y = rng.integers(H - cs)`` only if ``H > cs``; no draw when either side is ``< cs``.
    """
    if crop_size < 1:
        raise InputError(f"crop size must be a positive number of pixels, not {crop_size}")
    _, height, width = ilastik_img.shape
    if height < crop_size or width < crop_size:
        return None
    x = int(rng.integers(width - crop_size)) if width > crop_size else 0
    y = int(rng.integers(height - crop_size)) if height > crop_size else 0
    crop = ilastik_img[:, y : y + crop_size, x : x + crop_size]
    return x, y, to_float32(crop)
