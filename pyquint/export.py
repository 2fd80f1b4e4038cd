"""ilastik's export step: result types, file names, dtype conversion and file formats.

What ilastik's data export does, as functions on arrays (spec ``ilastik.md`` §0, §3):

- :data:`EXPORT_SOURCES` and their dtypes (:func:`normalize_source` matches names
  case-insensitively, as ``--export_source`` does);
- :func:`export_filename`: ``{dataset_dir}/{nickname}_{result_type}.{ext}`` and the other
  placeholders, with HDF5 nicknames ``stem-inner-path``. Unlike ilastik, a nickname containing
  ``"."`` is *not* cut short (ilastik replaces the extension with ``os.path.splitext`` on the
  whole name, so ``a.9_x`` + ``_Probabilities`` became ``a.h5``; issues #2707, #2887);
- :func:`convert_for_export`: ``--export_dtype`` / ``--pipeline_result_drange`` /
  ``--export_drange`` (linear map in float32, float → int with ``rint``);
- :func:`export_array`: HDF5 (dataset ``exported_data`` with ``axistags`` and ``drange``),
  compressed HDF5 (gzip level 1), PNG (vigra's 8-bit mapping for types PNG cannot hold),
  TIFF and ``.npy``; always written atomically;
- :func:`write_export`: all of the above for one result of one input image, in the input's
  original axis order with ``c`` appended.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .io import atomic_output, axistags_json, reorder_axes, split_h5_path, write_png
from .naming import input_file, nickname
from .sequences import SEQUENCE_FORMATS, SlicePlaceholder, is_sequence_format, sequence_slices
from .zarrio import write_ome_zarr

__all__ = [
    "EXPORT_DTYPES",
    "EXPORT_FORMATS",
    "EXPORT_SOURCES",
    "DEFAULT_FILENAME_FORMAT",
    "convert_for_export",
    "export_array",
    "export_filename",
    "format_extension",
    "nickname",
    "normalize_format",
    "normalize_source",
    "output_axes_for",
    "write_export",
]

#: Pixel Classification's export sources, in ilastik's order.
EXPORT_SOURCES = ("Probabilities", "Simple Segmentation", "Uncertainty", "Features", "Labels")
#: The dtype ilastik exports each source in.
EXPORT_DTYPES = {
    "Probabilities": np.float32,
    "Simple Segmentation": np.uint8,
    "Uncertainty": np.float32,
    "Features": np.float32,
    "Labels": np.uint8,
}
#: Format name → file extension (ilastik's names; ``tif``/``tiff`` keep the user's spelling).
EXPORT_FORMATS = {
    "hdf5": "h5",
    "compressed hdf5": "h5",
    "png": "png",
    "tif": "tif",
    "tiff": "tiff",
    "multipage tiff": "tiff",
    "npy": "npy",
    "numpy": "npy",
    "ome-zarr": "zarr",  # OME-Zarr 0.4 (needs the optional zarr package)
    **SEQUENCE_FORMATS,  # one 2-D file per slice, named by {slice_index} (pyquint.sequences)
}
DEFAULT_FILENAME_FORMAT = "{dataset_dir}/{nickname}_{result_type}"
_KNOWN_EXTENSIONS = {".h5", ".hdf5", ".hdf", ".png", ".tif", ".tiff", ".npy", ".zarr"}
_INT_DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "uint64")
_EXPORT_DTYPE_NAMES = _INT_DTYPES + ("float32", "float64")


# --------------------------------------------------------------------------- names
def normalize_source(source: str) -> str:
    """ilastik's display name of an export source, matched case-insensitively."""
    key = str(source).strip().lower().replace("_", " ")
    for s in EXPORT_SOURCES:
        if s.lower() == key:
            return s
    raise InputError(f"unknown export source {source!r}; choose from {', '.join(EXPORT_SOURCES)}")


def normalize_format(fmt: str) -> str:
    """Canonical format name (``hdf5``, ``compressed hdf5``, ``png``, ``tif(f)``, ``npy``,
    ``ome-zarr``)."""
    key = " ".join(str(fmt).strip().lower().replace("_", " ").split())
    if key in ("h5", "hdf"):
        key = "hdf5"
    if key in ("zarr", "omezarr", "ome zarr", "ngff"):
        key = "ome-zarr"
    if key not in EXPORT_FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
    return key


def format_extension(fmt: str) -> str:
    """File extension (without dot) of an output format."""
    return EXPORT_FORMATS[normalize_format(fmt)]


class _Formatter(string.Formatter):
    def __init__(self, known: dict[str, Any]) -> None:
        self.known = known

    def get_value(self, key: Any, args: Sequence[Any], kwargs: Any) -> Any:
        if isinstance(key, int) or key not in self.known:
            raise InputError(f"unknown placeholder {{{key}}} in the output file name format; "
                             f"known: {', '.join('{' + k + '}' for k in self.known)}")
        return self.known[key]


def export_filename(
    raw_path: str | os.PathLike,
    source: str,
    fmt: str = "hdf5",
    filename_format: str | None = None,
    *,
    shape: Sequence[int] | None = None,
    axes: str | None = None,
    dataset_dir: str | os.PathLike | None = None,
) -> Path:
    """The file an export of ``source`` for the input ``raw_path`` goes to.

    Parameters
    ----------
    raw_path : str or path-like
        The input image (``file.h5/inner/path`` for an HDF5 dataset).
    source : str
        Export source (case-insensitive), e.g. ``"simple segmentation"``.
    fmt : str
        Output format; its extension is appended (or replaces an extension written at the end
        of ``filename_format``).
    filename_format : str, optional
        Default ``{dataset_dir}/{nickname}_{result_type}``. Placeholders: ``{dataset_dir}``,
        ``{nickname}``, ``{result_type}``, and when ``shape``/``axes`` are given ``{roi}`` and
        ``{<axis>_start}``/``{<axis>_stop}`` for each axis. A relative result is relative to
        the current directory, as in ilastik's headless mode.
    shape, axes : optional
        Shape and axes of the exported data (for the roi placeholders).
    dataset_dir : str or path-like, optional
        Replaces the input's folder in ``{dataset_dir}`` (e.g. an output folder).

    Returns
    -------
    Path
    """
    file = input_file(raw_path)
    template = DEFAULT_FILENAME_FORMAT if filename_format is None else str(filename_format)
    known: dict[str, Any] = {
        "dataset_dir": os.fspath(dataset_dir) if dataset_dir is not None else os.fspath(file.parent),
        "nickname": nickname(raw_path),
        "result_type": normalize_source(source),
    }
    if is_sequence_format(normalize_format(fmt)):
        known["slice_index"] = SlicePlaceholder()  # filled in per slice by the writer
    if shape is not None and axes is not None:
        if len(shape) != len(axes):
            raise InputError(f"shape {tuple(shape)} does not match axes {axes!r}")
        known["roi"] = str([tuple(0 for _ in shape), tuple(int(s) for s in shape)])
        for a, s in zip(axes, shape):
            known[f"{a}_start"], known[f"{a}_stop"] = 0, int(s)
    try:
        formatted = _Formatter(known).format(template)
    except (ValueError, IndexError) as exc:
        raise InputError(f"invalid output file name format {template!r}: {exc}") from exc
    ext = format_extension(fmt)
    # Only an extension written literally at the end of the *template* is replaced; dots that
    # come from the nickname are kept (ilastik's splitext on the whole name truncates them).
    tail = template.rsplit("}", 1)[-1]
    m = re.search(r"\.[A-Za-z0-9]+$", tail)
    tail_ext = m.group(0) if m else ""
    if tail_ext and tail_ext.lower() in _KNOWN_EXTENSIONS:
        formatted = formatted[: len(formatted) - len(tail_ext)]
    return Path(formatted + "." + ext)


def output_axes_for(original_axes: str) -> str:
    """ilastik's default export axis order: the input's original axes with ``c`` appended."""
    original_axes = original_axes.lower()
    return original_axes if "c" in original_axes else original_axes + "c"


# --------------------------------------------------------------------------- conversion
def _parse_range(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().strip("()[]")
        try:
            parts = [float(v) for v in text.split(",")]
        except ValueError as exc:
            raise InputError(f"{name} must look like '(0.0, 1.0)', not {value!r}") from exc
    else:
        try:
            parts = [float(v) for v in value]
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} must be a pair of numbers, not {value!r}") from exc
    if len(parts) != 2 or not all(np.isfinite(parts)):
        raise InputError(f"{name} must be two finite numbers (min, max), not {value!r}")
    return parts[0], parts[1]


def _dtype(export_dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(export_dtype)
    except TypeError as exc:
        raise InputError(f"unknown export dtype {export_dtype!r}") from exc
    if dt.name not in _EXPORT_DTYPE_NAMES:
        raise InputError(f"export dtype must be one of {', '.join(_EXPORT_DTYPE_NAMES)}, not {dt}")
    return dt


def convert_for_export(
    data: np.ndarray,
    export_dtype: Any = None,
    pipeline_drange: Any = None,
    export_drange: Any = None,
    *,
    source: str | None = None,
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Renormalise and convert as ilastik's export options do.

    With both ranges, values are mapped linearly ``export_min + (x − in_min)·f`` with
    ``f = float32((out_max − out_min)/(in_max − in_min))`` in float32 (ilastik's
    ``OpFormattedDataExport``; ``f = 0`` for an empty input range). Conversion of floats to an
    integer ``export_dtype`` rounds half to even (``rint``) and clips to the type's range
    (ilastik ≤ 1.4.1 truncated with a plain cast instead).

    Parameters
    ----------
    data : ndarray
    export_dtype : dtype-like, optional
        ``uint8``, ``uint16``, ..., ``float32``; default: the source's ilastik dtype when
        ``source`` is given, else keep ``data.dtype``.
    pipeline_drange, export_drange : (min, max) or "(min, max)", optional
        Input and output ranges (``--pipeline_result_drange``, ``--export_drange``); both or
        neither.
    source : str, optional
        The export source (decides the default dtype and the ``drange`` of probabilities).

    Returns
    -------
    data : ndarray
    drange : (float, float) or None
        The value range to record in an HDF5 ``drange`` attribute: ``export_drange`` when
        renormalised, ``(0.0, 1.0)`` for float Probabilities/Uncertainty, else None.
    """
    data = np.asarray(data)
    in_range = _parse_range(pipeline_drange, "pipeline_result_drange")
    out_range = _parse_range(export_drange, "export_drange")
    if (in_range is None) != (out_range is None):
        raise InputError("give both pipeline_result_drange and export_drange, or neither")
    src = normalize_source(source) if source is not None else None
    if export_dtype is not None:
        dt = _dtype(export_dtype)
    elif src is not None and in_range is None:
        dt = np.dtype(EXPORT_DTYPES[src])
    else:
        dt = data.dtype
    if in_range is not None and out_range is not None:
        den = np.float64(in_range[1]) - np.float64(in_range[0])
        num = np.float64(out_range[1]) - np.float64(out_range[0])
        frac = np.float32(num / den) if den != 0 else np.float32(0)
        work = data.astype(np.float64 if data.dtype == np.float64 else np.float32)
        ft = work.dtype.type
        data = ft(out_range[0]) + (work - ft(in_range[0])) * ft(frac)
    if dt.kind in "ui" and data.dtype.kind == "f":
        info = np.iinfo(dt)
        data = np.clip(np.rint(data), info.min, info.max)
    elif dt.kind in "ui" and data.dtype.kind in "ui":
        info = np.iinfo(dt)
        data = np.clip(data, info.min, info.max)
    data = np.ascontiguousarray(data.astype(dt, copy=False))
    drange = None
    if out_range is not None:
        drange = out_range
    elif src in ("Probabilities", "Uncertainty") and dt.kind == "f":
        drange = (0.0, 1.0)
    return data, drange


def _png_uint8(data: np.ndarray) -> np.ndarray:
    """vigra's PNG export of a type PNG cannot hold: the image's own min..max → 0..255."""
    lo, hi = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError("cannot write NaN or infinite values to PNG")
    if hi == lo:
        return np.zeros(data.shape, np.uint8)
    scaled = (data.astype(np.float64) - lo) * (255.0 / (hi - lo))
    # vigra's cast to UInt8: clamp, then round half up
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- writing
def export_array(
    path: str | os.PathLike,
    data: np.ndarray,
    axes: str,
    fmt: str | None = None,
    *,
    internal_path: str = "exported_data",
    drange: tuple[float, float] | None = None,
    output_axes: str | None = None,
) -> Path:
    """Write one exported array, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file. For HDF5 a ``file.h5/inner`` path sets the dataset.
    data : ndarray
    axes : str
        Axes of ``data`` (e.g. ``"yxc"``).
    fmt : str, optional
        Output format; default from the file's extension.
    internal_path : str
        HDF5 dataset name (``--output_internal_path``).
    drange : (float, float), optional
        Stored as the HDF5 ``drange`` attribute.
    output_axes : str, optional
        Transpose to this axis order before writing (``--output_axis_order``); missing
        singleton axes are added.

    Returns
    -------
    Path
        The file written.
    """
    file, inner = split_h5_path(path)
    if fmt is None:
        suffix = file.suffix.lower().lstrip(".")
        fmt = {"h5": "hdf5", "hdf5": "hdf5", "hdf": "hdf5"}.get(suffix, suffix)
    fmt = normalize_format(fmt)
    data = np.asarray(data)
    axes = axes.lower()
    if len(axes) != data.ndim:
        raise InputError(f"axes {axes!r} do not match data of shape {data.shape}")
    if output_axes is not None:
        output_axes = output_axes.lower()
        if set(output_axes) - set("tzyxc") or len(set(output_axes)) != len(output_axes):
            raise InputError(f"invalid output axis order {output_axes!r}")
        data, axes = reorder_axes(data, axes, output_axes), output_axes
    if fmt in ("hdf5", "compressed hdf5"):
        _write_h5(file, inner or internal_path, data, axes, drange, fmt == "compressed hdf5")
    elif is_sequence_format(fmt):
        for slice_file, part, part_axes in sequence_slices(file, data, axes):
            (_write_png if fmt == "png sequence" else _write_tiff)(slice_file, part, part_axes)
    elif fmt == "png":
        _write_png(file, data, axes)
    elif fmt in ("tif", "tiff", "multipage tiff"):
        _write_tiff(file, data, axes)
    elif fmt == "ome-zarr":
        write_ome_zarr(file, data, axes,
                       attrs={"drange": list(map(float, drange))} if drange is not None else None)
    else:
        with atomic_output(file) as tmp, open(tmp, "wb") as fh:
            np.save(fh, data, allow_pickle=False)
    return file


def _write_h5(file: Path, inner: str, data: np.ndarray, axes: str,
              drange: tuple[float, float] | None, compressed: bool) -> None:
    import h5py

    kwargs: dict[str, Any] = {}
    if compressed:
        # ilastik: one channel (and time point) per chunk, about 512 kB each, gzip level 1
        chunks = [1 if a in "ct" else s for a, s in zip(axes, data.shape)]
        budget = max(1, 512 * 1024 // data.dtype.itemsize)
        while int(np.prod(chunks)) > budget:
            i = int(np.argmax([c if a not in "ct" else 0 for a, c in zip(axes, chunks)]))
            chunks[i] = max(1, (chunks[i] + 1) // 2)
        kwargs = {"compression": "gzip", "compression_opts": 1, "chunks": tuple(chunks)}
    with atomic_output(file) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(inner.strip("/") or "exported_data", data=data, **kwargs)
            ds.attrs["axistags"] = axistags_json(axes)
            if drange is not None:
                ds.attrs["drange"] = np.asarray(drange, dtype=data.dtype if data.dtype.kind in "uif"
                                                else np.float64)
            for i, a in enumerate(axes):
                ds.dims[i].label = a


def _write_png(file: Path, data: np.ndarray, axes: str) -> None:
    spatial = [a for a, s in zip(axes, data.shape) if a != "c" and s > 1]
    if len(spatial) > 2:
        raise InputError(f"{file}: PNG holds 2-D images; this result has axes {axes!r} with "
                         f"shape {data.shape}; choose hdf5 or tiff")
    if any(a not in "yxc" for a in spatial):
        raise InputError(f"{file}: PNG export needs y and x as the image axes, not {axes!r}")
    data = reorder_axes(data, axes, "yxc" if "c" in axes else "yx")
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[-1] > 4:
        raise InputError(f"{file}: PNG holds 1 to 4 channels, not {data.shape[-1]}; "
                         f"choose hdf5 or tiff")
    if data.dtype not in (np.uint8, np.uint16):
        data = _png_uint8(data)
    if data.dtype == np.uint16 and data.ndim == 3:
        data = _png_uint8(data)
    write_png(file, data)


def _write_tiff(file: Path, data: np.ndarray, axes: str) -> None:
    import tifffile

    tiff_axes = axes.upper()
    if axes.endswith("c") and data.shape[-1] == 1:
        data, tiff_axes = data[..., 0], tiff_axes[:-1]
    elif axes.endswith("c"):
        tiff_axes = tiff_axes[:-1] + "S"  # interleaved samples, as vigra writes bands
    with atomic_output(file) as tmp:
        tifffile.imwrite(tmp, data, photometric="minisblack",
                         planarconfig="contig" if tiff_axes.endswith("S") else None,
                         metadata={"axes": tiff_axes})


def write_export(
    raw_path: str | os.PathLike,
    source: str,
    data: np.ndarray,
    axes: str,
    original_axes: str | None = None,
    *,
    fmt: str = "hdf5",
    filename_format: str | None = None,
    dataset_dir: str | os.PathLike | None = None,
    internal_path: str = "exported_data",
    output_axes: str | None = None,
    export_dtype: Any = None,
    pipeline_drange: Any = None,
    export_drange: Any = None,
    path: str | os.PathLike | None = None,
) -> Path:
    """Export one result of one input image as ilastik would.

    Parameters
    ----------
    raw_path : str or path-like
        The input image (names the output).
    source : str
        Export source (case-insensitive).
    data : ndarray
        The result in ``axes`` (e.g. ``yxc``; a spatial-only array gets ``c`` appended).
    axes : str
        Axes of ``data``.
    original_axes : str, optional
        The input file's axes; the output uses them with ``c`` appended (ilastik's default).
        Default: ``axes``.
    fmt, filename_format, dataset_dir
        See :func:`export_filename`.
    internal_path, output_axes
        See :func:`export_array`.
    export_dtype, pipeline_drange, export_drange
        See :func:`convert_for_export`. Without them the source's ilastik dtype is used.
    path : optional
        Write here instead of the computed file name.

    Returns
    -------
    Path
        The file written.
    """
    source = normalize_source(source)
    data = np.asarray(data)
    axes = axes.lower()
    if len(axes) != data.ndim:
        raise InputError(f"axes {axes!r} do not match data of shape {data.shape}")
    if "c" not in axes:
        data, axes = data[..., np.newaxis], axes + "c"
    target = output_axes or output_axes_for(original_axes or axes)
    data, drange = convert_for_export(data, export_dtype, pipeline_drange, export_drange,
                                      source=source)
    if path is None:
        out_shape = reorder_axes(data, axes, target).shape
        path = export_filename(raw_path, source, fmt, filename_format, shape=out_shape,
                               axes=target, dataset_dir=dataset_dir)
    return export_array(path, data, axes, fmt, internal_path=internal_path, drange=drange,
                        output_axes=target)
