"""train_forest: an ilastik-like random forest grown by scikit-learn."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ._fast_train import fast_train_forest
from ._flat import FlatForest

#: The trainer users get by default (PixelClassifier, ``pixel train``, ``quint run``,
#: ``steinbock run``): the compiled one, ~10x faster than scikit-learn's with the same rules and
#: the same held-out accuracy, so that retraining while labelling takes seconds.
DEFAULT_TRAINER = "fast"


def resolve_seed(seed: int | None) -> int:
    """The seed a forest is grown with: ``seed`` checked, or a fresh one drawn when None."""
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
    backend: str = "sklearn",
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
    backend : {"sklearn", "fast"}
        ``"sklearn"``: scikit-learn's ``RandomForestClassifier``. ``"fast"``: pyquint's
        compiled vigra-like trainer (same recipe, exact Gini splits at midpoints between
        distinct values, several times faster); both give forests of the same quality but
        not the same trees for a seed.

    Returns
    -------
    FlatForest
    """
    if backend not in ("sklearn", "fast"):
        raise InputError(f"backend must be 'sklearn' or 'fast', not {backend!r}")
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
    mtry = max(1, min(n_features, int(math.sqrt(n_features) + 0.5)))
    if backend == "fast":
        return fast_train_forest(X, y, int(n_trees), resolve_seed(seed), mtry, n_jobs)
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(
        n_estimators=int(n_trees),
        criterion="gini",
        max_features=mtry,
        bootstrap=True,
        min_samples_leaf=1,
        min_samples_split=2,
        max_depth=None,
        random_state=resolve_seed(seed),
        n_jobs=-1 if n_jobs is None else n_jobs,
    )
    rf.fit(X, y)
    return FlatForest.from_sklearn(rf)


