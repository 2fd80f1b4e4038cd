"""Reading and writing images with explicit axes, and atomic outputs.

Axes are strings over ``t z y x c`` as in ilastik/vigra. Readers return the array as stored
plus its axes; :func:`to_canonical` reorders to ilastik's Pixel Classification order
(``yxc`` in 2D, ``zyxc`` in 3D, singleton t/z dropped, ``c`` always last).

Paths to HDF5 datasets use ilastik's syntax ``file.h5/inner/path`` (the dataset may be
omitted when the file holds exactly one).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    "H5_SUFFIXES",
    "IMAGE_SUFFIXES",
    "atomic_output",
    "axistags_json",
    "guess_axes",
    "parse_axistags",
    "read_image",
    "split_h5_path",
    "stored_axes",
    "to_canonical",
    "reorder_axes",
    "write_image",
]

H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".ilp")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES + H5_SUFFIXES + (".npy",)
SUPPORTED_DTYPES = (
    np.bool_, np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64,
    np.uint64, np.float32, np.float64,
)
_VIGRA_FLAGS = {"c": 1, "x": 2, "y": 2, "z": 2, "t": 8}


# --------------------------------------------------------------------------- axes
def _check_axes(axes: str, ndim: int | None = None) -> str:
    axes = axes.lower()
    if not axes or any(a not in "tzyxc" for a in axes) or len(set(axes)) != len(axes):
        raise InputError(f"invalid axes {axes!r}: use distinct letters from 'tzyxc', e.g. 'yxc'")
    if "y" not in axes or "x" not in axes:
        raise InputError(f"axes {axes!r} must contain both 'y' and 'x'")
    if ndim is not None and len(axes) != ndim:
        raise InputError(f"axes {axes!r} have {len(axes)} letters but the data has {ndim} dimensions")
    return axes


def guess_axes(shape: tuple[int, ...]) -> str:
    """Guess axes from the number of dimensions, as ilastik does for HDF5 without axistags."""
    ndim = len(shape)
    if ndim == 2:
        return "yx"
    if ndim == 3:
        return "yxc" if shape[-1] <= 4 else "zyx"
    if ndim == 4:
        return "zyxc"
    if ndim == 5:
        return "tzyxc"
    raise InputError(f"cannot guess the axes of a {ndim}-D array of shape {shape}; give --axes")


def axistags_json(axes: str) -> str:
    """The vigra ``axistags`` attribute ilastik writes for ``axes``."""
    return json.dumps(
        {
            "axes": [
                {"key": a, "typeFlags": _VIGRA_FLAGS[a], "resolution": 0, "description": ""}
                for a in axes
            ]
        }
    )


def parse_axistags(text: str | bytes) -> str:
    """Axes letters from a vigra ``axistags`` JSON attribute."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        return "".join(a["key"] for a in json.loads(text)["axes"]).lower()
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable axistags attribute: {text[:80]!r}") from exc


def reorder_axes(data: np.ndarray, axes: str, target: str) -> np.ndarray:
    """Transpose ``data`` from ``axes`` to ``target``; missing axes are added as singletons
    and singleton axes absent from ``target`` are dropped."""
    axes, target = axes.lower(), target.lower()
    for a in axes:
        if a not in target:
            if data.shape[axes.index(a)] != 1:
                raise InputError(f"cannot drop non-singleton axis {a!r} of {axes!r} for {target!r}")
            data = data.take(0, axis=axes.index(a))
            axes = axes.replace(a, "")
    for a in target:
        if a not in axes:
            data = data[..., np.newaxis]
            axes += a
    return np.transpose(data, [axes.index(a) for a in target])


def to_canonical(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Reorder to ilastik's Pixel Classification order: ``yxc``, ``zyxc`` (``t`` first if >1)."""
    axes = _check_axes(axes, data.ndim)
    target = "".join(a for a in "tzyx" if a in axes and (data.shape[axes.index(a)] > 1 or a in "yx"))
    target += "c"
    return reorder_axes(data, axes, target), target


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
            data = ds[()]
            tags = ds.attrs.get("axistags")
            return np.asarray(data), (parse_axistags(tags) if tags is not None else None)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{file}: not a readable HDF5 file ({exc})") from exc


def _read_tiff(file: Path) -> tuple[np.ndarray, str | None]:
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            series = tif.series[0]
            data = series.asarray()
            tiff_axes = series.axes
    except Exception as exc:  # tifffile raises many types on corrupt files
        raise InputError(f"{file}: not a readable TIFF file ({exc})") from exc
    mapping = {"Y": "y", "X": "x", "S": "c", "C": "c", "Z": "z", "T": "t", "Q": "z", "I": "z"}
    axes = "".join(mapping.get(a, "?") for a in tiff_axes)
    if "?" in axes or len(set(axes)) != len(axes):
        return data, None
    return data, axes


def _read_pil(file: Path) -> tuple[np.ndarray, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{file}: not a readable image ({exc})") from exc
    if data.ndim == 2:
        data = data[..., np.newaxis]
    return np.ascontiguousarray(data), "yxc"


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
    from .zarrio import is_zarr_path, read_zarr

    if is_zarr_path(path):  # an OME-Zarr / zarr store is a folder
        return read_zarr(path, axes)
    file, inner = split_h5_path(path)
    if not file.exists():
        raise InputError(f"{file}: no such file")
    if file.is_dir():
        raise InputError(f"{file}: is a folder, not an image")
    suffix = file.suffix.lower()
    if suffix in H5_SUFFIXES:
        data, stored_axes = _read_h5(file, inner)
    elif suffix in TIFF_SUFFIXES:
        data, stored_axes = _read_tiff(file)
    elif suffix in PIL_SUFFIXES:
        data, stored_axes = _read_pil(file)
    elif suffix == ".npy":
        try:
            data, stored_axes = np.load(file, allow_pickle=False), None
        except (OSError, ValueError) as exc:
            raise InputError(f"{file}: not a readable .npy file ({exc})") from exc
    else:
        raise InputError(
            f"{file}: unsupported file type {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    data = _check_dtype(np.asarray(data), file)
    if axes is not None:
        axes = _check_axes(axes, data.ndim)
    elif stored_axes is not None and len(stored_axes) == data.ndim:
        axes = stored_axes
    else:
        axes = guess_axes(data.shape)
    return data, axes


def stored_axes(path: str | os.PathLike) -> str | None:
    """The axes an image file records itself, or None when they would be guessed.

    PNG/JPEG/BMP/GIF always record ``yxc``; HDF5 datasets their ``axistags`` attribute;
    TIFF the axes of tifffile's first series; ``.npy`` files never record axes. Only the
    metadata is read.
    """
    from .zarrio import is_zarr_path, open_zarr

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
                if inner is None:
                    names: list[str] = []
                    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                    inner = names[0] if len(names) == 1 else None
                if inner is None or inner not in f:
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
@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    An interrupted or failed write leaves no partial output (the temporary file is removed),
    so a later resumed batch never mistakes a broken file for a finished one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


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


def _write_png(tmp: Path, data: np.ndarray, axes: str, palette: np.ndarray | None) -> None:
    from PIL import Image

    if axes == "yxc":
        if data.shape[-1] == 1:
            data, axes = data[..., 0], "yx"
        elif data.shape[-1] > 4:
            raise InputError(f"PNG holds at most 4 channels, not {data.shape[-1]}")
    elif axes != "yx":
        raise InputError(f"PNG holds 2-D images (yx or yxc), not {axes!r}")
    if data.dtype not in (np.uint8, np.uint16):
        raise InputError(f"PNG holds uint8 or uint16 pixels, not {data.dtype}; convert first")
    data = np.ascontiguousarray(data)
    if palette is not None:
        if data.dtype != np.uint8 or data.ndim != 2:
            raise InputError("an indexed (palette) PNG needs a 2-D uint8 image")
        im = Image.frombytes("P", (data.shape[1], data.shape[0]), data.tobytes())
        im.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    elif data.dtype == np.uint16:
        if data.ndim != 2:
            raise InputError("16-bit PNG output is supported for single-channel images only")
        im = Image.frombytes("I;16", (data.shape[1], data.shape[0]), data.astype("<u2").tobytes())
    elif data.ndim == 3 and data.shape[-1] == 2:
        im = Image.frombytes("LA", (data.shape[1], data.shape[0]), data.tobytes())
    else:
        im = Image.fromarray(data)
    im.save(tmp, format="PNG")
