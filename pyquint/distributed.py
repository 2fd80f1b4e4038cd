"""Prediction on Dask: local threads by default, a ``dask.distributed`` cluster on request.

:func:`predict_dask` builds a lazy ``dask.array`` graph with :func:`dask.array.map_overlap`:
each chunk is extended by the feature halo from its neighbours only (``boundary="none"``, so
no artificial padding at the true image border, where the feature filters apply their own
mirror border exactly as on the whole image), features and forest run on the extended block,
and only the chunk's own pixels are returned. The result equals whole-image prediction.

The classifier travels to workers as the in-memory object (numpy node arrays and a feature
selection); nothing is read from model files on the workers. File inputs are read lazily by
each task from the path (workers need the same file system).

Requires the ``dask`` extra: ``pip install "pyquint[dask]"``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._dask_frames import n_time_frames, predict_dask_frames
from .errors import InputError, PyquintError
from .features import feature_halo
from .io import split_h5_path
from .tiles import ArrayImage, LazyImage, Tile, TilePredictor, open_lazy
from .tiling import chunk_sizes

__all__ = ["predict_dask", "get_client", "chunk_spans"]

DASK_SOURCES = ("Probabilities", "Simple Segmentation", "Uncertainty", "Features")


def _require_dask() -> Any:
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is installed in CI
        raise PyquintError("Dask is not installed: pip install 'pyquint[dask]'") from exc
    return da


def get_client(address: str, timeout: float = 10.0) -> Any:
    """Connect to a running ``dask.distributed`` scheduler (``tcp://host:port``)."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover
        raise PyquintError("dask.distributed is not installed: pip install 'pyquint[dask]'") from exc
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise PyquintError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc


def chunk_spans(size: int, chunk: int, depth: int) -> tuple[int, ...]:
    """Chunk sizes along one axis: ``chunk`` each, none smaller than ``depth`` (a small last
    chunk is merged into its neighbour), so that every halo comes from one neighbour
    (:func:`pyquint.tiling.chunk_sizes`)."""
    return chunk_sizes(size, chunk, depth)


class _WindowArray:
    """Adapter that lets ``dask.array.from_array`` read a :class:`LazyImage` window by window."""

    def __init__(self, reader: LazyImage) -> None:
        self.reader = reader
        self.shape = reader.shape
        self.dtype = reader.dtype
        self.ndim = 3

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        ys, xs, cs = (index + (slice(None),) * 3)[:3]
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.empty((max(0, y1 - y0), max(0, x1 - x0), self.shape[2]), self.dtype)[..., cs]
        return self.reader.read(y0, y1, x0, x1)[..., cs]


def _as_dask_image(image: Any, axes: str | None, chunks: tuple[tuple[int, ...], ...]) -> Any:
    da = _require_dask()
    if isinstance(image, da.Array):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3:
            raise InputError(f"a Dask image must be yx or yxc, not {image.ndim}-D")
        return image.rechunk(chunks)
    if isinstance(image, np.ndarray) and axes is None:
        if image.ndim == 2:
            image = image[..., np.newaxis]
        if image.ndim != 3:
            raise InputError(f"image must be yx or yxc, not shape {image.shape}")
        return da.from_array(image, chunks=chunks)
    reader = open_lazy(image, axes)
    # a stable name for a file (path, shape, modification time), a unique one for arrays
    name = f"pyquint-read-{uuid.uuid4().hex}"
    if reader.path:
        file = split_h5_path(reader.path)[0]
        if file.exists():
            name = (f"pyquint-read-{reader.path}-t{reader.frame}-{reader.shape}-"
                    f"{file.stat().st_mtime_ns}")
    return da.from_array(_WindowArray(reader), chunks=chunks, name=name, lock=False,
                         asarray=True, meta=np.empty((0, 0, 0), reader.dtype))


def _image_shape(image: Any, axes: str | None) -> tuple[int, int, int]:
    da = _require_dask()
    if isinstance(image, (np.ndarray, da.Array)) and axes is None:
        shape = tuple(image.shape)
        if len(shape) == 2:
            shape += (1,)
        if len(shape) != 3:
            raise InputError(f"image must be yx or yxc, not shape {shape}")
        return shape  # type: ignore[return-value]
    return open_lazy(image, axes).shape


def _predict_block(block: np.ndarray, block_info: dict | None = None, *,
                   predictor: TilePredictor, depth: int, source: str) -> np.ndarray:
    """Features + forest on one overlapped block; returns the block's own pixels."""
    info = block_info[None]
    loc, num = info["chunk-location"], info["num-chunks"]
    # boundary="none": the first/last chunk of an axis has no halo on its outer side
    lo = [0 if loc[a] == 0 else depth for a in (0, 1)]
    hi = [0 if loc[a] == num[a] - 1 else depth for a in (0, 1)]
    h, w = block.shape[0], block.shape[1]
    tile = Tile(lo[0], h - hi[0], lo[1], w - hi[1], 0, h, 0, w)
    out = predictor(ArrayImage(block, "yxc"), tile)[source]
    return out[..., 0] if source in ("Simple Segmentation", "Uncertainty") else out


def predict_dask(
    classifier: Any,
    image: Any,
    *,
    source: str = "Probabilities",
    chunks: int | Sequence[int] = 1024,
    halo: int | None = None,
    scheduler: Any = None,
    axes: str | None = None,
    compute: bool = True,
) -> Any:
    """Predict an image with Dask, chunk by chunk with overlapping halos.

    Parameters
    ----------
    classifier : PixelClassifier
        A trained 2-D classifier.
    image : ndarray, dask array, path or LazyImage
        ``yx``/``yxc`` pixels; a path (HDF5, TIFF, ``.npy``) is read lazily by each task.
        Time series (files with ``t``, arrays with ``t`` in ``axes``) are predicted frame by
        frame and the results stacked along a leading ``t`` axis.
    source : str
        ``"Probabilities"`` (``(H, W, N)`` float32), ``"Simple Segmentation"`` (``(H, W)``
        uint8), ``"Uncertainty"`` (``(H, W)`` float32) or ``"Features"`` (``(H, W, F)``).
    chunks : int or (int, int)
        Chunk size in y and x (enlarged to at least the halo). Each task holds the float32
        features of its chunk plus halo (about 2 × (chunk + 2·halo)² × F × 4 bytes at peak).
    halo : int, optional
        Overlap depth; default ``feature_halo`` of the classifier's selection (exact results).
    scheduler : None, str or distributed.Client
        None or ``"threads"``: Dask's local threads; ``"sync"``: one thread (debugging);
        ``"tcp://host:port"``: connect to that ``dask.distributed`` scheduler; a ``Client``:
        use it.
    axes : str, optional
        Stored axes of a file or array when they cannot be guessed (e.g. ``"tyxc"``).
    compute : bool
        Return the computed numpy array (default) or the lazy dask array (``scheduler`` is
        then not used).

    Returns
    -------
    numpy.ndarray or dask.array.Array
    """
    da = _require_dask()

    if source not in DASK_SOURCES:
        raise InputError(f"unknown export source {source!r}; use one of {', '.join(DASK_SOURCES)}")
    n_frames = n_time_frames(image, axes)
    if n_frames > 1:  # a time series: one graph per frame, never a chunk across t
        stacked = predict_dask_frames(functools.partial(predict_dask, classifier), image, axes,
                                      n_frames, source=source, chunks=chunks, halo=halo)
        return _compute(stacked, scheduler) if compute else stacked
    predictor = TilePredictor(classifier, [source])
    depth = feature_halo(predictor.selection) if halo is None else int(halo)
    if depth < 0:
        raise InputError(f"halo must be ≥ 0, not {halo}")
    cy, cx = (chunks, chunks) if np.isscalar(chunks) else tuple(chunks)  # type: ignore[misc]
    h, w, c = _image_shape(image, axes)
    in_chunks = (chunk_spans(h, int(cy), depth), chunk_spans(w, int(cx), depth), (c,))
    arr = _as_dask_image(image, axes, in_chunks)
    if arr.shape[2] != predictor.n_input_channels:
        raise InputError(f"the image has {arr.shape[2]} channel(s) but the model was trained on "
                         f"{predictor.n_input_channels}-channel images")
    n_out = predictor.channels(source)
    dtype = predictor.dtype(source)
    kwargs: dict[str, Any] = {}
    if source in ("Simple Segmentation", "Uncertainty"):
        out_chunks: tuple = in_chunks[:2]
        kwargs["drop_axis"] = 2
    else:
        out_chunks = in_chunks[:2] + ((n_out,),)
    fn = functools.partial(_predict_block, predictor=predictor, depth=depth, source=source)
    result = da.map_overlap(
        fn, arr, depth={0: depth, 1: depth, 2: 0}, boundary="none", trim=False,
        allow_rechunk=False, dtype=dtype, chunks=out_chunks,
        meta=np.empty((0,) * len(out_chunks), dtype), **kwargs,
    )
    if not compute:
        return result
    return _compute(result, scheduler)


def _compute(result: Any, scheduler: Any) -> np.ndarray:
    """Compute a lazy result on the scheduler ``predict_dask`` was given."""
    if scheduler is None or scheduler == "threads":
        return result.compute(scheduler="threads")
    if scheduler in ("sync", "synchronous", "single-threaded"):
        return result.compute(scheduler="sync")
    if isinstance(scheduler, str):
        if "://" not in scheduler:
            raise InputError(f"unknown scheduler {scheduler!r}; use 'threads', 'sync' or tcp://host:port")
        client = get_client(scheduler)
        try:
            return client.compute(result).result()
        finally:
            client.close()
    if hasattr(scheduler, "compute"):
        return scheduler.compute(result).result()
    raise InputError(f"unknown scheduler {scheduler!r}")
