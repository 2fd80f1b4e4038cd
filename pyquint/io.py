"""Reading and writing images with explicit axes, and atomic outputs.

Axes are strings over ``t z y x c`` as in ilastik/vigra. Readers return the array as stored
plus its axes; :func:`to_canonical` reorders to ilastik's Pixel Classification order
(``yxc`` in 2D, ``zyxc`` in 3D, singleton t/z dropped, ``c`` always last).

Paths to HDF5 datasets use ilastik's syntax ``file.h5/inner/path`` (the dataset may be
omitted when the file holds exactly one).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._outputs import (  # re-exported: io is where callers find atomic writes
    atomic_output,
    lock_folder,
    release_folder_locks,
    remove_stale_temps,
    temp_prefix,
)
from .axes import _check_axes, axistags_json, guess_axes, parse_axistags, reorder_axes, to_canonical
from .errors import InputError
from .zarrio import is_zarr_path, open_zarr, read_zarr

__all__ = [
    "H5_SUFFIXES",
    "IMAGE_SUFFIXES",
    "atomic_output",
    "axistags_json",
    "check_image_budget",
    "check_tiff_complete",
    "guess_axes",
    "h5_dataset_name",
    "lock_folder",
    "memory_budget",
    "parse_axistags",
    "png_image",
    "release_folder_locks",
    "remove_stale_temps",
    "read_image",
    "split_h5_path",
    "stored_axes",
    "temp_prefix",
    "to_canonical",
    "reorder_axes",
    "write_image",
    "write_png",
]

H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".ilp")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES + H5_SUFFIXES + (".npy",)
SUPPORTED_DTYPES = (
    np.bool_, np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64,
    np.uint64, np.float32, np.float64,
)


# --------------------------------------------------------------------------- reading
def split_h5_path(path: str | os.PathLike) -> tuple[Path, str | None]:
    """Split ilastik's ``file.h5/inner/path`` into the file and the dataset path."""
    text = os.fspath(path)
    lowered = text.lower()
    for suffix in H5_SUFFIXES:
        i = lowered.find(suffix + "/")
        if i >= 0:
            return Path(text[: i + len(suffix)]), text[i + len(suffix) + 1 :]
    return Path(text), None


def _check_dtype(data: np.ndarray, source: object) -> np.ndarray:
    if data.dtype.type not in SUPPORTED_DTYPES:
        raise InputError(
            f"{source}: unsupported pixel type {data.dtype}; use integer or float pixels"
        )
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    return data


# --------------------------------------------------------------------------- budgets
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memory_budget() -> int:
    """Bytes one image may take in memory: ``PYQUINT_MEMORY_LIMIT`` (e.g. ``4G``) if set,
    else 80 % of the memory available now."""
    text = os.environ.get("PYQUINT_MEMORY_LIMIT", "").strip().lower().removesuffix("b")
    if text:
        match = re.fullmatch(r"([0-9.]+)\s*([kmgt]?)i?", text)
        if match is None:
            raise InputError(f"PYQUINT_MEMORY_LIMIT={text!r}: use bytes or e.g. 512M, 4G")
        return int(float(match.group(1)) * _UNITS[match.group(2)])
    try:
        import psutil

        return int(psutil.virtual_memory().available * 0.8)
    except Exception:  # pragma: no cover - psutil is a dependency; stay usable without it
        return 1 << 62


def check_image_budget(source: object, shape: tuple[int, ...], dtype: np.dtype | str) -> None:
    """Refuse, before anything is allocated, an image whose declared size does not fit in
    memory (counted as float32 at least, since every command works on floats)."""
    if any(int(n) < 0 for n in shape):
        raise InputError(f"{source}: declares a negative size {tuple(shape)}")
    n = math.prod(int(d) for d in shape)
    need = n * max(np.dtype(dtype).itemsize, 4)
    budget = memory_budget()
    if need > budget:
        dims = "×".join(str(int(d)) for d in shape)
        raise InputError(
            f"{source}: declares a {dims} {np.dtype(dtype)} image, which needs "
            f"{need / 2**30:.1f} GiB of memory but {budget / 2**30:.1f} GiB are available; "
            "for images larger than memory use `pyquint large predict` on a TIFF, HDF5 or .npy "
            "copy (read tile by tile), or raise PYQUINT_MEMORY_LIMIT if the memory is there"
        )


def _read_h5(file: Path, inner: str | None) -> tuple[np.ndarray, str | None]:
    import h5py

    try:
        # locking=False: read files that ilastik (or another writer) holds open.
        with h5py.File(file, "r", locking=False) as f:
            if inner is None:
                names: list[str] = []
                f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                if len(names) != 1:
                    raise InputError(
                        f"{file}: holds {len(names)} datasets; name one as {file}/<dataset> "
                        f"({', '.join(names[:5])})"
                    )
                inner = names[0]
            if inner not in f or not isinstance(f[inner], h5py.Dataset):
                raise InputError(f"{file}: no dataset {inner!r}")
            ds = f[inner]
            check_image_budget(f"{file}/{inner}", ds.shape, ds.dtype)
            if ds.size and ds.id.get_storage_size() == 0 and not ds.is_virtual and not ds.external:
                raise InputError(
                    f"{file}/{inner}: declares shape {ds.shape} but holds no pixel data (nothing "
                    "was written, or the writer was interrupted); re-export the image"
                )
            data = ds[()]
            tags = ds.attrs.get("axistags")
            return np.asarray(data), (parse_axistags(tags) if tags is not None else None)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{file}: not a readable HDF5 file ({exc})") from exc


def check_tiff_complete(tif: Any, file: Path) -> None:
    """Refuse a TIFF whose strips or tiles point past the end of the file (a truncated copy),
    from the header alone, before any pixel is decoded."""
    size = file.stat().st_size
    end = max((int(o) + int(n) for page in tif.pages
               for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
    if end > size:
        raise InputError(f"{file}: truncated TIFF (its pixel data ends at byte {end} but the file "
                         f"has {size} bytes); copy or export it again")


def _read_tiff(file: Path) -> tuple[np.ndarray, str | None]:
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            series = tif.series[0]
            check_image_budget(file, series.shape, series.dtype)
            check_tiff_complete(tif, file)
            data = series.asarray()
            tiff_axes = series.axes
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt files
        raise InputError(f"{file}: not a readable TIFF file ({exc})") from exc
    mapping = {"Y": "y", "X": "x", "S": "c", "C": "c", "Z": "z", "T": "t", "Q": "z", "I": "z"}
    axes = "".join(mapping.get(a, "?") for a in tiff_axes)
    if "?" in axes or len(set(axes)) != len(axes):
        return data, None
    return data, axes


_PIL_ITEMSIZE = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}


@contextlib.contextmanager
def _pil_bomb_check_off() -> Iterator[None]:
    # pyquint checks declared sizes against the memory really available (check_image_budget);
    # Pillow's fixed 89-megapixel limit would refuse ordinary whole-brain sections.
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read_pil(file: Path) -> tuple[np.ndarray, str]:
    import struct
    import zlib

    from PIL import Image, UnidentifiedImageError

    try:
        with _pil_bomb_check_off(), Image.open(file) as im:
            width, height = im.size
            bands = len(im.getbands())
            check_image_budget(file, (height, width, bands), f"u{_PIL_ITEMSIZE.get(im.mode, 1)}")
            im.load()
            if im.mode in ("P", "PA"):
                # Palette images: keep the indices (label images), as ilastik/vigra does.
                data = np.asarray(im.getchannel(0) if im.mode == "PA" else im)
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                data = np.asarray(im).astype(np.uint16)
            elif im.mode == "1":
                data = np.asarray(im.convert("L"))
            elif im.mode == "CMYK":
                data = np.asarray(im.convert("RGB"))
            else:
                data = np.asarray(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
            zlib.error, Image.DecompressionBombError) as exc:
        raise InputError(f"{file}: not a readable image ({exc})") from exc
    if data.ndim == 2:
        data = data[..., np.newaxis]
    return np.ascontiguousarray(data), "yxc"


def _check_npy_header(file: Path) -> None:
    """Check an .npy header's shape against the file's size and the memory budget."""
    fmt = np.lib.format
    try:
        with open(file, "rb") as fh:
            version = fmt.read_magic(fh)
            reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if reader is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = reader(fh, max_header_size=10_000)
            offset = fh.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"{file}: not a readable .npy file ({exc})") from exc
    if dtype.hasobject:
        raise InputError(f"{file}: holds Python objects, which pyquint never loads; save numbers")
    need = math.prod(shape) * dtype.itemsize
    if file.stat().st_size - offset < need:
        raise InputError(f"{file}: header declares shape {shape} ({need} bytes of {dtype}) but the "
                         f"file holds only {file.stat().st_size - offset}; it is truncated")
    check_image_budget(file, shape, dtype)


def _read_any(file: Path, inner: str | None) -> tuple[np.ndarray, str | None]:
    suffix = file.suffix.lower()
    if suffix in H5_SUFFIXES:
        return _read_h5(file, inner)
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(file)
    if suffix in PIL_SUFFIXES:
        return _read_pil(file)
    if suffix == ".npy":
        _check_npy_header(file)
        try:
            return np.load(file, allow_pickle=False), None
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{file}: not a readable .npy file ({exc})") from exc
    raise InputError(
        f"{file}: unsupported file type {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
    )


def read_image(path: str | os.PathLike, axes: str | None = None) -> tuple[np.ndarray, str]:
    """Read an image and its axes.

    Parameters
    ----------
    path : str or path-like
        PNG/JPEG/BMP/GIF (always ``yxc``), TIFF (axes from tifffile's series), HDF5
        (``file.h5/dataset``; axes from the vigra ``axistags`` attribute) or ``.npy``.
    axes : str, optional
        Override the axes (e.g. ``"cyx"``); its length must match the stored dimensions.

    Returns
    -------
    data : ndarray
        The pixels as stored in the file.
    axes : str
        One letter per dimension of ``data`` over ``tzyxc``.
    """
    if is_zarr_path(path):  # an OME-Zarr / zarr store is a folder
        return read_zarr(path, axes)
    file, inner = split_h5_path(path)
    if not file.exists():
        raise InputError(f"{file}: no such file")
    if file.is_dir():
        raise InputError(f"{file}: is a folder, not an image")
    try:
        data, stored_axes = _read_any(file, inner)
    except MemoryError:
        raise InputError(f"{file}: does not fit in memory; use `pyquint large predict` (tile by "
                         "tile) for images larger than memory") from None
    data = _check_dtype(np.asarray(data), file)
    if axes is not None:
        axes = _check_axes(axes, data.ndim)
    elif stored_axes is not None and len(stored_axes) == data.ndim:
        axes = stored_axes
    else:
        axes = guess_axes(data.shape)
    return data, axes


def h5_dataset_name(f: Any, inner: str | None) -> str | None:
    """``inner`` if the open HDF5 file ``f`` holds it, the file's only dataset when ``inner``
    is None, else None."""
    import h5py

    if inner is None:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        inner = names[0] if len(names) == 1 else None
    return inner if inner is not None and inner in f else None


def stored_axes(path: str | os.PathLike) -> str | None:
    """The axes an image file records itself, or None when they would be guessed.

    PNG/JPEG/BMP/GIF always record ``yxc``; HDF5 datasets their ``axistags`` attribute;
    TIFF the axes of tifffile's first series; ``.npy`` files never record axes. Only the
    metadata is read.
    """

    if is_zarr_path(path):
        try:
            return open_zarr(path)[1]
        except InputError:
            return None
    file, inner = split_h5_path(path)
    suffix = file.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return "yxc"
    try:
        if suffix in H5_SUFFIXES:
            import h5py

            with h5py.File(file, "r", locking=False) as f:
                inner = h5_dataset_name(f, inner)
                if inner is None:
                    return None
                tags = f[inner].attrs.get("axistags")
                return parse_axistags(tags) if tags is not None else None
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(file) as tif:
                tiff_axes = tif.series[0].axes
            mapping = {"Y": "y", "X": "x", "S": "c", "C": "c", "Z": "z", "T": "t", "Q": "z", "I": "z"}
            axes = "".join(mapping.get(a, "?") for a in tiff_axes)
            return None if "?" in axes or len(set(axes)) != len(axes) else axes
    except (OSError, ValueError, KeyError, InputError):
        return None
    return None


# --------------------------------------------------------------------------- writing
def write_image(
    path: str | os.PathLike,
    data: np.ndarray,
    axes: str,
    *,
    attrs: dict | None = None,
    compression: str | None = None,
    palette: np.ndarray | None = None,
) -> Path:
    """Write ``data`` atomically as PNG, TIFF, HDF5 (``file.h5/dataset``) or ``.npy``.

    PNG takes 2-D data with at most 4 channels (``yx`` or ``yxc``) of uint8 or uint16;
    ``palette`` (256×3 uint8) makes an indexed PNG from uint8 data. HDF5 datasets get the
    vigra ``axistags`` attribute plus ``attrs``. Returns the file's path.
    """
    file, inner = split_h5_path(path)
    axes = _check_axes(axes, data.ndim)
    suffix = file.suffix.lower()
    with atomic_output(file) as tmp:
        if suffix in H5_SUFFIXES:
            import h5py

            with h5py.File(tmp, "w") as f:
                ds = f.create_dataset(inner or "exported_data", data=data, compression=compression)
                ds.attrs["axistags"] = axistags_json(axes)
                for key, value in (attrs or {}).items():
                    ds.attrs[key] = value
        elif suffix in TIFF_SUFFIXES:
            import tifffile

            if axes in ("yxc",) and data.shape[-1] in (3, 4) and data.dtype == np.uint8:
                tifffile.imwrite(tmp, data, photometric="rgb")
            elif axes == "yxc" and data.shape[-1] == 1:
                tifffile.imwrite(tmp, data[..., 0], photometric="minisblack")
            else:
                tifffile.imwrite(tmp, data, photometric="minisblack",
                                 metadata={"axes": axes.upper().replace("C", "S") if axes.endswith("c") else axes.upper()})
        elif suffix == ".png":
            _write_png(tmp, data, axes, palette)
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, data, allow_pickle=False)
        else:
            raise InputError(f"{file}: cannot write {suffix!r}; use .png, .tif(f), .h5 or .npy")
    return file


def png_image(data: np.ndarray, *, palette: np.ndarray | None = None) -> Any:
    """The Pillow image that :func:`write_png` saves (exported so that every PNG pyquint
    writes goes through one conversion).

    Parameters
    ----------
    data : ndarray of uint8 or uint16, shape (Y, X) or (Y, X, C) with C in 1..4
        Grey, grey + alpha, RGB or RGBA; uint16 only for grey.
    palette : array of uint8, shape (256, 3), optional
        Write an indexed (colour type 3) PNG of a 2-D uint8 image with this palette.

    Raises
    ------
    InputError
        Shapes or dtypes a PNG cannot hold.
    """
    from PIL import Image

    if data.ndim == 3:
        if data.shape[-1] == 1:
            data = data[..., 0]
        elif data.shape[-1] > 4:
            raise InputError(f"PNG holds at most 4 channels, not {data.shape[-1]}")
    elif data.ndim != 2:
        raise InputError(f"PNG holds 2-D images (yx or yxc), not {data.ndim}-D arrays")
    if data.dtype not in (np.uint8, np.uint16):
        raise InputError(f"PNG holds uint8 or uint16 pixels, not {data.dtype}; convert first")
    data = np.ascontiguousarray(data)
    size = (data.shape[1], data.shape[0])
    if palette is not None:
        if data.dtype != np.uint8 or data.ndim != 2:
            raise InputError("an indexed (palette) PNG needs a 2-D uint8 image")
        im = Image.frombytes("P", size, data.tobytes())
        im.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
        return im
    if data.dtype == np.uint16:
        if data.ndim != 2:
            raise InputError("16-bit PNG output is supported for single-channel images only")
        return Image.frombytes("I;16", size, data.astype("<u2").tobytes())
    if data.ndim == 3 and data.shape[-1] == 2:
        return Image.frombytes("LA", size, data.tobytes())
    return Image.fromarray(data)


def write_png(path: str | os.PathLike | Any, data: np.ndarray, *,
              palette: np.ndarray | None = None) -> Any:
    """Write ``data`` as a PNG (see :func:`png_image`): to a path atomically (returned), or
    into a binary file object such as :class:`io.BytesIO` (returned as given)."""
    im = png_image(np.asarray(data), palette=palette)
    if hasattr(path, "write"):
        im.save(path, format="PNG")
        return path
    with atomic_output(path) as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def _write_png(tmp: Path, data: np.ndarray, axes: str, palette: np.ndarray | None) -> None:
    if axes not in ("yx", "yxc"):
        raise InputError(f"PNG holds 2-D images (yx or yxc), not {axes!r}")
    png_image(data, palette=palette).save(tmp, format="PNG")
