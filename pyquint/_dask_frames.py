"""Time series on Dask: one graph per time point, stacked along ``t`` (no chunk spans two frames).

ilastik computes features per time point, never across ``t``; :func:`pyquint.distributed.
predict_dask` hands images with a ``t`` axis here, which splits them into 2-D frames, predicts
each with the ordinary chunked ``map_overlap`` graph and stacks the lazy results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .io import reorder_axes
from .tiles import frame_count, open_lazy

__all__ = ["n_time_frames", "predict_dask_frames"]


def n_time_frames(image: Any, axes: str | None) -> int:
    """Time points of ``image`` as :func:`predict_dask` sees it (1 when there is no ``t``)."""
    if hasattr(image, "shape") and not hasattr(image, "read"):  # numpy or dask array
        if axes is None or "t" not in axes.lower():
            return 1
        if len(axes) != len(image.shape):
            raise InputError(f"axes {axes!r} do not match an array of {len(image.shape)} dimensions")
        return int(image.shape[axes.lower().index("t")])
    if hasattr(image, "read"):  # a LazyImage already holds one frame
        return 1
    return frame_count(image, axes)


def _frame_of_array(image: Any, axes: str, k: int) -> Any:
    """Frame ``k`` of a numpy/dask array, reordered to ``yxc``."""
    axes = axes.lower()
    frame = image[(slice(None),) * axes.index("t") + (k,)]
    rest = axes.replace("t", "")
    if isinstance(frame, np.ndarray):
        return reorder_axes(frame, rest, "yxc")
    for a in rest:  # dask: drop singleton axes that are not y, x, c
        if a not in "yxc":
            frame = frame[(slice(None),) * rest.index(a) + (0,)]
            rest = rest.replace(a, "")
    if "c" not in rest:
        frame, rest = frame[..., None], rest + "c"
    return frame.transpose([rest.index(a) for a in "yxc"])


def predict_dask_frames(predict: Any, image: Any, axes: str | None, n_frames: int,
                        **kwargs: Any) -> Any:
    """``predict`` (``predict_dask``) on every frame, stacked lazily along a leading ``t`` axis.

    Parameters
    ----------
    predict : callable
        :func:`pyquint.distributed.predict_dask`.
    image : ndarray, dask array or path
        A time series (``axes`` name its ``t`` axis for arrays; files say it themselves).
    axes : str or None
        Axes of ``image``.
    n_frames : int
        Its number of time points.
    **kwargs
        The other ``predict_dask`` arguments (source, chunks, halo).

    Returns
    -------
    dask.array.Array
        ``(T, H, W[, C])``; the caller computes it.
    """
    import dask.array as da  # optional dependency

    parts = []
    for k in range(n_frames):
        frame = (_frame_of_array(image, axes or "", k) if hasattr(image, "shape")
                 else open_lazy(image, axes, frame=k))  # a LazyImage named by its frame
        parts.append(predict(frame, compute=False, **kwargs))
    return da.stack(parts, axis=0)
