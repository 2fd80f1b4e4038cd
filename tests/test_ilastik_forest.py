"""Decoding stored vigra forests: hand-built trees, pc.ilp's 4x25 trees against a direct walker."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.ilastik import decode_tree, read_forests, read_project

LEAF = 0x40000000


def _walk(topology: np.ndarray, parameters: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Follow one vigra tree directly on its stored arrays (independent of the decoder)."""
    n_classes = int(topology[1])
    off = 2
    while topology[off] == 0:
        addr, column = int(topology[off + 1]), int(topology[off + 4])
        off = int(topology[off + 2] if x[column] < parameters[addr + 1] else topology[off + 3])
    assert topology[off] == LEAF
    addr = int(topology[off + 1])
    dist = parameters[addr + 1 : addr + 1 + n_classes]
    return dist / dist.sum()


# A tree on 2 features and 2 classes: x[1] < 0.5 -> [1, 0], else -> [0.25, 0.75].
TOPOLOGY = np.array([2, 2, 0, 0, 7, 9, 1, LEAF, 2, LEAF, 5], dtype=np.int32)
PARAMETERS = np.array([1.0, 0.5, 10.0, 1.0, 0.0, 20.0, 0.25, 0.75])


def _write_forest(path: Path, trees: list[tuple[np.ndarray, np.ndarray]], labels=(1, 2),
                  columns: int = 2, feature_names: int | None = None) -> None:
    with h5py.File(path, "w") as f:
        g = f.create_group("ClassifierForests")
        forest = g.create_group("Forest0000")
        ext = forest.create_group("_ext_param")
        ext.create_dataset("column_count_", data=np.array([float(columns)]))
        ext.create_dataset("class_count_", data=np.array([float(len(labels))]))
        ext.create_dataset("labels", data=np.array(labels, dtype=np.uint32))
        for k, (topo, params) in enumerate(trees):
            t = forest.create_group(f"Tree_{k:02d}")
            t.create_dataset("topology", data=topo)
            t.create_dataset("parameters", data=params)
        if feature_names is not None:
            g.create_dataset("feature_names", data=np.array([b"f"] * feature_names))


def test_decode_hand_built_tree() -> None:
    tree = decode_tree(TOPOLOGY, PARAMETERS, 2, 2)
    assert tree.n_nodes == 3
    assert tree.left.tolist() == [1, -1, -1] and tree.right.tolist() == [2, -1, -1]
    assert tree.feature[0] == 1 and tree.threshold[0] == 0.5
    assert tree.value.tolist() == [[0, 0], [1, 0], [0.25, 0.75]]


def test_split_rule_is_strictly_less(tmp_path: Path) -> None:
    _write_forest(tmp_path / "f.h5", [(TOPOLOGY, PARAMETERS)])
    with h5py.File(tmp_path / "f.h5", "r") as f:
        forest = read_forests(f["ClassifierForests"], 2)
    assert forest.split_rule == "lt"
    X = np.array([[9, 0.49999997], [9, 0.5], [9, 0.50000006], [-3, -1]], np.float32)
    proba = forest.predict_proba(X)
    # x == threshold goes to child1, as vigra does (x < t -> child0)
    assert proba.tolist() == [[1, 0], [0.25, 0.75], [0.25, 0.75], [1, 0]]


def test_labels_map_to_channels(tmp_path: Path) -> None:
    """A forest trained on labels {1, 3} of a 3-class project gives a zero channel for label 2."""
    _write_forest(tmp_path / "f.h5", [(TOPOLOGY, PARAMETERS)], labels=(1, 3))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        forest = read_forests(f["ClassifierForests"], 3)
    proba = forest.predict_proba(np.array([[0, 0], [0, 1]], np.float32))
    assert proba.tolist() == [[1, 0, 0], [0.25, 0, 0.75]]


@pytest.mark.parametrize(
    ("topology", "parameters", "match"),
    [
        (np.array([2, 2, 7, 0, 7, 9, 1, LEAF, 2, LEAF, 5]), PARAMETERS, "node type"),
        (np.array([2, 2, 0, 0, 70, 9, 1, LEAF, 2, LEAF, 5]), PARAMETERS, "outside the topology"),
        (np.array([2, 2, 0, 0, 7, 9, 5, LEAF, 2, LEAF, 5]), PARAMETERS, "split on feature 5"),
        (np.array([2, 2, 0, 0, 7, 7, 1, LEAF, 2, LEAF, 5]), PARAMETERS, "reached twice"),
        (TOPOLOGY, PARAMETERS[:6], "leaf parameters"),
        (np.array([2, 2]), PARAMETERS, "truncated"),
        (np.array([3, 2, 0, 0, 7, 9, 1, LEAF, 2, LEAF, 5]), PARAMETERS, "3 features"),
    ],
)
def test_corrupt_trees(topology, parameters, match) -> None:
    with pytest.raises(InputError, match=match):
        decode_tree(np.asarray(topology, np.int32), parameters, 2, 2)


def test_feature_names_count_mismatch(tmp_path: Path) -> None:
    _write_forest(tmp_path / "f.h5", [(TOPOLOGY, PARAMETERS)], feature_names=5)
    with h5py.File(tmp_path / "f.h5", "r") as f, pytest.raises(InputError, match="feature_names"):
        read_forests(f["ClassifierForests"], 2)


def test_pc_ilp_forest_matches_direct_walk(pc_ilp: Path) -> None:
    project = read_project(pc_ilp)
    forest = project.forest()
    assert forest.n_trees == 100 and forest.n_features == 49 and forest.split_rule == "lt"
    trees = []
    expected_nodes = 0
    with h5py.File(pc_ilp, "r") as f:
        g = f["PixelClassification/ClassifierForests"]
        for name in sorted(k for k in g if k.startswith("Forest")):
            for tname in sorted(k for k in g[name] if k.startswith("Tree_")):
                topo, params = g[name][tname]["topology"][()], g[name][tname]["parameters"][()]
                trees.append((topo, params))
    for topo, params in trees:
        tree = decode_tree(topo, params)
        n_leaf = int(np.sum(tree.left < 0))
        # every node is decoded: splits take 5 topology slots, leaves 2
        assert 5 * (tree.n_nodes - n_leaf) + 2 * n_leaf == len(topo) - 2
        expected_nodes += tree.n_nodes
    assert forest.n_nodes == expected_nodes
    # rows built from the forest's own thresholds, so that many comparisons are near-ties
    rng = np.random.default_rng(1)
    thresholds = [forest.threshold[(forest.feature == j) & (forest.left >= 0)] for j in range(49)]
    X = rng.normal(0, 50, (400, 49)).astype(np.float32)
    for j, t in enumerate(thresholds):
        if t.size:
            pick = rng.choice(t, 400) * (1 + rng.choice([-1e-7, 0, 1e-7], 400))
            use = rng.random(400) < 0.7
            X[use, j] = pick[use].astype(np.float32)
    expected = np.mean([[_walk(t, p, x) for t, p in trees] for x in X], axis=1)
    got = forest.predict_proba(X, n_classes=2)
    assert np.allclose(got, expected, atol=1e-6)
    assert np.allclose(got * 100, np.round(got * 100), atol=1e-4)  # pure leaves: k/100
    # the segmentation path (early stopping, "lt" rule) gives argmax of the same probabilities
    assert np.array_equal(forest.predict(X, n_classes=2), np.argmax(got, axis=1) + 1)


def test_forest_feature_count_differs_from_selection(forested_ilp: Path, tmp_path: Path) -> None:
    path = tmp_path / "pc.ilp"
    shutil.copyfile(forested_ilp, path)
    with h5py.File(path, "a") as f:
        m = f["FeatureSelections/SelectionMatrix"][()]
        m[0, :] = False  # drop Gaussian Smoothing: 42 channels, the forest wants 49
        f["FeatureSelections/SelectionMatrix"][...] = m
    project = read_project(path)
    assert project.feature_selection().n_channels(1, 2) == 42
    with pytest.raises(InputError, match="49 features but the feature selection gives 42"):
        project.forest()
