"""OME-Zarr (NGFF) and plain zarr images: lazy reading at a chosen resolution level, writing.

Needs the optional ``zarr`` package (``pip install "pyquint[omezarr]"``). Paths name a store
folder ending in ``.zarr``, optionally followed by an array inside it (``image.zarr/0``), like
``file.h5/dataset`` for HDF5.

- Reading: an OME-Zarr group (NGFF 0.1–0.5 ``multiscales`` metadata, ``axes`` with names and
  types) opens the dataset of the requested ``scale_level`` (0 = full resolution) with the
  group's axes; a plain zarr array takes its axes from xarray's ``_ARRAY_DIMENSIONS``
  attribute, the caller, or the number of dimensions. Arrays are opened, not loaded.
- Writing: an OME-Zarr 0.4 group (zarr format 2, which ilastik ≥ 1.4.1, QuPath and napari
  read) with axes in NGFF order (``t``, ``c``, ``z``, ``y``, ``x``: time, channel, space),
  a ``scale`` coordinate transformation per level, chunks of one channel and time point, and
  optional extra levels downsampled by 2 in y and x (nearest neighbour, so labels stay
  labels). Stores are written to a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .axes import guess_axes, reorder_axes
from .errors import InputError

__all__ = [
    "NGFF_VERSION",
    "atomic_dir",
    "chunks_for",
    "create_levels",
    "fill_levels",
    "is_zarr_path",
    "multiscales_metadata",
    "ngff_axes",
    "open_zarr",
    "read_zarr",
    "split_zarr_path",
    "write_ome_zarr",
]

NGFF_VERSION = "0.4"
_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_CHUNK = 512  # y/x chunk edge of written arrays


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise InputError("reading and writing zarr needs the zarr package: "
                         "pip install 'pyquint[omezarr]'") from None
    return zarr


def split_zarr_path(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``image.zarr/labels/0`` → ``(Path("image.zarr"), "labels/0")``; no ``.zarr`` → inner None."""
    text = os.fspath(path).rstrip("/")
    lowered = text.lower()
    i = lowered.find(".zarr/")
    if i >= 0:
        return Path(text[: i + 5]), text[i + 6:] or None
    return Path(text), None


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True for a path into a zarr store (a ``.zarr`` folder or a folder with zarr metadata)."""
    store, inner = split_zarr_path(path)
    if store.suffix.lower() == ".zarr":
        return True
    return store.is_dir() and any((store / m).exists() for m in (".zgroup", ".zarray", "zarr.json"))


def ngff_axes(axes: str) -> str:
    """NGFF's order of ``axes``: time, channel, then space (``tczyx`` subset)."""
    return "".join(a for a in "tczyx" if a in axes.lower())


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:  # NGFF 0.5 (zarr v3)
        return ome["multiscales"]
    return attrs.get("multiscales")


def _axes_letters(axes: Any, ndim: int, source: object) -> str:
    if axes is None:  # NGFF 0.1/0.2: always tczyx
        return "tczyx"[5 - ndim:] if ndim <= 5 else ""
    letters = []
    for ax in axes:
        name = (ax.get("name") if isinstance(ax, dict) else str(ax)).lower()
        kind = ax.get("type") if isinstance(ax, dict) else None
        letter = "c" if kind == "channel" else name[:1] if name in ("t", "c", "z", "y", "x") else None
        if letter is None:
            raise InputError(f"{source}: axis {name!r} is none of t, c, z, y, x")
        letters.append(letter)
    return "".join(letters)


def open_zarr(
    path: str | os.PathLike, axes: str | None = None, scale_level: int = 0
) -> tuple[Any, str]:
    """Open a zarr array lazily and tell its axes.

    Parameters
    ----------
    path : str or path-like
        ``image.zarr`` (an OME-Zarr group, or a store holding one array) or
        ``image.zarr/inner/array``.
    axes : str, optional
        Override the axes (e.g. ``"cyx"``).
    scale_level : int
        Resolution level of an OME-Zarr group (0 = full resolution).

    Returns
    -------
    array : zarr.Array
        Indexable like numpy; only the chunks a selection touches are read.
    axes : str
    """
    zarr = _zarr()
    store, inner = split_zarr_path(path)
    if not store.exists():
        raise InputError(f"{store}: no such zarr store")
    try:
        node = zarr.open(str(store), mode="r", path=inner) if inner else zarr.open(str(store), mode="r")
    except Exception as exc:  # zarr raises several types for non-stores
        raise InputError(f"{path}: not a readable zarr store ({exc})") from None
    group_axes = None
    if not hasattr(node, "shape"):  # a group
        multiscales = _multiscales(node.attrs.asdict())
        if multiscales:
            ms = multiscales[0]
            datasets = ms.get("datasets") or []
            if not 0 <= scale_level < len(datasets):
                raise InputError(f"{path}: scale level {scale_level} does not exist; the image has "
                                 f"levels 0..{len(datasets) - 1}")
            array = node[datasets[scale_level]["path"]]
            group_axes = _axes_letters(ms.get("axes"), array.ndim, path)
        else:
            arrays = list(node.array_keys())
            if len(arrays) != 1:
                raise InputError(f"{path}: a zarr group without OME-Zarr metadata holding "
                                 f"{len(arrays)} arrays; name one as {store}/<array>")
            array = node[arrays[0]]
    else:
        array = node
        if scale_level:
            raise InputError(f"{path}: a single zarr array has no scale level {scale_level}")
    if axes is None:
        axes = group_axes
    if axes is None:
        dims = array.attrs.asdict().get("_ARRAY_DIMENSIONS")
        if dims and len(dims) == array.ndim:
            axes = _axes_letters(dims, array.ndim, path)
    if axes is None:

        axes = guess_axes(tuple(array.shape))
    axes = axes.lower()
    if len(axes) != array.ndim or len(set(axes)) != len(axes) or set(axes) - set("tczyx"):
        raise InputError(f"{path}: axes {axes!r} do not fit its {array.ndim} dimensions")
    if array.dtype.kind not in "buif":
        raise InputError(f"{path}: unsupported pixel type {array.dtype}")
    return array, axes


def read_zarr(
    path: str | os.PathLike, axes: str | None = None, scale_level: int = 0
) -> tuple[np.ndarray, str]:
    """Read a whole zarr image (one resolution level) and its axes; see :func:`open_zarr`."""
    array, axes = open_zarr(path, axes, scale_level)
    data = np.asarray(array[...])
    return (data.astype(np.uint8) if data.dtype == np.bool_ else data), axes


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def multiscales_metadata(axes: str, n_levels: int, name: str = "") -> list[dict[str, Any]]:
    """NGFF 0.4 ``multiscales`` for arrays ``0..n_levels-1`` in ``axes`` (NGFF order), each
    level half the previous one in y and x."""
    out_axes = [{"name": a, "type": _TYPES[a]} for a in axes]
    datasets = [
        {"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [float(2 ** k) if a in "yx" else 1.0 for a in axes]}]}
        for k in range(n_levels)
    ]
    return [{"version": NGFF_VERSION, "name": name, "axes": out_axes, "datasets": datasets,
             "type": "nearest"}]


def chunks_for(shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
    """One time point and channel per chunk, up to 512 × 512 in y/x (64 in z)."""
    edge = {"y": _CHUNK, "x": _CHUNK, "z": 64}
    return tuple(min(n, edge.get(a, 1)) for a, n in zip(axes, shape))


def create_levels(group: Any, shape: tuple[int, ...], axes: str, dtype: Any,
                  n_levels: int) -> list[Any]:
    """Empty arrays ``0..n_levels-1`` of an OME-Zarr group (level k is 2^k times smaller in y/x)."""
    arrays = []
    for k in range(n_levels):
        level = tuple(-(-n // 2 ** k) if a in "yx" else n for a, n in zip(axes, shape))
        arrays.append(group.create_array(str(k), shape=level, dtype=np.dtype(dtype),
                                         chunks=chunks_for(level, axes), fill_value=0))
    return arrays


def fill_levels(arrays: list[Any], axes: str, band: int = 4096) -> None:
    """Fill levels 1.. from level 0 by taking every second pixel in y and x, band by band."""
    yi = axes.index("y")
    for k in range(1, len(arrays)):
        src, dst = arrays[k - 1], arrays[k]
        for y0 in range(0, src.shape[yi], band):
            index = [slice(None)] * len(axes)
            index[yi] = slice(y0, min(y0 + band, src.shape[yi]))
            block = np.asarray(src[tuple(index)])
            sub = block[tuple(slice(None, None, 2) if a in "yx" else slice(None) for a in axes)]
            out = [slice(None)] * len(axes)
            out[yi] = slice(y0 // 2, y0 // 2 + sub.shape[yi])
            dst[tuple(out)] = sub


def write_ome_zarr(
    path: str | os.PathLike,
    data: np.ndarray,
    axes: str,
    *,
    n_levels: int = 1,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write ``data`` as an OME-Zarr 0.4 image (atomically).

    Parameters
    ----------
    path : str or path-like
        The ``.zarr`` folder to create (replaced if it exists).
    data : ndarray
    axes : str
        Axes of ``data``; the store holds them in NGFF order (``tczyx`` subset).
    n_levels : int
        Resolution levels (1 = single scale).
    attrs : dict, optional
        Extra group attributes (e.g. ``{"drange": [0.0, 1.0]}``).

    Returns
    -------
    Path
    """

    zarr = _zarr()
    store, _ = split_zarr_path(path)
    order = ngff_axes(axes)
    data = reorder_axes(np.asarray(data), axes.lower(), order)
    if n_levels < 1:
        raise InputError(f"n_levels must be ≥ 1, not {n_levels}")
    with atomic_dir(store) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        arrays = create_levels(group, data.shape, order, data.dtype, n_levels)
        arrays[0][...] = data
        fill_levels(arrays, order)
        group.attrs["multiscales"] = multiscales_metadata(order, n_levels, store.stem)
        for key, value in (attrs or {}).items():
            group.attrs[key] = value
    return store
