"""Model files: a FlatForest and JSON metadata in a versioned, validated HDF5 layout
(``docs/model-format.md``); nothing is ever unpickled or evaluated."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InputError, ModelFileError
from ..features import ROUNDINGS, FeatureSelection
from ..io import atomic_output, memory_budget
from ._flat import MAX_CLASSES, MAX_NODES, NODE_ARRAYS, FlatForest

FORMAT_NAME = "pyquint-model"
FORMAT_VERSION = 1
MODEL_KINDS = ("pixel", "object")
_MAX_METADATA = 16 * 1024 * 1024


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_model(
    path: str | os.PathLike, kind: str, forest: FlatForest, metadata: Mapping[str, Any], *,
    overwrite: bool = True,
) -> Path:
    """Write a forest and its metadata to a pyquint model file (HDF5), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (conventionally ``.h5``); replaced atomically if it exists.
    kind : {"pixel", "object"}
        What the model classifies.
    forest : FlatForest
    metadata : mapping
        JSON-serialisable information (feature selection, class names, colours, seed, ...).
    overwrite : bool, default True
        False: refuse (:class:`InputError`) when ``path`` exists; the classifiers' ``save``
        methods pass their own ``overwrite=False`` default here.

    Returns
    -------
    Path
    """
    import h5py

    if kind not in MODEL_KINDS:
        raise InputError(f"model kind must be one of {MODEL_KINDS}, not {kind!r}")
    try:
        meta_json = json.dumps(_to_jsonable(dict(metadata)), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"model metadata is not JSON-serialisable: {exc}") from exc
    path = Path(path)
    if not overwrite and path.exists():
        raise InputError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["kind"] = kind
            f.attrs["pyquint_version"] = __version__
            f.attrs["metadata"] = meta_json
            g = f.create_group("forest")
            g.attrs["n_features"] = forest.n_features
            g.attrs["split_rule"] = forest.split_rule
            g.attrs["n_trees"] = forest.n_trees
            for name in NODE_ARRAYS:
                arr = getattr(forest, name)
                g.create_dataset(name, data=arr, compression="gzip", compression_opts=4,
                                 shuffle=arr.size > 64)
    return path


_ALLOWED_FILTERS = {"gzip", "shuffle", "lzf", "fletcher32"}


def _attr_str(attrs: Any, key: str, where: str) -> str:
    if key not in attrs:
        raise ModelFileError(f"{where}: attribute {key!r} is missing")
    value = attrs[key]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise ModelFileError(f"{where}: attribute {key!r} must be a string, not {type(value).__name__}")
    return value


def _attr_int(attrs: Any, key: str, where: str) -> int:
    if key not in attrs:
        raise ModelFileError(f"{where}: attribute {key!r} is missing")
    value = attrs[key]
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ModelFileError(f"{where}: attribute {key!r} must be an integer, not {value!r}")
    return int(value)


def _dataset(group: Any, name: str, where: str) -> Any:
    """The dataset ``forest/name``, checked for what it is before any of it is read."""
    import h5py

    link = group.get(name, getlink=True)
    if link is None:
        raise ModelFileError(f"{where}: dataset 'forest/{name}' is missing")
    if not isinstance(link, h5py.HardLink):
        raise ModelFileError(f"{where}: 'forest/{name}' is a link to elsewhere; not allowed")
    ds = group[name]
    if not isinstance(ds, h5py.Dataset):
        raise ModelFileError(f"{where}: 'forest/{name}' is not a dataset")
    if ds.is_virtual or ds.external:
        raise ModelFileError(f"{where}: 'forest/{name}' refers to external data; not allowed")
    unknown = set(ds._filters) - _ALLOWED_FILTERS
    if unknown:
        raise ModelFileError(f"{where}: 'forest/{name}' uses unsupported filters {sorted(unknown)}")
    if ds.dtype.kind not in "iuf" or ds.ndim != (2 if name == "value" else 1):
        raise ModelFileError(f"{where}: 'forest/{name}' has unsupported type {ds.dtype} "
                             f"or shape {ds.shape}")
    return ds


# deflate never packs more than ~1032:1; a dataset "holding" more than this per stored byte
# was declared without being written (an HDF5 bomb), whatever its filters say.
_MAX_PACKING = 1100


def _check_declared(datasets: Mapping[str, Any], where: str) -> None:
    """Limits derived from the file's own counts, checked on the declared shapes before any
    array is allocated: every per-node array has n_nodes entries, ``value`` is exactly
    (n_nodes, n_classes), and the whole must fit in memory and in the bytes really stored."""
    n = datasets["feature"].shape[0]
    if not 1 <= n <= MAX_NODES:
        raise ModelFileError(f"{where}: a forest needs 1..{MAX_NODES} nodes, not {n}")
    n_classes = datasets["classes"].shape[0]
    if not 1 <= n_classes <= MAX_CLASSES:
        raise ModelFileError(f"{where}: a forest needs 1..{MAX_CLASSES} classes, not {n_classes}")
    expected = {"threshold": (n,), "left": (n,), "right": (n,), "value": (n, n_classes)}
    for name, shape in expected.items():
        if datasets[name].shape != shape:
            raise ModelFileError(f"{where}: 'forest/{name}' is declared {datasets[name].shape}, but "
                                 f"the file's {n} nodes and {n_classes} classes need {shape}")
    n_roots = datasets["roots"].shape[0]
    if not 1 <= n_roots <= n:
        raise ModelFileError(f"{where}: {n_roots} trees for {n} nodes is impossible")
    need = sum(int(ds.size) * 8 for ds in datasets.values())  # read as int64/float64 at most
    if need > memory_budget():
        raise ModelFileError(f"{where}: the forest needs {need / 2**30:.1f} GiB of memory, more "
                             "than is available")
    for name, ds in datasets.items():
        stored = ds.id.get_storage_size()
        if ds.nbytes > (1 << 20) and stored * _MAX_PACKING < ds.nbytes:
            raise ModelFileError(f"{where}: 'forest/{name}' declares {ds.nbytes} bytes but stores "
                                 f"only {stored}; the file is damaged or hostile")


_INT_RANGES = {
    "n_classes": (1, MAX_CLASSES),
    "n_input_channels": (1, 4096),
    "n_channels": (1, 4096),
    "ndim": (2, 3),
    "n_trees": (1, 100_000),
    "seed": (0, 2**64 - 1),
}


def check_metadata(metadata: Mapping[str, Any], where: str) -> None:
    """Check the range of every metadata value this package knows (old files lack some keys;
    present ones must make sense: a class count of 10**9 or a colour of 300 is refused)."""
    for key, (lo, hi) in _INT_RANGES.items():
        if key in metadata:
            v = metadata[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ModelFileError(f"{where}: invalid metadata {key!r} must be an integer in "
                                     f"{lo}..{hi}, not {v!r}")
    names = metadata.get("class_names")
    if names is not None and (not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSES
                              or not all(isinstance(x, str) and len(x) <= 1000 for x in names)):
        raise ModelFileError(f"{where}: invalid metadata 'class_names' must be a list of short strings")
    colors = metadata.get("class_colors")
    if colors is not None and (
            not isinstance(colors, list)
            or not all(isinstance(c, list) and len(c) == 3 and all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in c)
                for c in colors)):
        raise ModelFileError(f"{where}: invalid metadata 'class_colors' must be [r, g, b] triples of 0..255")
    if "rounding" in metadata and metadata["rounding"] not in ROUNDINGS:
        raise ModelFileError(f"{where}: invalid metadata 'rounding' must be fast, exact or muladd (or vigra), not "
                             f"{metadata['rounding']!r}")
    features = metadata.get("features")
    if isinstance(features, Mapping) and "scales" in features:
        try:
            FeatureSelection.from_dict(features)
        except InputError as exc:
            raise ModelFileError(f"{where}: invalid metadata 'features': {exc}") from None
    training = metadata.get("training")
    if isinstance(training, Mapping) and "value_range" in training:
        vr = training["value_range"]
        if (not isinstance(vr, list) or len(vr) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vr)
                or not vr[0] <= vr[1]):
            raise ModelFileError(f"{where}: invalid metadata 'training.value_range' must be [min, max]")


def load_model(
    path: str | os.PathLike, expected_kind: str | None = None
) -> tuple[FlatForest, dict[str, Any]]:
    """Read and validate a pyquint model file.

    Parameters
    ----------
    path : str or path-like
    expected_kind : {"pixel", "object"}, optional
        Refuse a model of another kind.

    Returns
    -------
    forest : FlatForest
    metadata : dict

    Raises
    ------
    ModelFileError
        For a missing, truncated, corrupt, foreign, newer-version or inconsistent file. The
        file's content is only ever read as numbers and JSON; nothing is unpickled or executed.
    """
    import h5py

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ModelFileError(f"{where}: no such model file")
    try:
        if not h5py.is_hdf5(path):
            raise ModelFileError(f"{where}: not a pyquint model (not an HDF5 file, or truncated)")
        with h5py.File(path, "r") as f:
            fmt = _attr_str(f.attrs, "format", where) if "format" in f.attrs else None
            if fmt != FORMAT_NAME:
                raise ModelFileError(f"{where}: not a pyquint model file (format attribute "
                                     f"{fmt!r}, expected {FORMAT_NAME!r})")
            version = _attr_int(f.attrs, "format_version", where)
            if version != FORMAT_VERSION:
                raise ModelFileError(
                    f"{where}: model format version {version} is not supported by this pyquint "
                    f"({__version__} reads version {FORMAT_VERSION}); "
                    + ("upgrade pyquint" if version > FORMAT_VERSION else "re-train the model"))
            kind = _attr_str(f.attrs, "kind", where)
            if kind not in MODEL_KINDS:
                raise ModelFileError(f"{where}: unknown model kind {kind!r}")
            if expected_kind is not None and kind != expected_kind:
                raise ModelFileError(f"{where}: this is a {kind} model, not a {expected_kind} model")
            meta_text = _attr_str(f.attrs, "metadata", where)
            if len(meta_text) > _MAX_METADATA:
                raise ModelFileError(f"{where}: metadata attribute is implausibly large")
            try:
                metadata = json.loads(meta_text)
            except ValueError as exc:
                raise ModelFileError(f"{where}: metadata is not valid JSON ({exc})") from exc
            if not isinstance(metadata, dict):
                raise ModelFileError(f"{where}: metadata must be a JSON object")
            link = f.get("forest", getlink=True)
            if not isinstance(link, h5py.HardLink) or not isinstance(f["forest"], h5py.Group):
                raise ModelFileError(f"{where}: group 'forest' is missing")
            g = f["forest"]
            datasets = {name: _dataset(g, name, where) for name in NODE_ARRAYS}
            _check_declared(datasets, where)
            arrays: dict[str, Any] = {name: np.asarray(ds[()]) for name, ds in datasets.items()}
            arrays["n_features"] = _attr_int(g.attrs, "n_features", where)
            arrays["split_rule"] = _attr_str(g.attrs, "split_rule", where)
    except (ModelFileError, InputError):
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{where}: corrupt or truncated model file ({exc})") from exc
    check_metadata(metadata, where)
    try:
        forest = FlatForest.from_arrays(arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: invalid forest: {exc}") from exc
    return forest, metadata
