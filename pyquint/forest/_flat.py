"""FlatForest: a random forest as concatenated node arrays, validated; fast exact inference."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import InputError, ModelFileError
from . import _kernels

SPLIT_RULES = ("le", "lt")
NODE_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots", "classes")
# Limits that keep a hostile file from exhausting memory before validation can reject it.
MAX_NODES = 200_000_000
MAX_CLASSES = 65_536
# vigra and scikit-learn forests stay far below this; a deeper tree is a hostile file whose
# prediction would take hours (one step per level per pixel).
MAX_DEPTH = 4_096


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
        if n == 0 or n > MAX_NODES:
            raise ModelFileError(f"a forest needs 1..{MAX_NODES} nodes, not {n}")
        for name in ("threshold", "left", "right"):
            if getattr(self, name).shape[0] != n:
                raise ModelFileError(f"forest array {name!r} has {getattr(self, name).shape[0]} "
                                     f"entries, expected {n} (one per node)")
        n_classes = self.classes.shape[0]
        if not 1 <= n_classes <= MAX_CLASSES:
            raise ModelFileError(f"a forest needs 1..{MAX_CLASSES} classes, not {n_classes}")
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
        # Depth of every node by pointer jumping over the parent array: about log2(depth)
        # vectorised rounds instead of one Python round per level, so a 10**6-deep chain is
        # refused in milliseconds. A node whose ancestor chain does not end at a root within
        # MAX_DEPTH steps is either too deep or on a detached cycle.
        parent = np.full(n, -1, dtype=np.int64)
        inner = np.flatnonzero(split)
        parent[self.left[inner]] = inner
        parent[self.right[inner]] = inner
        depth = (parent >= 0).astype(np.int64)
        anc = parent.copy()
        for _ in range(MAX_DEPTH.bit_length() + 1):  # covers chains up to 2 * MAX_DEPTH
            live = np.flatnonzero(anc >= 0)
            if live.size == 0:
                break
            up = anc[live]
            depth[live] += depth[up]
            anc[live] = anc[up]
        if depth[anc < 0].max(initial=0) > MAX_DEPTH:
            raise ModelFileError(f"a tree is deeper than {MAX_DEPTH} levels; vigra and "
                                 "scikit-learn forests never are (a damaged or hostile file)")
        if np.any(anc >= 0):
            raise ModelFileError(f"the node arrays contain nodes that no tree reaches within "
                                 f"{MAX_DEPTH} levels (a detached cycle, garbage, or a tree far "
                                 "deeper than vigra or scikit-learn grow)")
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
                        for k in NODE_ARRAYS))

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
        missing = [k for k in (*NODE_ARRAYS, "n_features", "split_rule") if k not in arrays]
        if missing:
            raise ModelFileError(f"forest arrays are missing {', '.join(missing)}")
        return cls(**{k: arrays[k] for k in (*NODE_ARRAYS, "n_features", "split_rule")})

    # ------------------------------------------------------------------ inference
    def _layout(self) -> dict[str, Any]:
        """The compiled-kernel layout, built on first use (the node arrays are not modified
        after construction)."""
        layout = self.__dict__.get("_layout_cache")
        if layout is not None:
            return layout
        leaf = self.left < 0
        lv = self.value[leaf]
        pure = bool(np.all((lv == 0.0) | (lv == 1.0)) and np.all((lv == 1.0).sum(axis=1) == 1))
        votes = (pure and self.n_classes <= _kernels.MAX_VOTE_CLASSES
                 and self.n_trees <= _kernels.MAX_VOTE_TREES)
        leaf_class = np.where(leaf, 16 * self.value.argmax(axis=1), 0).astype(np.int32)
        thr32 = _kernels.float32_thresholds(self.threshold, self.split_rule == "lt")
        nodes, old, roots, depth, sure = _kernels.compact_layout(
            self.left, self.right, self.feature, thr32, leaf_class, self.roots)
        block = _kernels.block_size(self.n_features)
        packed, keys, code = _kernels.pack_layout(nodes, block)
        layout = {"nodes": nodes, "roots": roots.astype(np.uint64), "depth": depth.astype(np.int64),
                  "sure": sure.astype(np.int64), "votes": votes, "block": block,
                  "packed": packed, "keys": keys, "code": code,
                  "value": None if votes else np.ascontiguousarray(self.value[old])}
        self._layout_cache = layout
        return layout

    def _columns(self, n_classes: int | None) -> tuple[np.ndarray, int]:
        """Output column of each forest class, and the number of columns."""
        if n_classes is None:
            return np.arange(self.n_classes, dtype=np.int64), self.n_classes
        if np.any((self.classes < 1) | (self.classes > n_classes)):
            raise InputError(f"n_classes={n_classes} does not cover the forest's classes "
                             f"{self.classes.tolist()} (columns are labels 1..n_classes)")
        return self.classes - 1, int(n_classes)

    def _check_X(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 2 or X.shape[-1] != self.n_features:
            raise InputError(f"the forest expects feature vectors of length {self.n_features}, "
                             f"got an array of shape {X.shape}")
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise InputError(f"features must be numbers, not {X.dtype}")
        return np.asarray(X, dtype=np.float32)  # float32 views are used as they are, no copy

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
            Threads to use (default, or ``<= 0``: every core available to the process); the
            result does not depend on it.

        Returns
        -------
        proba : float32 array, shape X.shape[:-1] + (n_columns,)
            Rows sum to 1; rows of ``X`` holding NaN are all 0 (ilastik's behaviour).
        """
        X = self._check_X(X)
        colmap, n_out = self._columns(n_classes)
        out = np.empty(X.shape[:-1] + (n_out,), dtype=np.float32)
        if X.size:
            _run_blocks(self._layout(), X, colmap, out, _n_threads(n_jobs), winner=False)
        return out

    def predict(
        self, X: np.ndarray, *, n_classes: int | None = None, n_jobs: int | None = None
    ) -> np.ndarray:
        """The class of each row of ``X``: the column :meth:`predict_proba` ranks first.

        Equals ``argmax`` of :meth:`predict_proba` (ties to the lower column; rows holding
        NaN give the first column), mapped to its label value, but pure-leaf forests of at
        most four classes stop walking a pixel's trees as soon as the trees left cannot change
        its winner (exact; about twice as fast on well-separated images).

        Parameters
        ----------
        X, n_classes, n_jobs
            As in :meth:`predict_proba`.

        Returns
        -------
        labels : array, shape X.shape[:-1]
            The label value of the winning column (``1..n_classes`` with ``n_classes``;
            otherwise an entry of :attr:`classes`): uint8 when every label fits, else int64.
        """
        X = self._check_X(X)
        colmap, n_out = self._columns(n_classes)
        values = np.arange(1, n_out + 1) if n_classes is not None else self.classes
        dtype = np.uint8 if values.min() >= 0 and values.max() <= 255 else np.int64
        layout = self._layout()
        if not layout["votes"]:
            proba = self.predict_proba(X, n_classes=n_classes, n_jobs=n_jobs)
            return values[np.argmax(proba, axis=-1)].astype(dtype)
        column = np.empty(X.shape[:-1], dtype=np.int32)
        if X.size:
            _run_blocks(layout, X, colmap, column, _n_threads(n_jobs), winner=True)
        return values.astype(dtype)[column]


def _n_threads(n_jobs: int | None) -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    if n_jobs is None or n_jobs <= 0:
        return available
    return max(1, min(int(n_jobs), available))


def _run_blocks(layout: Mapping[str, Any], X: np.ndarray, colmap: np.ndarray, out: np.ndarray,
                n_threads: int, winner: bool) -> None:
    """Run a kernel over all pixel blocks of ``X`` (..., F), split over threads.

    ``winner``: the winning column of each pixel into ``out`` (X.shape[:-1], int32);
    otherwise the probabilities (X.shape[:-1] + (columns,), float32).
    """
    # the kernels read float32 features as their uint32 bit patterns (any strides), and walk
    # (rows, cols, F) grids: 2-D input is one row, 4-D+ is looped over
    X = X.view(np.uint32)
    if X.ndim == 2:
        grids = [(X[np.newaxis], out[np.newaxis])]
    else:
        grids = [(X[idx], out[idx]) for idx in np.ndindex(*X.shape[:-3])]
    block = layout["block"]
    walk = (layout["packed"], layout["keys"])
    # no rows: pure leaves, votes are counted; else the leaf distributions are added
    value = layout["value"] if layout["value"] is not None else np.zeros((0, 0), np.float64)
    for x3, o3 in grids:
        if winner:
            def run(b0: int, b1: int, x3: np.ndarray = x3, o3: np.ndarray = o3) -> None:
                _kernels.predict_winner(x3, b0, b1, block, *walk, layout["code"], layout["roots"],
                                        layout["sure"], colmap, o3)
        else:
            def run(b0: int, b1: int, x3: np.ndarray = x3, o3: np.ndarray = o3) -> None:
                _kernels.predict_blocks(x3, b0, b1, block, *walk, layout["code"], layout["roots"],
                                        layout["sure"], value, colmap, o3)
        n_blocks = x3.shape[0] * -(-x3.shape[1] // block)
        # a few chunks per thread even out uneven blocks (borders, NaN rows, early stops)
        n_chunks = min(n_blocks, 4 * n_threads) if n_threads > 1 else 1
        if n_chunks <= 1:
            run(0, n_blocks)
            continue
        edges = np.linspace(0, n_blocks, n_chunks + 1).round().astype(int)
        with ThreadPoolExecutor(n_threads) as pool:
            futures = [pool.submit(run, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
            for future in futures:
                future.result()
