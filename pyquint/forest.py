"""Random forests as flat node arrays: ilastik-like training, exact fast inference, safe files.

A :class:`FlatForest` holds every tree of a forest in a few concatenated arrays (one entry
per node). It can be built from a trained scikit-learn forest (:meth:`FlatForest.from_sklearn`)
or from another source such as a vigra forest stored in an ilastik project (``split_rule="lt"``).
Its :meth:`~FlatForest.predict_proba` is compiled with numba and gives exactly the numbers
scikit-learn gives (same comparisons, same float64 summation order over trees), then cast to
float32 as ilastik exports them.

Model files (:func:`save_model`, :func:`load_model`) are plain HDF5 with a versioned layout
described in ``docs/model-format.md``. Loading validates every array and never unpickles or
evaluates anything, so a corrupt or hostile file raises :class:`~pyquint.errors.ModelFileError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads

from . import __version__
from .errors import InputError, ModelFileError
from .io import atomic_output

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FlatForest",
    "load_model",
    "save_model",
    "train_forest",
]

FORMAT_NAME = "pyquint-model"
FORMAT_VERSION = 1
MODEL_KINDS = ("pixel", "object")
SPLIT_RULES = ("le", "lt")
_NODE_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots", "classes")
# Limits that keep a hostile file from exhausting memory before validation can reject it.
_MAX_NODES = 200_000_000
_MAX_CLASSES = 65_536
_MAX_METADATA = 16 * 1024 * 1024
# Pixels per block in the prediction kernel: one tree's nodes stay hot in cache while the
# block's rows are walked, and blocks are distributed over threads.
_BLOCK = 256


# --------------------------------------------------------------------------- kernel
@njit(parallel=True, cache=True, nogil=True)
def _predict_kernel(X, feature, threshold, left, right, value, roots, strict, out):  # pragma: no cover
    # X: (rows, cols, F), any strides (a view into a feature tile needs no copy);
    # out: (rows, cols, n_classes). Blocks are runs of pixels within one row.
    n_rows, n_cols = X.shape[0], X.shape[1]
    n_classes = value.shape[1]
    n_trees = roots.shape[0]
    per_row = (n_cols + _BLOCK - 1) // _BLOCK
    for b in prange(n_rows * per_row):
        r = b // per_row
        start = (b % per_row) * _BLOCK
        stop = min(n_cols, start + _BLOCK)
        acc = np.zeros((stop - start, n_classes), np.float64)
        # Trees in the outer loop, in order: the float64 sum per pixel is accumulated in the
        # same order as scikit-learn's (single-threaded) forest, so results are identical.
        for t in range(n_trees):
            root = roots[t]
            for i in range(start, stop):
                node = root
                while left[node] >= 0:
                    x = X[r, i, feature[node]]
                    # float32 x against float64 threshold, promoted as in scikit-learn's C code
                    if strict:
                        go_left = x < threshold[node]
                    else:
                        go_left = x <= threshold[node]
                    node = left[node] if go_left else right[node]
                for c in range(n_classes):
                    acc[i - start, c] += value[node, c]
        for i in range(start, stop):
            has_nan = False
            for f in range(X.shape[2]):
                if np.isnan(X[r, i, f]):
                    has_nan = True
                    break
            for c in range(n_classes):
                # ilastik gives rows containing NaN all-zero probabilities
                out[r, i, c] = 0.0 if has_nan else np.float32(acc[i - start, c] / n_trees)


# --------------------------------------------------------------------------- FlatForest
def _as_int_array(a: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ModelFileError(f"forest array {name!r} must be a {ndim}-D integer array, "
                             f"not {arr.dtype} with shape {arr.shape}")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise ModelFileError(f"forest array {name!r} holds values outside the int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _as_float_array(a: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim or not (np.issubdtype(arr.dtype, np.floating)
                                or np.issubdtype(arr.dtype, np.integer)):
        raise ModelFileError(f"forest array {name!r} must be a {ndim}-D float array, "
                             f"not {arr.dtype} with shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


class FlatForest:
    """A trained random forest stored as concatenated node arrays.

    Parameters
    ----------
    feature : array of int, shape (n_nodes,)
        Feature (column) tested at each split node; ignored at leaves.
    threshold : array of float, shape (n_nodes,)
        Split threshold at each split node (compared in float64); ignored at leaves.
    left, right : array of int, shape (n_nodes,)
        Global indices of the children of each node, ``-1`` for both at a leaf.
    value : array of float, shape (n_nodes, n_classes)
        Class distribution of each leaf (rows of split nodes are ignored). Distributions are
        averaged without weights over the trees, as scikit-learn and vigra do.
    roots : array of int, shape (n_trees,)
        Index of each tree's root node.
    classes : array of int, shape (n_classes,)
        The label value of each column of ``value`` (e.g. ``[1, 2, 3]``).
    n_features : int
        Number of feature columns the forest expects.
    split_rule : {"le", "lt"}
        ``"le"``: go left if ``x <= t`` (scikit-learn); ``"lt"``: go left if ``x < t`` (vigra).

    Raises
    ------
    ModelFileError
        When the arrays do not describe a valid forest (wrong shapes, child indices out of
        range, shared nodes or cycles, feature indices ``>= n_features``, non-finite
        thresholds, negative or non-finite leaf distributions).
    """

    def __init__(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        classes: np.ndarray,
        n_features: int,
        split_rule: str = "le",
    ) -> None:
        self.feature = _as_int_array(feature, "feature", 1)
        self.threshold = _as_float_array(threshold, "threshold", 1)
        self.left = _as_int_array(left, "left", 1)
        self.right = _as_int_array(right, "right", 1)
        self.value = _as_float_array(value, "value", 2)
        self.roots = _as_int_array(roots, "roots", 1)
        classes = np.asarray(classes)
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
            raise ModelFileError(f"forest classes must be a 1-D integer array, not {classes.dtype} "
                                 f"with shape {classes.shape}")
        self.classes = classes.astype(np.int64)
        if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)):
            raise ModelFileError(f"n_features must be an integer, not {n_features!r}")
        self.n_features = int(n_features)
        if split_rule not in SPLIT_RULES:
            raise ModelFileError(f"split_rule must be one of {SPLIT_RULES}, not {split_rule!r}")
        self.split_rule = split_rule
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        n = self.feature.shape[0]
        if n == 0 or n > _MAX_NODES:
            raise ModelFileError(f"a forest needs 1..{_MAX_NODES} nodes, not {n}")
        for name in ("threshold", "left", "right"):
            if getattr(self, name).shape[0] != n:
                raise ModelFileError(f"forest array {name!r} has {getattr(self, name).shape[0]} "
                                     f"entries, expected {n} (one per node)")
        n_classes = self.classes.shape[0]
        if not 1 <= n_classes <= _MAX_CLASSES:
            raise ModelFileError(f"a forest needs 1..{_MAX_CLASSES} classes, not {n_classes}")
        if len(np.unique(self.classes)) != n_classes:
            raise ModelFileError(f"forest classes are not distinct: {self.classes.tolist()}")
        if self.value.shape != (n, n_classes):
            raise ModelFileError(f"forest array 'value' has shape {self.value.shape}, "
                                 f"expected {(n, n_classes)}")
        if self.n_features < 1:
            raise ModelFileError(f"n_features must be >= 1, not {self.n_features}")
        n_trees = self.roots.shape[0]
        if n_trees == 0:
            raise ModelFileError("a forest needs at least one tree")
        leaf = self.left < 0
        if np.any((self.left < -1) | (self.right < -1)):
            raise ModelFileError("child indices must be >= 0, or -1 at leaves")
        if np.any(leaf != (self.right < 0)):
            raise ModelFileError("a node has exactly one child; a split node needs two")
        split = ~leaf
        if np.any(self.left[split] >= n) or np.any(self.right[split] >= n):
            raise ModelFileError(f"a child index is out of range (the forest has {n} nodes)")
        if np.any((self.roots < 0) | (self.roots >= n)):
            raise ModelFileError(f"a root index is out of range (the forest has {n} nodes)")
        if np.any((self.feature[split] < 0) | (self.feature[split] >= self.n_features)):
            raise ModelFileError(f"a split tests a feature outside 0..{self.n_features - 1}")
        if not np.all(np.isfinite(self.threshold[split])):
            raise ModelFileError("a split threshold is not finite")
        leaf_values = self.value[leaf]
        if not np.all(np.isfinite(leaf_values)) or np.any(leaf_values < 0):
            raise ModelFileError("a leaf class distribution holds negative or non-finite values")
        # Every node must have exactly one parent, except roots (none): with all nodes
        # reachable from the roots this makes the arrays a forest of disjoint trees, so a
        # walk from any root ends at a leaf (no cycles, no shared subtrees).
        indegree = np.bincount(np.concatenate([self.left[split], self.right[split]]),
                               minlength=n)
        indegree[self.roots] += 1
        if np.any(indegree != 1):
            raise ModelFileError("the node arrays do not form disjoint trees: a node has "
                                 "several parents, or none, or is a root and a child (cycle)")
        seen = np.zeros(n, dtype=bool)
        frontier = self.roots
        depth = 0
        while frontier.size:
            seen[frontier] = True
            inner = frontier[split[frontier]]
            frontier = np.concatenate([self.left[inner], self.right[inner]])
            depth += 1
            if depth > n:  # pragma: no cover - excluded by the in-degree test
                raise ModelFileError("the node arrays contain a cycle")
        if not seen.all():
            raise ModelFileError("the node arrays contain nodes that no tree reaches "
                                 "(a detached cycle or garbage)")
        # Keep leaves canonical so that files compare equal and the kernel never reads them.
        self.feature = np.where(leaf, -1, self.feature).astype(np.int32)
        self.threshold = np.where(leaf, 0.0, self.threshold)

    # ------------------------------------------------------------------ properties
    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return int(self.roots.shape[0])

    @property
    def n_nodes(self) -> int:
        """Total number of nodes over all trees."""
        return int(self.feature.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes the forest knows (columns of :meth:`predict_proba`)."""
        return int(self.classes.shape[0])

    def __repr__(self) -> str:
        return (f"FlatForest(n_trees={self.n_trees}, n_nodes={self.n_nodes}, "
                f"n_features={self.n_features}, classes={self.classes.tolist()}, "
                f"split_rule={self.split_rule!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlatForest):
            return NotImplemented
        return (self.n_features == other.n_features and self.split_rule == other.split_rule
                and all(np.array_equal(getattr(self, k), getattr(other, k))
                        for k in _NODE_ARRAYS))

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_sklearn(cls, rf: Any) -> FlatForest:
        """Convert a fitted scikit-learn forest classifier (single output).

        Parameters
        ----------
        rf : RandomForestClassifier or ExtraTreesClassifier
            A fitted forest whose ``classes_`` are integers.

        Returns
        -------
        FlatForest
            With ``split_rule="le"``; :meth:`predict_proba` equals ``rf.predict_proba`` cast
            to float32.
        """
        estimators = getattr(rf, "estimators_", None)
        if not estimators:
            raise InputError("from_sklearn needs a fitted scikit-learn forest classifier")
        if getattr(rf, "n_outputs_", 1) != 1:
            raise InputError("only single-output forests can be converted")
        classes = np.asarray(rf.classes_)
        if not np.issubdtype(classes.dtype, np.integer):
            if not (np.issubdtype(classes.dtype, np.floating) and np.all(classes == np.round(classes))):
                raise InputError(f"forest classes must be integers, not {classes.tolist()}")
            classes = classes.astype(np.int64)
        feature, threshold, left, right, value, roots = [], [], [], [], [], []
        offset = 0
        for est in estimators:
            tree = est.tree_
            children_left = tree.children_left.astype(np.int64)
            children_right = tree.children_right.astype(np.int64)
            is_leaf = children_left < 0
            feature.append(tree.feature)
            threshold.append(tree.threshold)
            left.append(np.where(is_leaf, -1, children_left + offset))
            right.append(np.where(is_leaf, -1, children_right + offset))
            # scikit-learn >= 1.4 stores class fractions in value; its predict_proba returns
            # them unchanged, so we keep the same float64 numbers.
            v = np.asarray(tree.value[:, 0, : len(classes)], dtype=np.float64)
            sums = v.sum(axis=1, keepdims=True)
            if np.any(np.abs(sums[is_leaf] - 1.0) > 1e-6):  # older versions: weighted counts
                sums[sums == 0] = 1.0
                v = v / sums
            value.append(v)
            roots.append(offset)
            offset += tree.node_count
        return cls(
            np.concatenate(feature), np.concatenate(threshold), np.concatenate(left),
            np.concatenate(right), np.concatenate(value), np.asarray(roots), classes,
            int(rf.n_features_in_), "le",
        )

    def to_arrays(self) -> dict[str, Any]:
        """The forest as a dict of arrays and scalars (what :func:`save_model` stores)."""
        return {
            "feature": self.feature, "threshold": self.threshold, "left": self.left,
            "right": self.right, "value": self.value, "roots": self.roots,
            "classes": self.classes, "n_features": self.n_features,
            "split_rule": self.split_rule,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> FlatForest:
        """Inverse of :meth:`to_arrays` (validates everything)."""
        missing = [k for k in (*_NODE_ARRAYS, "n_features", "split_rule") if k not in arrays]
        if missing:
            raise ModelFileError(f"forest arrays are missing {', '.join(missing)}")
        return cls(**{k: arrays[k] for k in (*_NODE_ARRAYS, "n_features", "split_rule")})

    # ------------------------------------------------------------------ inference
    def predict_proba(
        self, X: np.ndarray, *, n_classes: int | None = None, n_jobs: int | None = None
    ) -> np.ndarray:
        """Average of the trees' leaf class distributions for each row of ``X``.

        Parameters
        ----------
        X : array, shape (n_samples, n_features) or (..., n_features)
            Feature vectors; converted to float32 (as scikit-learn and ilastik do). Any
            leading shape is allowed (e.g. a ``(y, x, F)`` view of a feature image; views
            are not copied).
        n_classes : int, optional
            Return columns for the label values ``1..n_classes`` (ilastik: channel ``i`` is
            label ``i + 1``); classes the forest never saw get a zero column. By default one
            column per entry of :attr:`classes`, in that order.
        n_jobs : int, optional
            Threads to use (default: numba's default, all cores).

        Returns
        -------
        proba : float32 array, shape X.shape[:-1] + (n_columns,)
            Rows sum to 1; rows of ``X`` holding NaN are all 0 (ilastik's behaviour).
        """
        X = np.asarray(X)
        if X.ndim < 2 or X.shape[-1] != self.n_features:
            raise InputError(f"the forest expects feature vectors of length {self.n_features}, "
                             f"got an array of shape {X.shape}")
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise InputError(f"features must be numbers, not {X.dtype}")
        X = np.asarray(X, dtype=np.float32)  # float32 views are used as they are, no copy
        out = np.empty(X.shape[:-1] + (self.n_classes,), dtype=np.float32)
        # the kernel walks (rows, cols, F) arrays: 2-D input is one row, 4-D+ is looped over
        grids = [(X[np.newaxis], out[np.newaxis])] if X.ndim == 2 else [
            (X[idx], out[idx]) for idx in np.ndindex(*X.shape[:-3])]
        if out.size:
            previous = get_num_threads()
            if n_jobs is not None:
                set_num_threads(max(1, min(int(n_jobs), previous)) if n_jobs > 0 else previous)
            try:
                for x3, o3 in grids:
                    _predict_kernel(x3, self.feature, self.threshold, self.left, self.right,
                                    self.value, self.roots, self.split_rule == "lt", o3)
            finally:
                set_num_threads(previous)
        if n_classes is None:
            return out
        if np.any((self.classes < 1) | (self.classes > n_classes)):
            raise InputError(f"n_classes={n_classes} does not cover the forest's classes "
                             f"{self.classes.tolist()} (columns are labels 1..n_classes)")
        full = np.zeros(out.shape[:-1] + (n_classes,), dtype=np.float32)
        full[..., self.classes - 1] = out
        return full


# --------------------------------------------------------------------------- training
def _resolve_seed(seed: int | None) -> int:
    if seed is None:
        # Like vigra, an unseeded forest is random; the drawn seed is returned so that the
        # model file records how to reproduce it.
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be an integer in 0..2**32-1, not {seed!r}")
    return int(seed)


def train_forest(
    X: np.ndarray,
    y: np.ndarray,
    n_trees: int = 100,
    seed: int | None = None,
    n_jobs: int | None = None,
) -> FlatForest:
    """Train a random forest configured as close to ilastik's vigra forest as scikit-learn allows.

    Bootstrap samples of size n drawn with replacement, Gini impurity, ``round(sqrt(F))``
    features tried per split (vigra rounds where scikit-learn's ``"sqrt"`` floors), trees grown
    until their leaves are pure. Leaves are pure, so with 100 trees every probability is a
    multiple of 1/100 (unless identical feature vectors carry different labels).

    Parameters
    ----------
    X : array, shape (n_samples, n_features)
        Training feature vectors (converted to float32).
    y : array of int, shape (n_samples,)
        Class labels (e.g. 1..N).
    n_trees : int
        Number of trees (ilastik's default: 100).
    seed : int, optional
        Seed for bootstrap and feature sampling; the same seed gives the same forest.
    n_jobs : int, optional
        Threads for training (scikit-learn's ``n_jobs``; default all cores); does not change
        the result.

    Returns
    -------
    FlatForest
    """
    from sklearn.ensemble import RandomForestClassifier

    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"training features must be a non-empty 2-D array, not shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise InputError(f"{X.shape[0]} feature vectors but labels of shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"training labels must be integers, not {y.dtype}")
    X = np.asarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise InputError("training features contain NaN or infinite values")
    if isinstance(n_trees, bool) or not isinstance(n_trees, (int, np.integer)) or n_trees < 1:
        raise InputError(f"the number of trees must be a positive integer, not {n_trees!r}")
    n_features = X.shape[1]
    rf = RandomForestClassifier(
        n_estimators=int(n_trees),
        criterion="gini",
        max_features=max(1, min(n_features, int(math.sqrt(n_features) + 0.5))),
        bootstrap=True,
        min_samples_leaf=1,
        min_samples_split=2,
        max_depth=None,
        random_state=_resolve_seed(seed),
        n_jobs=-1 if n_jobs is None else n_jobs,
    )
    rf.fit(X, y)
    return FlatForest.from_sklearn(rf)


# --------------------------------------------------------------------------- model files
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
    path: str | os.PathLike, kind: str, forest: FlatForest, metadata: Mapping[str, Any]
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
            for name in _NODE_ARRAYS:
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


def _read_dataset(group: Any, name: str, where: str) -> np.ndarray:
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
    if ds.dtype.kind not in "iuf" or ds.ndim > 2:
        raise ModelFileError(f"{where}: 'forest/{name}' has unsupported type {ds.dtype} "
                             f"or shape {ds.shape}")
    if ds.size > _MAX_NODES * (64 if name == "value" else 1):
        raise ModelFileError(f"{where}: 'forest/{name}' is implausibly large ({ds.shape})")
    return np.asarray(ds[()])


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
            arrays: dict[str, Any] = {name: _read_dataset(g, name, where) for name in _NODE_ARRAYS}
            arrays["n_features"] = _attr_int(g.attrs, "n_features", where)
            arrays["split_rule"] = _attr_str(g.attrs, "split_rule", where)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{where}: corrupt or truncated model file ({exc})") from exc
    try:
        forest = FlatForest.from_arrays(arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: invalid forest: {exc}") from exc
    return forest, metadata
