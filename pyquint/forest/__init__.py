"""Random forests as flat node arrays: ilastik-like training, exact fast inference, safe files.

A :class:`FlatForest` holds every tree of a forest in a few concatenated arrays (one entry
per node). It can be built from a trained scikit-learn forest (:meth:`FlatForest.from_sklearn`)
or from another source such as a vigra forest stored in an ilastik project (``split_rule="lt"``).
Its :meth:`~FlatForest.predict_proba` is compiled with numba (compact node layout, several
pixels walked in lockstep, ``_kernels``) and gives exactly the numbers scikit-learn gives
(same branches, same float64 sums over trees), then cast to float32 as ilastik exports them.

Model files (:func:`save_model`, :func:`load_model`) are plain HDF5 with a versioned layout
described in ``docs/model-format.md``. Loading validates every array and never unpickles or
evaluates anything, so a corrupt or hostile file raises :class:`~pyquint.errors.ModelFileError`.
"""

from ._flat import MAX_CLASSES, MAX_NODES, NODE_ARRAYS, SPLIT_RULES, FlatForest
from ._model_file import FORMAT_NAME, FORMAT_VERSION, MODEL_KINDS, load_model, save_model
from ._train import DEFAULT_TRAINER, resolve_seed, train_forest

__all__ = [
    "DEFAULT_TRAINER",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_CLASSES",
    "MAX_NODES",
    "MODEL_KINDS",
    "NODE_ARRAYS",
    "SPLIT_RULES",
    "FlatForest",
    "load_model",
    "resolve_seed",
    "save_model",
    "train_forest",
]
