"""Colouring label images with a LUT: palette PNGs as ImageJ writes them, or RGB PNGs.

ImageJ saves an 8-bit image that has a colour LUT as an indexed PNG: colour type 3, bit
depth 8, a 768-byte ``PLTE`` chunk holding the LUT, pixel indices equal to the labels.
:func:`write_palette_png` writes exactly that (Pillow; only the zlib stream may differ).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import png_image, read_image, write_image
from .formats import Lut

__all__ = [
    "LabelConversionWarning",
    "apply_lut",
    "as_labels",
    "lut_ramp",
    "palette_image",
    "read_labels",
    "write_palette_png",
    "write_rgb_png",
]


class LabelConversionWarning(UserWarning):
    """Labels were converted to uint8 (ImageJ would have rescaled them instead)."""


def as_labels(data: np.ndarray, source: str = "labels") -> np.ndarray:
    """Check a label image and return it as a 2-D uint8 array.

    Parameters
    ----------
    data : ndarray
        2-D labels, or 3-D with one channel (``yxc`` with c = 1). uint8 is used as is;
        other integer types with all values within 0..255 are converted exactly, with a
        :class:`LabelConversionWarning`, because ImageJ would rescale a 16-bit image to its
        display range before applying a LUT (labels 1, 2, 3 became indices 0, 85, 171).
    source : str
        Name of the image in error messages.

    Raises
    ------
    InputError
        Colour (RGB/RGBA) or multi-channel images, 3-D stacks, float images, and labels
        outside 0..255.
    """
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[-1] in (2, 3, 4):
        raise InputError(
            f"{source}: has {data.shape[-1]} channels (an RGB/colour image?); a LUT colours a "
            "single-channel label image (values 0..255)"
        )
    if data.ndim != 2:
        raise InputError(f"{source}: a label image must be 2-D, not of shape {data.shape}")
    if data.dtype == np.bool_:
        return data.astype(np.uint8)
    if data.dtype == np.uint8:
        return data
    if not np.issubdtype(data.dtype, np.integer):
        raise InputError(
            f"{source}: pixel type {data.dtype} is not a label image; labels are integers 0..255 "
            "(e.g. ilastik's Simple Segmentation)"
        )
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if lo < 0 or hi > 255:
        raise InputError(
            f"{source}: labels range {lo}..{hi}, but a LUT has 256 entries (0..255); "
            "relabel or use fewer classes"
        )
    warnings.warn(
        f"{source}: {data.dtype} labels converted to uint8 unchanged (ImageJ would rescale "
        "them to 0..255 before applying a LUT)",
        LabelConversionWarning,
        stacklevel=2,
    )
    return data.astype(np.uint8)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image file (PNG, TIFF, HDF5 ``file.h5/dataset``, .npy) as 2-D uint8."""
    data, axes = read_image(path)
    if data.ndim > 2 and not axes.endswith("c") and np.squeeze(data).ndim == 2:
        data = np.squeeze(data)  # singleton z/t axes, e.g. a one-page stack
    return as_labels(data, source=str(path))


def apply_lut(labels: np.ndarray, lut: Lut) -> np.ndarray:
    """Colour a label image: ``rgb[y, x] = lut.table[labels[y, x]]``.

    Parameters
    ----------
    labels : ndarray
        2-D label image (see :func:`as_labels` for the accepted types).
    lut : Lut

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    return lut.table[as_labels(labels)]


def palette_image(labels: np.ndarray, lut: Lut):
    """A Pillow image of mode ``P`` whose indices are the labels and whose palette is ``lut``
    (what :func:`write_palette_png` saves)."""
    return png_image(as_labels(labels), palette=lut.table)


def write_palette_png(path: str | os.PathLike, labels: np.ndarray, lut: Lut) -> Path:
    """Write an indexed PNG exactly as ImageJ saves an 8-bit image with a colour LUT.

    Colour type 3, bit depth 8, a 256-entry (768-byte) ``PLTE`` = the LUT, pixel indices =
    the labels, no transparency. Written atomically.
    """
    labels = as_labels(labels, source=str(path))
    return write_image(path, labels, "yx", palette=lut.table)


def write_rgb_png(path: str | os.PathLike, labels: np.ndarray, lut: Lut) -> Path:
    """Write a 24-bit RGB PNG (colour type 2) of the labels coloured by ``lut``."""
    labels = as_labels(labels, source=str(path))
    return write_image(path, lut.table[labels], "yxc")


def lut_ramp(width: int = 256, height: int = 32) -> np.ndarray:
    """The index image ImageJ shows for a LUT with no image open: each row is 0..255.

    With the default 256 × 32 it is ImageJ's ``LutLoader.createImage``; other widths stretch
    the ramp (column ``x`` shows index ``x * 256 // width``).
    """
    if width < 1 or height < 1:
        raise InputError(f"ramp size must be positive, not {width} x {height}")
    row = (np.arange(width) * 256 // width).astype(np.uint8)
    return np.repeat(row[np.newaxis, :], height, axis=0)
