"""Compiled random-forest inference: tree-major blocks, integer keys, eight lanes per walk.

Layout (:func:`compact_layout`, :func:`pack_layout`): each tree is renumbered depth first with
the two children of a split side by side, so "go right" is "left child + 1". A node is one
64-bit word ``(left child << 32) | (feature · block)`` plus a 32-bit threshold *key*; a step
of a walk is two loads, one integer compare and an add-with-carry, without a branch::

    word = packed[node]
    node = (word >> 32) + (key[node] < x_key[(word & 0xFFFFFFFF) + lane])

Keys (:func:`float_keys`) map float32 to uint32 preserving order (sign bit flipped for
positives, all bits for negatives; -0 first made +0), so ``x > T`` as floats is exactly
``key(x) > key(T)`` as unsigned integers. The float32 thresholds ``T`` take exactly the
branch that the float64 rule takes for every float32 ``x`` (:func:`float32_thresholds`), so
the walk reproduces scikit-learn's and vigra's trees bit for bit. Leaves point to themselves
with the largest key, so a walk may run past its leaf.

Walk (tree-major): a block of pixels is converted to keys in a feature-major buffer small
enough for the L1 cache (:func:`block_size`); each tree (a few kB) then walks the whole
block, eight pixels in lockstep so that their dependent loads overlap, before the next tree
is read. The first ``sure`` steps of a tree cannot reach a leaf; after them the walk stops
when all eight lanes read a leaf's key. :func:`predict_blocks` counts votes in 16-bit
counters packed in a uint64 per pixel for pure leaves and ≤ 4 classes (forests grown to
purity by scikit-learn, vigra or pyquint), which equals the float64 sum of one-hot leaf
distributions exactly, and otherwise adds leaf distributions in tree order, as
scikit-learn's single-threaded ``predict_proba`` does. :func:`predict_winner` returns only
the winning class and stops a pixel's walk as soon as the trees left cannot change it (from
half the trees on, checked every ``CHECK_EVERY`` trees; decided pixels leave the block).
Kernels release the GIL and run on one thread each; callers split the blocks over threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Bytes of the per-block key buffer (block × features × 4): it stays in the L1 data cache.
BLOCK_BYTES = 16 * 1024
#: Vote counting in one uint64 per pixel: 16-bit counters for up to 4 classes.
MAX_VOTE_CLASSES = 4
MAX_VOTE_TREES = 65_535
#: Early stopping (:func:`predict_winner`): trees walked between two checks.
CHECK_EVERY = 4
_LEAF_KEY = np.uint32(0xFFFFFFFF)
_U = np.uint64


def block_size(n_features: int) -> int:
    """Pixels per block: a multiple of 8 (the lanes) whose keys fit :data:`BLOCK_BYTES`."""
    return int(max(8, min(256, BLOCK_BYTES // (4 * max(1, n_features)) // 8 * 8)))


def float_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys of float32 ``values`` with ``a > b`` ⇔ ``key(a) > key(b)`` (no NaN)."""
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32)  # -0 → +0
    return np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


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




def pack_layout(nodes: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The walk's arrays from :func:`compact_layout`'s ``nodes`` rows.

    Returns ``packed`` (uint64 ``(left child << 32) | feature · block``), ``keys`` (uint32
    threshold keys, the largest key at leaves) and ``code`` (uint32: 16 × the leaf's class,
    the shift of its vote counter).
    """
    index = np.arange(nodes.shape[0], dtype=np.uint64)
    child = nodes[:, 1].astype(np.uint64)
    packed = (child << np.uint64(32)) | (nodes[:, 0].astype(np.uint64) * np.uint64(block))
    keys = float_keys(nodes[:, 2].view(np.float32))
    keys[child == index] = _LEAF_KEY
    return packed, keys, nodes[:, 3].astype(np.uint32)


@njit(cache=True, nogil=True, inline="always")
def _load_block(X, r, c0, n, block, buf, bad, row):  # pragma: no cover - compiled
    # keys of X[r, c0:c0+n] (float32 bit patterns as uint32, any strides) into the
    # feature-major buffer; flags pixels holding NaN. One pixel's features are converted in a
    # loop that LLVM vectorises (no branch: signs of derivative features are random), then
    # scattered into the buffer's columns.
    n_feat = X.shape[2]
    for i in range(n):
        nan = np.uint32(0)
        for f in range(n_feat):
            k = X[r, c0 + i, f]
            # negatives: all bits flipped, positives: the sign bit set. -0 gets 0x7FFFFFFF,
            # one below +0's key: no threshold key lies between them (thresholds' -0 is
            # made +0), so both go the same way. (uint32 throughout: numba widens mixed
            # shifts to 64 bits, which halves the vector width.)
            flip = np.uint32(np.uint32(k >> _U(31)) * np.uint32(0x7FFFFFFF)) | np.uint32(0x80000000)
            k = np.uint32(k ^ flip)
            # NaN keys lie outside [key(-inf), key(+inf)] = [0x007FFFFF, 0xFF800000]
            nan |= np.uint32(np.uint32(k - np.uint32(0x007FFFFF)) > np.uint32(0xFF000001))
            row[f] = k
        bad[i] = nan != 0
        for f in range(n_feat):
            buf[f * block + i] = row[f]


# One lane per line in the walks (E702 allowed for this file in pyproject.toml): the eight
# lanes are the same statement, and reading them side by side is how they are checked.
# The vote and sum walks are separate functions around one inlined group walk, not one
# function with a flag: with the flag's branch and arguments, LLVM spilled lanes (8 % slower).
@njit(cache=True, nogil=True, inline="always")
def _walk_group(buf, q, root, n_sure, packed, keys):  # pragma: no cover - compiled
    """The leaves reached by buffer columns ``q..q+8`` from ``root``."""
    low = _U(0xFFFFFFFF)
    s32 = _U(32)
    n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = root
    for _ in range(n_sure):  # no leaf is this shallow: no test needed
        w = packed[n0]; n0 = (w >> s32) + _U(keys[n0] < buf[(w & low) + q])
        w = packed[n1]; n1 = (w >> s32) + _U(keys[n1] < buf[(w & low) + q + _U(1)])
        w = packed[n2]; n2 = (w >> s32) + _U(keys[n2] < buf[(w & low) + q + _U(2)])
        w = packed[n3]; n3 = (w >> s32) + _U(keys[n3] < buf[(w & low) + q + _U(3)])
        w = packed[n4]; n4 = (w >> s32) + _U(keys[n4] < buf[(w & low) + q + _U(4)])
        w = packed[n5]; n5 = (w >> s32) + _U(keys[n5] < buf[(w & low) + q + _U(5)])
        w = packed[n6]; n6 = (w >> s32) + _U(keys[n6] < buf[(w & low) + q + _U(6)])
        w = packed[n7]; n7 = (w >> s32) + _U(keys[n7] < buf[(w & low) + q + _U(7)])
    # until all eight lanes stand on leaves; it ends: children are numbered
    # after their parents (compact_layout), so a walk reaches a leaf in at
    # most depth[t] steps (a while loop: the freed counter register avoids spills)
    while True:
        w = packed[n0]; k = keys[n0]; at_leaf = k
        n0 = (w >> s32) + _U(k < buf[(w & low) + q])
        w = packed[n1]; k = keys[n1]; at_leaf &= k
        n1 = (w >> s32) + _U(k < buf[(w & low) + q + _U(1)])
        w = packed[n2]; k = keys[n2]; at_leaf &= k
        n2 = (w >> s32) + _U(k < buf[(w & low) + q + _U(2)])
        w = packed[n3]; k = keys[n3]; at_leaf &= k
        n3 = (w >> s32) + _U(k < buf[(w & low) + q + _U(3)])
        w = packed[n4]; k = keys[n4]; at_leaf &= k
        n4 = (w >> s32) + _U(k < buf[(w & low) + q + _U(4)])
        w = packed[n5]; k = keys[n5]; at_leaf &= k
        n5 = (w >> s32) + _U(k < buf[(w & low) + q + _U(5)])
        w = packed[n6]; k = keys[n6]; at_leaf &= k
        n6 = (w >> s32) + _U(k < buf[(w & low) + q + _U(6)])
        w = packed[n7]; k = keys[n7]; at_leaf &= k
        n7 = (w >> s32) + _U(k < buf[(w & low) + q + _U(7)])
        if at_leaf == np.uint32(0xFFFFFFFF):
            break
    return n0, n1, n2, n3, n4, n5, n6, n7


@njit(cache=True, nogil=True)
def _walk_votes(buf, m, t0, t1, packed, keys, code, roots, sure, votes):  # pragma: no cover
    """Trees ``t0..t1`` over buffer columns ``0..m`` (rounded up to 8): a vote per tree into
    ``votes`` (the 16-bit counter at bit ``code[leaf]``)."""
    one = _U(1)
    for t in range(t0, t1):
        root = roots[t]
        n_sure = sure[t]
        for p in range(0, m, 8):
            q = _U(p)  # unsigned indices: no negative-index fix-ups in the loop
            n0, n1, n2, n3, n4, n5, n6, n7 = _walk_group(buf, q, root, n_sure, packed, keys)
            votes[q] += one << _U(code[n0])
            votes[q + _U(1)] += one << _U(code[n1])
            votes[q + _U(2)] += one << _U(code[n2])
            votes[q + _U(3)] += one << _U(code[n3])
            votes[q + _U(4)] += one << _U(code[n4])
            votes[q + _U(5)] += one << _U(code[n5])
            votes[q + _U(6)] += one << _U(code[n6])
            votes[q + _U(7)] += one << _U(code[n7])


@njit(cache=True, nogil=True)
def _walk_sums(buf, m, t0, t1, packed, keys, roots, sure, value, sums):  # pragma: no cover
    """As :func:`_walk_votes`, adding each leaf's distribution ``value[leaf]`` to ``sums``
    (tree order: each pixel's float64 sum is scikit-learn's)."""
    for t in range(t0, t1):
        for p in range(0, m, 8):
            q = _U(p)
            n0, n1, n2, n3, n4, n5, n6, n7 = _walk_group(buf, q, roots[t], sure[t], packed, keys)
            for c in range(value.shape[1]):
                sums[q, c] += value[n0, c]
                sums[q + _U(1), c] += value[n1, c]
                sums[q + _U(2), c] += value[n2, c]
                sums[q + _U(3), c] += value[n3, c]
                sums[q + _U(4), c] += value[n4, c]
                sums[q + _U(5), c] += value[n5, c]
                sums[q + _U(6), c] += value[n6, c]
                sums[q + _U(7), c] += value[n7, c]


@njit(cache=True, nogil=True, inline="always")
def _load(X, b, block, buf, bad, row):  # pragma: no cover - compiled
    # block b: row b // per_row from column (b % per_row) * block, its keys into buf
    per_row = (X.shape[1] + block - 1) // block
    r = b // per_row
    c0 = (b % per_row) * block
    n = min(block, X.shape[1] - c0)
    _load_block(X, r, c0, n, block, buf, bad, row)
    return r, c0, n


@njit(cache=True, nogil=True)
def predict_blocks(X, b0, b1, block, packed, keys, code, roots, sure, value, colmap,
                   out):  # pragma: no cover - compiled
    """Probabilities of blocks ``b0..b1`` of ``X`` (rows, cols, F: float32 features viewed as
    uint32) into ``out`` (rows, cols, K).

    Block ``b`` covers row ``b // per_row`` from column ``(b % per_row) * block``. Class
    ``c`` goes to column ``colmap[c]`` of ``out``; other columns are 0. Rows of ``X`` holding
    NaN get all-zero probabilities (ilastik's behaviour). When ``value`` has no rows, the
    forest's leaves are pure (at most four classes, ``code`` holds 16 × class) and votes are
    counted (:func:`_walk_votes`); otherwise the leaf distributions ``value`` (n_nodes, C)
    float64 are added in tree order (:func:`_walk_sums`). Either way the float64 sum divided
    by the tree count, cast to float32, is scikit-learn's ``predict_proba``.
    """
    n_out = out.shape[2]
    n_classes = colmap.shape[0]
    n_trees = roots.shape[0]
    summing = value.shape[0] > 0
    buf = np.zeros(X.shape[2] * block, np.uint32)
    bad = np.zeros(block, np.bool_)
    row = np.zeros(X.shape[2], np.uint32)
    votes = np.zeros(block, np.uint64)
    sums = np.zeros((block, n_classes if summing else 0), np.float64)
    for b in range(b0, b1):
        r, c0, n = _load(X, b, block, buf, bad, row)
        if summing:  # a branch per block: the walks themselves stay free of it
            sums[:] = 0.0
            _walk_sums(buf, n, 0, n_trees, packed, keys, roots, sure, value, sums)
        else:
            votes[:] = 0
            _walk_votes(buf, n, 0, n_trees, packed, keys, code, roots, sure, votes)
        for i in range(n):
            for k in range(n_out):
                out[r, c0 + i, k] = 0.0
            if bad[i]:
                continue
            for c in range(n_classes):
                # a vote count is the float64 sum of one-hot leaves
                s = sums[i, c] if summing else np.float64((votes[i] >> _U(16 * c)) & _U(0xFFFF))
                out[r, c0 + i, colmap[c]] = np.float32(s / n_trees)


@njit(cache=True, nogil=True, inline="always")
def _keep(buf, block, n_feat, votes, pos, i, dest):  # pragma: no cover - compiled
    # column i moves to column dest <= i (the undecided pixels close up, in order)
    if i != dest:
        for f in range(n_feat):
            buf[f * block + dest] = buf[f * block + i]
        votes[dest] = votes[i]
        pos[dest] = pos[i]


@njit(cache=True, nogil=True)
def predict_winner(X, b0, b1, block, packed, keys, code, roots, sure, colmap,
                   out):  # pragma: no cover - compiled
    """The winning column of each pixel (``argmax`` of :func:`predict_blocks`' output, ties to
    the lower column; 0 for rows holding NaN) into ``out`` (rows, cols) int32.

    Exact early stopping: after tree ``t`` a pixel whose leader ``w`` beats every other class
    ``c`` even if ``c`` took all ``n_trees − t`` remaining votes (``v_w > v_c + rest``, or
    equal with ``w`` in the lower column) is decided and leaves the block; the others go on.
    """
    n_feat = X.shape[2]
    n_classes = colmap.shape[0]
    n_trees = roots.shape[0]
    buf = np.zeros(n_feat * block, np.uint32)
    bad = np.zeros(block, np.bool_)
    row = np.zeros(n_feat, np.uint32)
    votes = np.zeros(block, np.uint64)
    pos = np.zeros(block, np.int64)
    for b in range(b0, b1):
        r, c0, n = _load(X, b, block, buf, bad, row)
        for i in range(n):
            votes[i] = 0
            pos[i] = i
        m = n
        t = 0
        until = n_trees // 2  # before half the trees, no lead can be safe
        while m > 0:
            _walk_votes(buf, m, t, until, packed, keys, code, roots, sure, votes)
            t = until
            rest = n_trees - t
            kept = 0
            for i in range(m):
                v = votes[i]
                lead = 0
                most = v & _U(0xFFFF)
                for c in range(1, n_classes):
                    vc = (v >> _U(16 * c)) & _U(0xFFFF)
                    if vc > most or (vc == most and colmap[c] < colmap[lead]):
                        lead = c
                        most = vc
                safe = True
                for c in range(n_classes):
                    if c != lead:
                        vc = ((v >> _U(16 * c)) & _U(0xFFFF)) + _U(rest)
                        if most < vc or (most == vc and colmap[c] < colmap[lead]):
                            safe = False
                            break
                if bad[pos[i]] or safe:
                    out[r, c0 + pos[i]] = 0 if bad[pos[i]] else colmap[lead]
                else:  # stays, in order: neighbours in the block walk alike, lanes keep in step
                    _keep(buf, block, n_feat, votes, pos, i, kept)
                    kept += 1
            m = kept
            until = min(n_trees, t + CHECK_EVERY)
