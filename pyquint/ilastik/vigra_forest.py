"""Decode the vigra random forests stored in ilastik projects into a :class:`FlatForest`.

A vigra tree is two arrays (``Tree_NN/topology`` int32, ``Tree_NN/parameters`` float64).
``topology[0:2]`` = (number of features, number of classes); nodes start at index 2:

- threshold split (type 0): ``[0, param_addr, child0, child1, column]``; go to ``child0``
  when ``x[column] < parameters[param_addr + 1]``, else ``child1`` (children are offsets
  into ``topology``);
- leaf (type ``0x40000000``): ``[0x40000000, param_addr]``; ``parameters[param_addr]`` is a
  sample weight and ``parameters[param_addr + 1 : + 1 + n_classes]`` the class distribution,
  its columns in the order of ``_ext_param/labels``.

ilastik's ParallelVigraRf classifier averages the leaf distributions of every tree of every
forest with equal weight, which is what :meth:`FlatForest.predict_proba` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, PyquintError
from ..forest import FlatForest
from ._h5 import open_readonly

__all__ = ["VigraTree", "decode_tree", "read_forests", "read_project_forest"]

THRESHOLD_NODE = 0
LEAF_NODE = 0x40000000


class VigraTree:
    """One decoded tree: node arrays in depth-first order, node 0 = root."""

    __slots__ = ("feature", "threshold", "left", "right", "value")

    def __init__(self, feature, threshold, left, right, value):
        self.feature, self.threshold, self.left, self.right, self.value = (
            feature, threshold, left, right, value,
        )

    @property
    def n_nodes(self) -> int:
        return len(self.feature)


def decode_tree(
    topology: np.ndarray,
    parameters: np.ndarray,
    n_features: int | None = None,
    n_classes: int | None = None,
    source: object = "vigra tree",
) -> VigraTree:
    """Decode one vigra tree.

    Parameters
    ----------
    topology : ndarray of int
    parameters : ndarray of float
    n_features, n_classes : int, optional
        Expected sizes (from ``_ext_param``); checked against the tree's header.
    source : object
        Named in error messages.

    Returns
    -------
    VigraTree
        ``feature`` int32 (-1 at leaves... set to 0 with ``left == -1``), ``threshold``
        float64, ``left``/``right`` int32 node indices (-1 at leaves), ``value`` float32
        (n_nodes, n_classes) leaf distributions normalised to sum 1 (zeros at split nodes).
    """
    topo = np.asarray(topology).astype(np.int64, copy=False).ravel()
    params = np.asarray(parameters, dtype=np.float64).ravel()
    if topo.size < 4:
        raise InputError(f"{source}: truncated vigra tree (topology of {topo.size} values)")
    tree_features, tree_classes = int(topo[0]), int(topo[1])
    if n_features is not None and tree_features != n_features:
        raise InputError(f"{source}: tree has {tree_features} features, the forest {n_features}")
    if n_classes is not None and tree_classes != n_classes:
        raise InputError(f"{source}: tree has {tree_classes} classes, the forest {n_classes}")
    if tree_classes < 1 or tree_features < 1:
        raise InputError(f"{source}: invalid tree header ({tree_features} features, {tree_classes} classes)")

    offsets: list[int] = []  # topology offset of node i
    index_of: dict[int, int] = {}
    feature: list[int] = []
    threshold: list[float] = []
    children: list[tuple[int, int]] = []
    leaves: dict[int, np.ndarray] = {}
    stack = [2]
    while stack:
        off = stack.pop()
        if off in index_of:
            raise InputError(f"{source}: node at {off} is reached twice (not a tree)")
        if off < 2 or off + 2 > topo.size:
            raise InputError(f"{source}: node offset {off} outside the topology ({topo.size})")
        node = len(offsets)
        index_of[off] = node
        offsets.append(off)
        kind, addr = int(topo[off]), int(topo[off + 1])
        if kind == LEAF_NODE:
            if addr < 0 or addr + 1 + tree_classes > params.size:
                raise InputError(f"{source}: leaf parameters at {addr} outside the parameters")
            dist = params[addr + 1 : addr + 1 + tree_classes]
            total = dist.sum()
            if not np.all(np.isfinite(dist)) or np.any(dist < 0) or total <= 0:
                raise InputError(f"{source}: invalid leaf distribution {dist.tolist()}")
            leaves[node] = dist / total
            feature.append(0)
            threshold.append(0.0)
            children.append((-1, -1))
        elif kind == THRESHOLD_NODE:
            if off + 5 > topo.size:
                raise InputError(f"{source}: truncated split node at {off}")
            if addr < 0 or addr + 2 > params.size:
                raise InputError(f"{source}: split parameters at {addr} outside the parameters")
            column = int(topo[off + 4])
            if not 0 <= column < tree_features:
                raise InputError(f"{source}: split on feature {column}, the tree has {tree_features}")
            t = float(params[addr + 1])
            if not np.isfinite(t):
                raise InputError(f"{source}: non-finite threshold at node {off}")
            feature.append(column)
            threshold.append(t)
            c0, c1 = int(topo[off + 2]), int(topo[off + 3])
            children.append((c0, c1))
            stack.extend((c1, c0))  # visit child0 first
        else:
            raise InputError(
                f"{source}: vigra node type {kind:#x} is not supported (only threshold splits and "
                "constant-probability leaves, as ilastik's random forests use)"
            )
    n = len(offsets)
    left = np.full(n, -1, dtype=np.int32)
    right = np.full(n, -1, dtype=np.int32)
    for i, (c0, c1) in enumerate(children):
        if c0 >= 0:
            left[i], right[i] = index_of[c0], index_of[c1]
    value = np.zeros((n, tree_classes), dtype=np.float64)
    for i, dist in leaves.items():
        value[i] = dist
    return VigraTree(
        np.asarray(feature, dtype=np.int32), np.asarray(threshold, dtype=np.float64),
        left, right, value,
    )


def _first(group: Any, key: str, default: float | None = None) -> float | None:
    if key not in group:
        return default
    return float(np.atleast_1d(group[key][()])[0])


def read_forests(
    group: Any, n_classes: int | None = None, source: object = "ClassifierForests"
):
    """Decode every ``ForestNNNN`` of an open ``ClassifierForests`` h5py group.

    Parameters
    ----------
    group : h5py.Group
    n_classes : int, optional
        Output channels (the project's number of label names). Label value ``L`` of a forest
        maps to channel ``L - 1``; classes without labels get a zero column, as in ilastik.
    source : object
        Named in error messages.

    Returns
    -------
    FlatForest
        ``split_rule="lt"``, ``classes = 1..n_classes``.
    """
    names = sorted(k for k in group if k.startswith("Forest"))
    if not names:
        raise InputError(f"{source}: no stored forest (the project was never trained)")
    known = np.atleast_1d(group["known_labels"][()]).astype(np.int64) if "known_labels" in group else None
    trees: list[VigraTree] = []
    n_features = None
    max_label = 0
    mapped: list[np.ndarray] = []
    for name in names:
        forest = group[name]
        where = f"{source}/{name}"
        ext = forest.get("_ext_param")
        if ext is None:
            raise InputError(f"{where}: no _ext_param group (not a vigra forest)")
        columns = _first(ext, "column_count_")
        classes = _first(ext, "class_count_")
        if columns is None or classes is None:
            raise InputError(f"{where}: _ext_param lacks column_count_/class_count_")
        columns, classes = int(columns), int(classes)
        if n_features is None:
            n_features = columns
        elif columns != n_features:
            raise InputError(f"{where}: {columns} features, other forests {n_features}")
        labels = np.atleast_1d(ext["labels"][()]).astype(np.int64) if "labels" in ext else None
        if labels is None:
            labels = known if known is not None and len(known) == classes else np.arange(1, classes + 1)
        if len(labels) != classes or np.any(labels < 1):
            raise InputError(f"{where}: labels {labels.tolist()} do not fit {classes} classes")
        max_label = max(max_label, int(labels.max()))
        tree_names = sorted(k for k in forest if k.startswith("Tree_"))
        if not tree_names:
            raise InputError(f"{where}: forest without trees")
        for tname in tree_names:
            tg = forest[tname]
            if "topology" not in tg or "parameters" not in tg:
                raise InputError(f"{where}/{tname}: missing topology/parameters")
            trees.append(decode_tree(tg["topology"][()], tg["parameters"][()], columns, classes,
                                     f"{where}/{tname}"))
            mapped.append(labels - 1)
    n_out = max(n_classes or 0, max_label)
    if "feature_names" in group and len(group["feature_names"]) != n_features:
        raise InputError(
            f"{source}: the forests use {n_features} features but feature_names lists "
            f"{len(group['feature_names'])}"
        )
    sizes = np.array([t.n_nodes for t in trees])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    value = np.zeros((int(sizes.sum()), n_out), dtype=np.float32)
    for t, start, cols in zip(trees, starts, mapped):
        value[start : start + t.n_nodes][:, cols] = t.value

    def shifted(a: np.ndarray, s: int) -> np.ndarray:
        return np.where(a >= 0, a + s, -1)

    try:
        return FlatForest(
            feature=np.concatenate([t.feature for t in trees]).astype(np.int32),
            threshold=np.concatenate([t.threshold for t in trees]),
            left=np.concatenate([shifted(t.left, s) for t, s in zip(trees, starts)]).astype(np.int32),
            right=np.concatenate([shifted(t.right, s) for t, s in zip(trees, starts)]).astype(np.int32),
            value=value,
            roots=starts.astype(np.int32),
            classes=np.arange(1, n_out + 1),
            n_features=int(n_features),
            split_rule="lt",
        )
    except PyquintError as exc:
        raise InputError(f"{source}: invalid stored forest ({exc})") from None


def read_project_forest(project):
    """The stored forest of an :class:`IlastikProject`, checked against its feature selection."""
    if not project.has_forest:
        raise InputError(f"{project.path}: the project holds no trained forest (train it in ilastik or retrain)")
    with open_readonly(project.path) as f:
        group = f["PixelClassification/ClassifierForests"]
        forest = read_forests(group, len(project.label_names) or None,
                              f"{project.path}:/PixelClassification/ClassifierForests")
    selection = project.feature_selection()
    if selection is not None and project.lanes:
        lane = project.lanes[0]
        shape = project.lane_shape(0)
        if shape is not None:
            ndim = len(lane.canonical_axes) - 1 - ("t" in lane.canonical_axes)
            expected = selection.n_channels(shape[-1], ndim)
            if expected != forest.n_features:
                raise InputError(
                    f"{project.path}: the stored forest uses {forest.n_features} features but the "
                    f"feature selection gives {expected} for {shape[-1]}-channel {ndim}-D data; "
                    "the project is inconsistent (retrain with --retrain)"
                )
    return forest
