"""In-process ImageJ through its Java API: numpy <-> ImagePlus, LUTs, PNG writing.

Only calls that work headless are used (``ByteProcessor``, ``ImagePlus``,
``LutLoader.openLut``, ``ImagePlus.setLut``, ``FileSaver.saveAsPng``, ``IJ.openImage``):
anything that goes through ``IJ.run``/menus throws ``HeadlessException``, and image macros
belong in a subprocess (:mod:`pyquint.imagej.runner`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..batch import guard_outputs, progress
from ..errors import ImageJError, InputError
from ..io import atomic_output, read_image
from ..lut import load_lut
from .jvm import ij_class

__all__ = [
    "apply_lut_imagej",
    "apply_lut_imagej_batch",
    "array_to_imageplus",
    "imageplus_to_array",
    "open_lut_imagej",
    "read_image_imagej",
]


# --------------------------------------------------------------------------- numpy <-> ImagePlus
def array_to_imageplus(data: np.ndarray, title: str = "pyquint"):
    """An ``ij.ImagePlus`` holding a copy of a 2-D array.

    uint8 -> GRAY8 (``ByteProcessor``), uint16 -> GRAY16, float32 -> GRAY32,
    (h, w, 3) uint8 -> RGB (``ColorProcessor``).
    """
    import jpype

    a = np.asarray(data)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 3 and a.dtype == np.uint8:
        h, w = a.shape[:2]
        packed = (a[..., 0].astype(np.int32) << 16) | (a[..., 1].astype(np.int32) << 8) | a[..., 2]
        packed |= np.int32(-16777216)  # opaque alpha, as ImageJ stores RGB pixels
        proc = ij_class("ij.process.ColorProcessor")(w, h, jpype.JArray(jpype.JInt)(packed.ravel()))
    elif a.ndim != 2:
        raise InputError(f"ImageJ images here are 2-D (yx) or RGB (yx3), not shape {a.shape}")
    else:
        h, w = a.shape
        flat = np.ascontiguousarray(a).ravel()
        if a.dtype == np.uint8:
            proc = ij_class("ij.process.ByteProcessor")(
                w, h, jpype.JArray(jpype.JByte)(flat.view(np.int8)), None
            )
        elif a.dtype == np.uint16:
            proc = ij_class("ij.process.ShortProcessor")(
                w, h, jpype.JArray(jpype.JShort)(flat.view(np.int16)), None
            )
        elif a.dtype == np.float32:
            proc = ij_class("ij.process.FloatProcessor")(w, h, jpype.JArray(jpype.JFloat)(flat))
        else:
            raise InputError(f"no ImageJ image type for {a.dtype}; use uint8, uint16 or float32")
    return ij_class("ij.ImagePlus")(title, proc)


def imageplus_to_array(imp) -> np.ndarray:
    """The pixels of an ``ij.ImagePlus`` (current slice) as a numpy array (a copy)."""
    proc = imp.getProcessor()
    h, w = int(proc.getHeight()), int(proc.getWidth())
    pixels = np.asarray(proc.getPixels())
    kind = int(imp.getType())
    if kind in (0, 3):  # GRAY8, COLOR_256
        return pixels.view(np.uint8).reshape(h, w).copy()
    if kind == 1:  # GRAY16
        return pixels.view(np.uint16).reshape(h, w).copy()
    if kind == 2:  # GRAY32
        return pixels.astype(np.float32).reshape(h, w)
    if kind == 4:  # RGB packed in int32
        p = pixels.view(np.uint32).reshape(h, w)
        return np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], axis=-1).astype(np.uint8)
    raise ImageJError(f"unsupported ImageJ image type {kind}")


def read_image_imagej(path: str | os.PathLike) -> np.ndarray:
    """Read an image with ImageJ's own readers (``IJ.openImage``): what ImageJ sees."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    imp = ij_class("ij.IJ").openImage(str(path))
    if imp is None:
        raise ImageJError(f"{path}: ImageJ could not open this file")
    return imageplus_to_array(imp)


# --------------------------------------------------------------------------- LUTs
@contextlib.contextmanager
def _lut_file(lut) -> Iterator[Path]:
    """A LUT file ImageJ can read: the given file, or a temporary raw 768-byte file."""
    if isinstance(lut, (str, os.PathLike)) and Path(lut).is_file():
        yield Path(lut)
        return
    table = _lut_table(lut)
    fd, tmp = tempfile.mkstemp(suffix=".lut", prefix="pyquint-")
    try:
        with os.fdopen(fd, "wb") as fh:
            # Raw planes (all reds, greens, blues): the format ImageJ reads for 768-byte files.
            fh.write(np.ascontiguousarray(table.T).tobytes())
        yield Path(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _lut_table(lut) -> np.ndarray:
    """(256, 3) uint8 from a pyquint ``Lut``, an array, or a LUT name/path (via pyquint.lut)."""
    if hasattr(lut, "table"):
        table = np.asarray(lut.table)
    elif isinstance(lut, np.ndarray):
        table = lut
    elif isinstance(lut, (str, os.PathLike)):
        table = np.asarray(load_lut(os.fspath(lut)).table)
    else:
        raise InputError(f"cannot use {type(lut).__name__} as a LUT; give a file, a name or a (256, 3) table")
    if table.shape != (256, 3):
        raise InputError(f"a LUT table must have shape (256, 3), not {table.shape}")
    return np.asarray(table, dtype=np.uint8)


def _open_lut_java(path: Path):
    if not path.is_file():
        raise InputError(f"{path}: no such LUT file")
    if path.stat().st_size > 10000:
        raise InputError(f"{path}: ImageJ rejects LUT files over 10000 bytes")
    lut = ij_class("ij.plugin.LutLoader").openLut(str(path))
    if lut is None:
        raise ImageJError(f"{path}: ImageJ's LutLoader could not read this LUT file")
    return lut


def open_lut_imagej(lut: str | os.PathLike) -> np.ndarray:
    """The (256, 3) uint8 table ImageJ's ``LutLoader`` reads from a LUT file."""
    import jpype

    java_lut = _open_lut_java(Path(lut))
    planes = []
    for getter in ("getReds", "getGreens", "getBlues"):
        buf = jpype.JArray(jpype.JByte)(256)
        getattr(java_lut, getter)(buf)
        planes.append(np.asarray(buf).view(np.uint8))
    return np.stack(planes, axis=1).copy()


def _as_labels(labels, name: str) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        data, _ = read_image(labels)
        source = os.fspath(labels)
    else:
        data, source = np.asarray(labels), name
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise InputError(f"{source}: a label image must be 2-D (one channel), not shape {data.shape}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer):
            raise InputError(f"{source}: labels must be integers, not {data.dtype}")
        if data.size and (data.min() < 0 or data.max() > 255):
            raise InputError(
                f"{source}: labels {data.min()}..{data.max()} do not fit an 8-bit LUT (0..255)"
            )
        # Lossless here; ImageJ itself would *scale* 16-bit labels to 8 bits.
        data = data.astype(np.uint8)
    return np.ascontiguousarray(data)


def _save_png(imp, out_path: Path) -> Path:
    with atomic_output(out_path) as tmp:
        ok = ij_class("ij.io.FileSaver")(imp).saveAsPng(str(tmp))
        if not ok or not tmp.exists() or tmp.stat().st_size == 0:
            raise ImageJError(f"{out_path}: ImageJ's FileSaver could not write the PNG")
    return out_path


def apply_lut_imagej(
    labels: np.ndarray | str | os.PathLike,
    lut_path,
    out_path: str | os.PathLike,
) -> Path:
    """Apply a LUT to a label image with ImageJ itself and save ImageJ's palette PNG.

    ``ByteProcessor`` -> ``ImagePlus`` -> ``LutLoader.openLut`` -> ``setLut`` ->
    ``FileSaver.saveAsPng``, written atomically (temporary name, then renamed).

    Parameters
    ----------
    labels : ndarray or path
        2-D integer labels 0..255 (uint8, or wider integers within range), or an image file.
    lut_path : path, str, Lut or ndarray
        A LUT file in any format ImageJ reads; or a pyquint LUT name (``"glasbey"``), a
        ``pyquint.lut.Lut`` or a (256, 3) table, handed to ImageJ as a raw 768-byte file.
    out_path : path
        The PNG to write.

    Returns
    -------
    Path
        ``out_path``.
    """
    data = _as_labels(labels, "labels")
    out_path = Path(out_path)
    if isinstance(labels, (str, os.PathLike)):
        guard_outputs([labels], [out_path])
    with _lut_file(lut_path) as lut_file:
        java_lut = _open_lut_java(lut_file)
    imp = array_to_imageplus(data, out_path.stem)
    imp.setLut(java_lut)
    return _save_png(imp, out_path)


def apply_lut_imagej_batch(
    inputs: Sequence[str | os.PathLike],
    outputs: Sequence[str | os.PathLike],
    lut_path,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """:func:`apply_lut_imagej` over many files in this process's one JVM (LUT read once).

    Existing outputs are skipped unless ``overwrite`` (an interrupted batch resumes).
    Returns the outputs written.
    """
    if len(inputs) != len(outputs):
        raise InputError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    guard_outputs(inputs, outputs)
    with _lut_file(lut_path) as lut_file:
        java_lut = _open_lut_java(lut_file)
    written = []
    for src, dst in progress(list(zip(inputs, outputs)), desc="ImageJ LUT"):
        dst = Path(dst)
        if dst.exists() and not overwrite:
            continue
        imp = array_to_imageplus(_as_labels(src, os.fspath(src)), dst.stem)
        imp.setLut(java_lut)
        written.append(_save_png(imp, dst))
    return written
