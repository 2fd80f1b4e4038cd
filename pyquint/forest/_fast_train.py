"""A compiled, vigra-like random forest trainer (numba, one tree per thread).

Each tree is grown from a bootstrap sample of size n (kept as distinct rows with integer
weights, which is the same sample), trying ``mtry`` features drawn without replacement at
every node and taking the exact best Gini split, with the threshold halfway between the two
consecutive distinct values it separates; trees are grown until their leaves are pure.

Speed comes from ranking every feature once (dense ``uint32`` ranks), so that at each node
only the node's rows are sorted, by an LSD radix sort on keys that pack rank, class and
weight into one ``uint64``. Every tree gets its own :class:`numpy.random.SeedSequence` child,
so a forest depends on the seed only, never on the number of threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ..parallel import resolve_n_jobs
from ._flat import FlatForest

_U64 = numba.uint64


@numba.njit(nogil=True, cache=True)
def _next(state):
    # xorshift64*: small, fast, and good enough to draw feature subsets.
    x = state[0]
    x ^= x >> _U64(12)
    x ^= x << _U64(25)
    x ^= x >> _U64(27)
    state[0] = x
    return (x * _U64(2685821657736338717)) >> _U64(11)


@numba.njit(nogil=True, cache=True)
def _bit_length(v):
    b = 0
    while v > 0:
        b += 1
        v >>= 1
    return b


@numba.njit(nogil=True, cache=True)
def _sort_keys(a, tmp, n, lowbit, nbits):
    """Sort ``a[:n]`` in place by bits ``lowbit .. lowbit + nbits`` (other bits unordered)."""
    if n < 48:
        for i in range(1, n):
            v = a[i]
            kv = v >> _U64(lowbit)
            j = i - 1
            while j >= 0 and (a[j] >> _U64(lowbit)) > kv:
                a[j + 1] = a[j]
                j -= 1
            a[j + 1] = v
        return
    # LSD radix sort with as few passes as the bucket size allows, digits split evenly.
    dmax = 11 if n > 4096 else 8
    passes = (nbits + dmax - 1) // dmax
    if passes == 0:
        return
    dbits = (nbits + passes - 1) // passes
    nb = 1 << dbits
    mask = _U64(nb - 1)
    cnt = np.empty(nb, np.int64)
    src = a
    dst = tmp
    in_tmp = False
    for p in range(passes):
        sh = _U64(lowbit + p * dbits)
        cnt[:] = 0
        for i in range(n):
            cnt[(src[i] >> sh) & mask] += 1
        full = False
        for d in range(nb):
            if cnt[d] == n:
                full = True
                break
        if full:  # every key has the same digit: this pass would change nothing
            continue
        total = 0
        for d in range(nb):
            c = cnt[d]
            cnt[d] = total
            total += c
        for i in range(n):
            v = src[i]
            d = (v >> sh) & mask
            dst[cnt[d]] = v
            cnt[d] += 1
        src, dst = dst, src
        in_tmp = not in_tmp
    if in_tmp:
        a[:n] = tmp[:n]


@numba.njit(nogil=True, cache=True)
def _rank_feature(col, ranks, uniq):
    """Dense ranks of ``col`` into ``ranks``; sorted distinct values into ``uniq``; count."""
    n = col.shape[0]
    bits = col.view(np.uint32)
    keys = np.empty(n, np.uint64)
    for i in range(n):
        # Map float32 bits to unsigned integers that sort like the floats.
        b = bits[i]
        b = ~b if b & np.uint32(0x80000000) else b | np.uint32(0x80000000)
        keys[i] = (_U64(b) << _U64(32)) | _U64(i)
    _sort_keys(keys, np.empty(n, np.uint64), n, 32, 32)
    r = -1
    prev = np.float32(0.0)
    for k in range(n):
        i = np.int64(keys[k] & _U64(0xFFFFFFFF))
        v = col[i]
        if r < 0 or v != prev:  # -0.0 and 0.0 are adjacent here and get one rank
            r += 1
            uniq[r] = v
            prev = v
        ranks[i] = r
    return r + 1


@numba.njit(nogil=True, cache=True)
def _best_split(keys, m, wbits, cmask, wmask, low, counts, total, lc, best):
    """Best Gini boundary of the sorted ``keys[:m]`` if it beats ``best``: (score, rank) with
    rank -1 when none does. score = Σ left² / n_left + Σ right² / n_right (larger is purer),
    compared without dividing at every boundary."""
    best_rank = np.int64(-1)
    nl = 0
    if counts.shape[0] == 2:  # two classes: scalar counters
        c0 = counts[0]
        c1 = counts[1]
        a0 = 0
        for k in range(m - 1):
            key = keys[k]
            w = np.int64(key & wmask)
            nl += w
            a0 += w * (1 - np.int64((key >> _U64(wbits)) & cmask))
            rk = key >> low
            if rk != (keys[k + 1] >> low):
                nr = total - nl
                a1 = nl - a0
                b0 = c0 - a0
                b1 = c1 - a1
                num = np.float64(a0 * a0 + a1 * a1) * nr + np.float64(b0 * b0 + b1 * b1) * nl
                den = np.float64(nl) * np.float64(nr)
                if num > best * den:
                    best = num / den
                    best_rank = np.int64(rk)
        return best, best_rank
    lc[:] = 0
    for k in range(m - 1):
        key = keys[k]
        w = np.int64(key & wmask)
        lc[np.int64((key >> _U64(wbits)) & cmask)] += w
        nl += w
        rk = key >> low
        if rk != (keys[k + 1] >> low):
            nr = total - nl
            sl = 0.0
            sr = 0.0
            for c in range(counts.shape[0]):
                a = lc[c]
                b = counts[c] - a
                sl += a * a
                sr += b * b
            num = sl * nr + sr * nl
            den = np.float64(nl) * np.float64(nr)
            if num > best * den:
                best = num / den
                best_rank = np.int64(rk)
    return best, best_rank


@numba.njit(nogil=True, cache=True)
def _grow_tree(ranks, uniq, y, n_classes, boot, mtry, seed):
    """Grow one tree; returns (feature, threshold, left, right, value) for its nodes."""
    n_features, n = ranks.shape
    # Bootstrap sample as distinct rows with multiplicities.
    mult = np.zeros(n, np.int64)
    for k in range(boot.shape[0]):
        mult[boot[k]] += 1
    m0 = 0
    wmax = 0
    for i in range(n):
        if mult[i] > 0:
            m0 += 1
            if mult[i] > wmax:
                wmax = mult[i]
    wbits = _bit_length(wmax)
    cbits = _bit_length(n_classes - 1)
    wmask = _U64((1 << wbits) - 1)
    cmask = _U64((1 << cbits) - 1)
    low = _U64(wbits + cbits)
    lowmask = _U64((1 << (wbits + cbits)) - 1)
    # The node's rows: (row << 32) | class | weight, so one load gives a row and the low bits
    # of its sort key (class, then weight).
    idx = np.empty(m0, np.uint64)
    j = 0
    for i in range(n):
        if mult[i] > 0:
            idx[j] = (_U64(i) << _U64(32)) | (_U64(y[i]) << _U64(wbits)) | _U64(mult[i])
            j += 1

    max_nodes = 2 * m0 - 1
    feature = np.full(max_nodes, -1, np.int32)
    threshold = np.zeros(max_nodes, np.float64)
    left = np.full(max_nodes, -1, np.int32)
    right = np.full(max_nodes, -1, np.int32)
    value = np.zeros((max_nodes, n_classes), np.float64)

    keys = np.empty(m0, np.uint64)
    tmp = np.empty(m0, np.uint64)
    feats = np.arange(n_features)
    counts = np.zeros(n_classes, np.int64)
    lc = np.zeros(n_classes, np.int64)
    state = np.empty(1, np.uint64)
    state[0] = _U64(seed) | _U64(1)

    st_node = np.empty(m0 + 1, np.int64)
    st_lo = np.empty(m0 + 1, np.int64)
    st_hi = np.empty(m0 + 1, np.int64)
    sp = 0
    st_node[0] = 0
    st_lo[0] = 0
    st_hi[0] = m0
    sp = 1
    n_nodes = 1
    while sp > 0:
        sp -= 1
        node = st_node[sp]
        lo = st_lo[sp]
        hi = st_hi[sp]
        m = hi - lo
        counts[:] = 0
        for k in range(lo, hi):
            e = idx[k]
            counts[np.int64((e >> _U64(wbits)) & cmask)] += np.int64(e & wmask)
        total = 0
        n_present = 0
        for c in range(n_classes):
            total += counts[c]
            if counts[c] > 0:
                n_present += 1
        if n_present > 1:
            best_score = -1.0
            best_f = -1
            best_r = 0
            n_tried = 0
            for jf in range(n_features):
                if n_tried == mtry:
                    break
                # Fisher-Yates step: draw the next feature without replacement.
                kf = jf + np.int64(_next(state) % _U64(n_features - jf))
                f = feats[kf]
                feats[kf] = feats[jf]
                feats[jf] = f
                # one pass gathers this feature's ranks into the keys and finds their range
                rmin = ranks[f, idx[lo] >> _U64(32)]
                rmax = rmin
                for k in range(m):
                    e = idx[lo + k]
                    r = ranks[f, e >> _U64(32)]
                    rmin = min(rmin, r)
                    rmax = max(rmax, r)
                    keys[k] = (_U64(r) << low) | (e & lowmask)
                if rmin == rmax:
                    continue  # constant here: like scikit-learn, draw another feature
                n_tried += 1
                shift = _U64(rmin) << low
                for k in range(m):
                    keys[k] -= shift
                _sort_keys(keys, tmp, m, wbits + cbits, _bit_length(rmax - rmin))
                score, rk = _best_split(keys, m, wbits, cmask, wmask, low, counts, total, lc,
                                        best_score)
                if rk >= 0:
                    best_score = score
                    best_f = f
                    best_r = rk + np.int64(rmin)
            if best_f >= 0:
                # Partition the node's rows: rank <= best_r goes left.
                a = lo
                b = hi - 1
                while a <= b:
                    if ranks[best_f, idx[a] >> _U64(32)] <= best_r:
                        a += 1
                    else:
                        t = idx[a]
                        idx[a] = idx[b]
                        idx[b] = t
                        b -= 1
                feature[node] = best_f
                threshold[node] = 0.5 * (np.float64(uniq[best_f, best_r])
                                         + np.float64(uniq[best_f, best_r + 1]))
                left[node] = n_nodes
                right[node] = n_nodes + 1
                st_node[sp] = n_nodes + 1
                st_lo[sp] = a
                st_hi[sp] = hi
                sp += 1
                st_node[sp] = n_nodes
                st_lo[sp] = lo
                st_hi[sp] = a
                sp += 1
                n_nodes += 2
                continue
        for c in range(n_classes):  # leaf: pure, or rows that no feature separates
            value[node, c] = counts[c] / total
    return (feature[:n_nodes].copy(), threshold[:n_nodes].copy(), left[:n_nodes].copy(),
            right[:n_nodes].copy(), value[:n_nodes].copy())


def fast_train_forest(X: np.ndarray, y: np.ndarray, n_trees: int, seed: int, mtry: int,
                      n_jobs: int | None = None) -> FlatForest:
    """Grow a vigra-like forest with compiled kernels; inputs are already validated.

    Parameters
    ----------
    X : array of float32, shape (n_samples, n_features)
    y : array of int, shape (n_samples,)
    n_trees : int
    seed : int
        Root of the per-tree :class:`numpy.random.SeedSequence` children.
    mtry : int
        Features tried per split.
    n_jobs : int, optional
        Threads (default all cores); does not change the result.

    Returns
    -------
    FlatForest
        With ``split_rule="le"`` (thresholds lie strictly between training values, so
        ``"lt"`` would give the same training partition).
    """
    classes, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.astype(np.int32).ravel()
    n, n_features = X.shape
    XT = np.ascontiguousarray(X.T, dtype=np.float32)
    ranks = np.empty((n_features, n), np.uint32)
    uniq = np.zeros((n_features, n), np.float32)
    threads = max(1, min(resolve_n_jobs(n_jobs), n_trees))
    children = np.random.SeedSequence(seed).spawn(n_trees)

    def one_tree(t: int):
        rng = np.random.default_rng(children[t])
        boot = rng.integers(0, n, n)
        tree_seed = int(rng.integers(1, 2**63))
        return _grow_tree(ranks, uniq, y_idx, len(classes), boot, mtry, tree_seed)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda f: _rank_feature(XT[f], ranks[f], uniq[f]), range(n_features)))
        trees = list(pool.map(one_tree, range(n_trees)))
    offsets = np.cumsum([0] + [t[0].shape[0] for t in trees])
    left = np.concatenate([np.where(t[2] < 0, -1, t[2] + o) for t, o in zip(trees, offsets)])
    right = np.concatenate([np.where(t[3] < 0, -1, t[3] + o) for t, o in zip(trees, offsets)])
    return FlatForest(
        np.concatenate([t[0] for t in trees]), np.concatenate([t[1] for t in trees]),
        left, right, np.concatenate([t[4] for t in trees]), offsets[:-1], classes,
        n_features, "le",
    )
