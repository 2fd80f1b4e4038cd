"""Compiled random-forest inference: a compact node layout and a lane-interleaved walk.

Layout (:func:`compact_layout`): each tree is renumbered depth first with the two children of
a split side by side, and a node is one 16-byte row ``(feature, left child, threshold bits,
leaf class)`` of an int32 array (the threshold is read through a float32 view of the same
memory), so one step of a walk is one cache line and no branch::

    node = child[node] + (x[feature[node]] > threshold32[node])

Leaves point to themselves with threshold +inf, so a walk may run past its leaf. The float32
thresholds take exactly the branch that the float64 rule takes for every float32 ``x``
(:func:`float32_thresholds`).

Walk: a block of ``BLOCK`` pixels is copied into a pixel-major buffer that stays in cache;
eight pixels go through a tree in lockstep, so their dependent loads overlap in the CPU.
:func:`predict_votes` (pure leaves, ≤ 4 classes: every forest grown to purity by
scikit-learn or vigra) walks all trees for eight pixels and counts their votes in registers
(16-bit counters in an int64): the count equals the float64 sum of one-hot leaf distributions
exactly. :func:`predict_sums` (any forest) adds leaf distributions in tree order, as
scikit-learn's single-threaded ``predict_proba`` does. Kernels release the GIL and run on one
thread each; callers split the blocks over threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Pixels per block: their features (BLOCK × F float32, 50 kB for 49 features) stay in cache.
BLOCK = 256
#: Vote counting in one int64 register per pixel: 16-bit counters for up to 4 classes.
MAX_VOTE_CLASSES = 4
MAX_VOTE_TREES = 65_535


def float32_thresholds(threshold: np.ndarray, strict: bool) -> np.ndarray:
    """float32 ``T`` such that ``x > T`` ⇔ "x goes right", for every float32 ``x``.

    ``strict=False`` (``"le"``: left iff ``x <= t``): ``T`` is the largest float32 ``<= t``.
    If ``x <= t`` then ``x <= T`` (``x`` is a float32 ``<= t``); if ``x <= T`` then
    ``x <= t``. ``strict=True`` (``"lt"``: left iff ``x < t``): ``T`` is the largest float32
    ``< t``; then ``x > T`` ⇔ ``x >=`` (the next float32 after ``T``, which is ``>= t``) ⇔
    ``x >= t``. ``t`` is float64; values beyond the float32 range give ±max or ±inf.
    NaN compares false everywhere (it goes left; ilastik zeroes such rows anyway).
    """
    t64 = np.asarray(threshold, dtype=np.float64)
    with np.errstate(over="ignore"):
        t32 = t64.astype(np.float32)  # nearest; may lie above t (or be inf)
    above = (t32 >= t64) if strict else (t32 > t64)
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


@njit(cache=True, nogil=True)
def compact_layout(left, right, feature, thr32, leaf_class, roots):  # pragma: no cover
    """Depth-first renumbering with sibling children.

    Returns ``nodes`` (n, 4) int32 rows ``(feature, child, threshold bits, leaf class)``,
    ``old`` (new index → old index), ``new_roots``, ``depth`` (longest root-leaf path per
    tree) and ``sure`` (shortest root-leaf path per tree).
    """
    n = left.shape[0]
    n_trees = roots.shape[0]
    nodes = np.zeros((n, 4), np.int32)
    thr = nodes.view(np.float32)
    old_of = np.empty(n, np.int64)
    depth = np.zeros(n_trees, np.int32)
    sure = np.zeros(n_trees, np.int32)
    new_roots = np.empty(n_trees, np.int32)
    st_old = np.empty(n + 1, np.int64)
    st_new = np.empty(n + 1, np.int64)
    st_d = np.empty(n + 1, np.int32)
    pos = 0
    for t in range(n_trees):
        new_roots[t] = pos
        top = 0
        st_old[0] = roots[t]
        st_new[0] = pos
        st_d[0] = 0
        pos += 1
        max_d = 0
        min_d = n
        while top >= 0:
            o = st_old[top]
            w = st_new[top]
            d = st_d[top]
            top -= 1
            old_of[w] = o
            if left[o] < 0:
                nodes[w, 0] = 0
                nodes[w, 1] = w
                thr[w, 2] = np.inf
                nodes[w, 3] = leaf_class[o]
                max_d = max(max_d, d)
                min_d = min(min_d, d)
            else:
                nodes[w, 0] = feature[o]
                nodes[w, 1] = pos
                thr[w, 2] = thr32[o]
                # push the right child first: the left subtree is laid out next to its parent
                top += 1
                st_old[top] = right[o]
                st_new[top] = pos + 1
                st_d[top] = d + 1
                top += 1
                st_old[top] = left[o]
                st_new[top] = pos
                st_d[top] = d + 1
                pos += 2
        depth[t] = max_d
        sure[t] = min_d
    return nodes, old_of, new_roots, depth, sure


@njit(cache=True, nogil=True, inline="always")
def _step(nodes, thr, buf, q, nd):  # pragma: no cover - compiled
    return nodes[nd, 1] + (buf[q, nodes[nd, 0]] > thr[nd, 2])


@njit(cache=True, nogil=True, inline="always")
def _walk8(nodes, thr, buf, p, root, sure, steps):  # pragma: no cover - compiled
    # Eight pixels through one tree in lockstep. The first `sure` steps cannot end at a leaf
    # (no leaf is shallower); after them, a step in which no pixel moved means all are at
    # leaves (a split always moves to a child).
    n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = root
    for _ in range(sure):
        n0 = _step(nodes, thr, buf, p, n0)
        n1 = _step(nodes, thr, buf, p + 1, n1)
        n2 = _step(nodes, thr, buf, p + 2, n2)
        n3 = _step(nodes, thr, buf, p + 3, n3)
        n4 = _step(nodes, thr, buf, p + 4, n4)
        n5 = _step(nodes, thr, buf, p + 5, n5)
        n6 = _step(nodes, thr, buf, p + 6, n6)
        n7 = _step(nodes, thr, buf, p + 7, n7)
    for _ in range(steps - sure):
        m0 = _step(nodes, thr, buf, p, n0)
        m1 = _step(nodes, thr, buf, p + 1, n1)
        m2 = _step(nodes, thr, buf, p + 2, n2)
        m3 = _step(nodes, thr, buf, p + 3, n3)
        m4 = _step(nodes, thr, buf, p + 4, n4)
        m5 = _step(nodes, thr, buf, p + 5, n5)
        m6 = _step(nodes, thr, buf, p + 6, n6)
        m7 = _step(nodes, thr, buf, p + 7, n7)
        moved = ((m0 != n0) | (m1 != n1) | (m2 != n2) | (m3 != n3)
                 | (m4 != n4) | (m5 != n5) | (m6 != n6) | (m7 != n7))
        n0, n1, n2, n3, n4, n5, n6, n7 = m0, m1, m2, m3, m4, m5, m6, m7
        if not moved:
            break
    return n0, n1, n2, n3, n4, n5, n6, n7


@njit(cache=True, nogil=True, inline="always")
def _load_block(X, r, c0, n, buf, bad):  # pragma: no cover - compiled
    # X[r, c0:c0+n] (any strides) into the pixel-major buffer; flags rows holding NaN
    for i in range(n):
        has_nan = False
        for f in range(X.shape[2]):
            v = X[r, c0 + i, f]
            buf[i, f] = v
            has_nan |= v != v
        bad[i] = has_nan


@njit(cache=True, nogil=True, inline="always")
def _add(acc, q, value, nd):  # pragma: no cover - compiled
    for c in range(acc.shape[1]):
        acc[q, c] += value[nd, c]


@njit(cache=True, nogil=True, error_model="numpy")
def predict_votes(X, b0, b1, nodes, roots, depth, sure, colmap, out):  # pragma: no cover
    """Probabilities of blocks ``b0..b1`` of ``X`` (rows, cols, F) into ``out`` (rows, cols, K),
    for pure-leaf forests of at most four classes (``nodes[:, 3]`` holds 16 × class).

    Block ``b`` covers row ``b // per_row`` from column ``(b % per_row) * BLOCK``. Class ``c``
    goes to column ``colmap[c]`` of ``out``; other columns are 0. Rows of ``X`` holding NaN
    get all-zero probabilities (ilastik's behaviour). Eight pixels at a time go through all
    trees; their votes stay in registers (16-bit counters packed in an int64).
    """
    thr = nodes.view(np.float32)
    n_cols = X.shape[1]
    n_feat = X.shape[2]
    n_out = out.shape[2]
    n_classes = colmap.shape[0]
    n_trees = roots.shape[0]
    per_row = (n_cols + BLOCK - 1) // BLOCK
    buf = np.zeros((BLOCK, n_feat), np.float32)
    bad = np.zeros(BLOCK, np.bool_)
    votes = np.zeros(BLOCK, np.int64)
    for b in range(b0, b1):
        r = b // per_row
        c0 = (b % per_row) * BLOCK
        n = min(BLOCK, n_cols - c0)
        _load_block(X, r, c0, n, buf, bad)
        for p in range(0, n, 8):
            v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = np.int64(0)
            one = np.int64(1)
            for t in range(n_trees):
                n0, n1, n2, n3, n4, n5, n6, n7 = _walk8(nodes, thr, buf, p, roots[t], sure[t], depth[t])
                v0 += one << nodes[n0, 3]
                v1 += one << nodes[n1, 3]
                v2 += one << nodes[n2, 3]
                v3 += one << nodes[n3, 3]
                v4 += one << nodes[n4, 3]
                v5 += one << nodes[n5, 3]
                v6 += one << nodes[n6, 3]
                v7 += one << nodes[n7, 3]
            votes[p] = v0
            votes[p + 1] = v1
            votes[p + 2] = v2
            votes[p + 3] = v3
            votes[p + 4] = v4
            votes[p + 5] = v5
            votes[p + 6] = v6
            votes[p + 7] = v7
        for i in range(n):
            for k in range(n_out):
                out[r, c0 + i, k] = 0.0
            if bad[i]:
                continue
            for c in range(n_classes):
                # the count is the float64 sum of one-hot leaves; float64 mean, then float32,
                # exactly as scikit-learn's sum / n_trees cast to ilastik's dtype
                s = np.float64((votes[i] >> (16 * c)) & 0xFFFF)
                out[r, c0 + i, colmap[c]] = np.float32(s / n_trees)


@njit(cache=True, nogil=True, error_model="numpy")
def predict_sums(X, b0, b1, nodes, roots, depth, sure, value, colmap,
                 out):  # pragma: no cover - compiled
    """As :func:`predict_votes` for any forest: leaf distributions ``value`` (n_nodes, C)
    float64 are added in tree order, as scikit-learn does, then divided by the tree count."""
    thr = nodes.view(np.float32)
    n_cols = X.shape[1]
    n_feat = X.shape[2]
    n_out = out.shape[2]
    n_classes = colmap.shape[0]
    n_trees = roots.shape[0]
    per_row = (n_cols + BLOCK - 1) // BLOCK
    buf = np.zeros((BLOCK, n_feat), np.float32)
    bad = np.zeros(BLOCK, np.bool_)
    acc = np.zeros((BLOCK, n_classes), np.float64)
    for b in range(b0, b1):
        r = b // per_row
        c0 = (b % per_row) * BLOCK
        n = min(BLOCK, n_cols - c0)
        _load_block(X, r, c0, n, buf, bad)
        acc[:] = 0.0
        # trees outer: each pixel's float64 sum runs in tree order
        for t in range(n_trees):
            for p in range(0, n, 8):
                n0, n1, n2, n3, n4, n5, n6, n7 = _walk8(nodes, thr, buf, p, roots[t], sure[t],
                                                        depth[t])
                _add(acc, p, value, n0)
                _add(acc, p + 1, value, n1)
                _add(acc, p + 2, value, n2)
                _add(acc, p + 3, value, n3)
                _add(acc, p + 4, value, n4)
                _add(acc, p + 5, value, n5)
                _add(acc, p + 6, value, n6)
                _add(acc, p + 7, value, n7)
        for i in range(n):
            for k in range(n_out):
                out[r, c0 + i, k] = 0.0
            if not bad[i]:
                for c in range(n_classes):
                    out[r, c0 + i, colmap[c]] = np.float32(acc[i, c] / n_trees)
