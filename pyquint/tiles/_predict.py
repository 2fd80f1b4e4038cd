"""Tile-by-tile prediction of images larger than memory.

Each tile is read with a halo of real pixels (``feature_halo`` of the feature selection,
clipped at the image border, where the filters' own mirror border applies), so its features
equal the whole-image features; the forest then runs on the tile's core pixels only. Results
go to streaming writers tile by tile. Memory is bounded by the tile size and the number of
tiles in flight, not by the image size.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import guard_outputs, progress
from ..errors import InputError
from ..features import FeatureSelection, compute_features, feature_bands, feature_halo
from ..io import split_h5_path
from ..parallel import available_cpus, resolve_n_jobs
from ..pixel_sources import forest_sources, needs_probabilities, sources_from_proba
from ..tiling import windows
from ..zarrio import is_zarr_path
from ._readers import LazyImage, open_lazy
from ._writers import TileWriter, open_writer

__all__ = ["Tile", "TilePredictor", "auto_workers", "frame_count", "tile_grid", "tile_memory",
           "predict_tiled", "TILE_SOURCES"]

#: Export sources a tiled run can produce (ilastik's names; "Labels" needs a project).
TILE_SOURCES = ("Probabilities", "Simple Segmentation", "Uncertainty", "Features")
_DRANGE = {"Probabilities": (0.0, 1.0), "Uncertainty": (0.0, 1.0)}
# numba's workqueue layer cannot be entered from two threads at once, and the forest uses
# every core anyway: forest calls are serialised, feature computation overlaps with them.
_FOREST_LOCK = threading.Lock()
_FOREST_SLAB_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Tile:
    """A tile's core ``[y0:y1, x0:x1]`` and the window ``[wy0:wy1, wx0:wx1]`` read for it."""

    y0: int
    y1: int
    x0: int
    x1: int
    wy0: int
    wy1: int
    wx0: int
    wx1: int

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices that cut the core out of the window."""
        return (slice(self.y0 - self.wy0, self.y1 - self.wy0),
                slice(self.x0 - self.wx0, self.x1 - self.wx0))


def tile_grid(shape: Sequence[int], tile: int | Sequence[int], halo: int) -> list[list[Tile]]:
    """Split an image of ``shape = (height, width, ...)`` into bands of tiles.

    Tiles start every ``tile`` pixels (the last ones in a row or column are smaller when the
    size does not divide; :func:`pyquint.tiling.windows` with ``"fixed"`` spacing); each
    window adds ``halo`` pixels on every side, clipped at the image border.

    Returns
    -------
    list of bands, each a list of :class:`Tile` from left to right.
    """
    bands: dict[int, list[Tile]] = {}
    for win in windows((int(shape[0]), int(shape[1])), tile, halo, "fixed"):
        (ys, xs), (wys, wxs) = win.core, win.outer
        bands.setdefault(ys.start, []).append(
            Tile(ys.start, ys.stop, xs.start, xs.stop, wys.start, wys.stop, wxs.start, wxs.stop))
    return list(bands.values())


class TilePredictor:
    """Features → probabilities → export sources for one tile (picklable, no file handles).

    Parameters
    ----------
    classifier : PixelClassifier
        A trained classifier (its feature selection, rounding, forest and class count are used).
    sources : sequence of str
        Export sources to return (see :data:`TILE_SOURCES`).
    feature_threads, forest_threads : int, optional
        Threads inside one tile's feature computation and forest call.
    """

    def __init__(self, classifier: Any, sources: Sequence[str], *,
                 feature_threads: int | None = None, forest_threads: int | None = None) -> None:
        if not hasattr(classifier, "forest_"):
            raise InputError("the classifier is not trained yet; call fit() or load() first")
        selection = getattr(classifier, "selection_", None)
        if selection is None:
            selection = classifier.features
        if not isinstance(selection, FeatureSelection):
            raise InputError("the classifier has no FeatureSelection (features)")
        if getattr(classifier, "ndim_", 2) != 2:
            raise InputError("tile-by-tile prediction needs a classifier trained on 2-D images")
        for s in sources:
            if s not in TILE_SOURCES:
                raise InputError(f"export source {s!r} is not available tile by tile; use one of "
                                 f"{', '.join(TILE_SOURCES)}")
        self.selection = selection
        self.rounding = getattr(classifier, "rounding", "exact")
        self.forest = classifier.forest_
        self.n_classes = int(getattr(classifier, "n_classes_", len(self.forest.classes)))
        self.n_input_channels = int(getattr(classifier, "n_input_channels_", 1))
        self.sources = tuple(sources)
        self.feature_threads = feature_threads
        self.forest_threads = forest_threads if forest_threads is not None else getattr(classifier, "n_jobs", None)

    def channels(self, source: str) -> int:
        """Number of channels of ``source`` in the output."""
        if source == "Probabilities":
            return self.n_classes
        if source == "Features":
            return int(self.forest.n_features)
        return 1

    @staticmethod
    def dtype(source: str) -> np.dtype:
        return np.dtype(np.uint8 if source == "Simple Segmentation" else np.float32)

    def features(self, window: np.ndarray) -> np.ndarray:
        return compute_features(window, self.selection, axes="yxc", rounding=self.rounding,
                                n_jobs=self.feature_threads)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Forest probabilities of ``(h, w, F)`` features (a view into the window is fine)."""
        return self._forest(features, labels=False)

    def segmentation(self, features: np.ndarray) -> np.ndarray:
        """Simple Segmentation (uint8 ``(h, w)``) of ``(h, w, F)`` features, without the
        probabilities (:meth:`pyquint.forest.FlatForest.predict`: exact early stopping)."""
        return self._forest(features, labels=True)

    def _forest(self, features: np.ndarray, labels: bool) -> np.ndarray:
        # The forest needs contiguous pixel rows; the core of a window is not contiguous, so
        # it is copied in slabs of rows (~32 MB) instead of all at once.
        h, w, n_feat = features.shape
        if labels:
            out = np.empty((h, w), np.uint8)
            forest = self.forest.predict
        else:
            out = np.empty((h, w, self.n_classes), np.float32)
            forest = self.forest.predict_proba
        step = max(1, _FOREST_SLAB_BYTES // max(1, w * n_feat * 4))
        for r0 in range(0, h, step):
            slab = np.ascontiguousarray(features[r0:r0 + step])
            with _FOREST_LOCK:
                out[r0:r0 + step] = forest(slab, n_classes=self.n_classes,
                                           n_jobs=self.forest_threads)
        return out

    def __call__(self, reader: LazyImage, tile: Tile) -> dict[str, np.ndarray]:
        """Read ``tile``'s window from ``reader`` and return each source on the tile's core."""
        window = reader.read(tile.wy0, tile.wy1, tile.wx0, tile.wx1)
        if window.shape[-1] != self.n_input_channels:
            raise InputError(f"{reader.path or 'image'} has {window.shape[-1]} channel(s) but the "
                             f"model was trained on {self.n_input_channels}-channel images")
        if self.rounding == "fast" and "Features" not in self.sources:
            return self._banded(window, tile)
        feats = self.features(window)[tile.core_in_window]
        del window
        out = forest_sources(self.sources, lambda: self.probabilities(feats),
                             lambda: self.segmentation(feats))
        if "Features" in self.sources:
            out["Features"] = feats
        return out

    def _banded(self, window: np.ndarray, tile: Tile) -> dict[str, np.ndarray]:
        # Fast 2-D features band by band, each band through the forest while it is in cache
        # (as PixelClassifier does): the window's full feature stack never exists.
        rows, cols = tile.core_in_window
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        labels_only = not needs_probabilities(self.sources)
        if labels_only:
            out = np.empty(shape, np.uint8)
            forest = self.forest.predict
        else:
            out = np.empty(shape + (self.n_classes,), np.float32)
            forest = self.forest.predict_proba
        threads = resolve_n_jobs(self.feature_threads or self.forest_threads)
        bands = feature_bands(window, self.selection, axes="yxc", n_jobs=threads)

        def consume(y0: int, y1: int, feats: np.ndarray) -> None:
            out[y0 - rows.start:y1 - rows.start] = forest(feats[:, cols], n_classes=self.n_classes,
                                                           n_jobs=1)

        pool = ThreadPoolExecutor(threads) if threads > 1 else None
        try:
            bands.map(consume, rows=(rows.start, rows.stop), pool=pool)
        finally:
            if pool is not None:
                pool.shutdown()
        if labels_only:
            return {"Simple Segmentation": out[..., np.newaxis]}
        return sources_from_proba(out, self.sources)


def tile_memory(tile: Tile, predictor: TilePredictor) -> int:
    """Estimated peak bytes of one tile in flight: the window's float32 feature stack and
    about as much again in filter temporaries (measured for ``compute_features``); with fast
    features computed band by band, the pre-smoothed planes (one per scale and channel)
    twice over instead."""
    if predictor.rounding == "fast" and "Features" not in predictor.sources:
        scales = {j for _, j, _ in predictor.selection.blocks(2, 1)}
        n_feat = len(scales) * predictor.n_input_channels
    else:
        n_feat = int(predictor.forest.n_features)
    return 2 * (tile.wy1 - tile.wy0) * (tile.wx1 - tile.wx0) * n_feat * 4


def auto_workers(tile: Tile, predictor: TilePredictor) -> int:
    """Tiles to run at once: one per two cores (each tile's filters and the forest are
    multi-threaded already), at most 8, and no more than half the available memory holds."""
    import psutil

    per_tile = max(1, tile_memory(tile, predictor))
    by_memory = int(0.5 * psutil.virtual_memory().available // per_tile)
    return max(1, min(available_cpus() // 2, by_memory, 8))


def _to_output(source: str, data: np.ndarray, suffix: str) -> np.ndarray:
    """Convert a tile of ``source`` to what a ``suffix`` file stores.

    PNG holds 8-bit values: probabilities/uncertainty in 0..1 map linearly onto 0..255 with
    round-half-even (ilastik's ``--export_drange (0,255)``); ilastik's own PNG export instead
    stretches each image's min..max, which a stream cannot know in advance.
    """
    if suffix != ".png" or data.dtype == np.uint8:
        return data
    return np.rint(np.clip(data, 0.0, 1.0) * np.float32(255)).astype(np.uint8)


def _format_suffix(path: str | os.PathLike) -> str:
    return split_h5_path(path)[0].suffix.lower()


def _run_ordered(fn: Callable[[Tile], Any], tiles: Sequence[Tile], executor: Executor,
                 max_in_flight: int) -> Iterable[tuple[Tile, Any]]:
    """Yield ``(tile, fn(tile))`` in tile order with at most ``max_in_flight`` tiles pending."""
    pending: dict[int, Future] = {}
    nxt = 0
    for i in range(len(tiles)):
        while nxt < len(tiles) and len(pending) < max_in_flight:
            pending[nxt] = executor.submit(fn, tiles[nxt])
            nxt += 1
        try:
            result = pending.pop(i).result()
        except BaseException:
            for f in pending.values():
                f.cancel()
            raise
        yield tiles[i], result


def frame_count(source: Any, axes: str | None = None, scale_level: int = 0) -> int:
    """Time points of an image for the tile path (1 for images without ``t``; formats read
    whole count as 1)."""
    if isinstance(source, LazyImage):
        return source.n_frames
    if not isinstance(source, np.ndarray):
        if not (is_zarr_path(source) or _format_suffix(source) in (".h5", ".hdf5", ".hdf", ".npy", ".tif", ".tiff")):
            return 1
    reader = open_lazy(source, axes, scale_level=scale_level, frame=0)
    try:
        return reader.n_frames
    finally:
        if not isinstance(source, LazyImage):
            reader.close()


def predict_tiled(
    classifier: Any,
    source: str | os.PathLike | np.ndarray | LazyImage,
    outputs: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]],
    *,
    tile: int | Sequence[int] = 2048,
    halo: int | None = None,
    n_workers: int | None = None,
    executor: Executor | None = None,
    palette: np.ndarray | None = None,
    compression: str | None = None,
    axes: str | None = None,
    show_progress: bool = True,
    scale_level: int = 0,
    frame: int | None = None,
) -> dict[str, Path]:
    """Predict a large 2-D image tile by tile and stream the results to disk.

    Parameters
    ----------
    classifier : PixelClassifier
        A trained 2-D classifier.
    source : path, ndarray or LazyImage
        The image: HDF5 (``file.h5/dataset``), TIFF, ``.npy`` (all read window by window,
        see :func:`open_lazy`), another image file (loaded whole) or an array.
    outputs : mapping of export source to path, or sequence of (source, path) pairs
        E.g. ``{"Simple Segmentation": "seg.png", "Probabilities": "p.h5"}``; pairs allow one
        source in several files (``[("Simple Segmentation", "s.png"), ("Simple Segmentation",
        "s.tif")]``), all from one pass. The format follows the suffix: ``.png`` (streamed,
        8-bit), ``.tif``/``.tiff`` (tiled, deflate), ``.h5`` (ilastik's ``exported_data``
        layout, or ``file.h5/dataset``), ``.zarr`` (OME-Zarr 0.4, ``cyx``, chunk by chunk).
    tile : int or (int, int)
        Core tile size in pixels (rows, columns). Memory grows with
        ``(tile + 2·halo)² × n_features × 4`` bytes per tile in flight.
    halo : int, optional
        Context read around each tile; default ``feature_halo(selection)``, which makes the
        result equal to whole-image prediction. A smaller halo changes results near tile edges.
    n_workers : int, optional
        Tiles processed at once by a thread pool. Default :func:`auto_workers`: one per two
        cores, limited by memory (1 on a 2-core machine, where the filters and the forest use
        both cores within a tile). With ``executor``: tiles in flight (default 4).
    executor : concurrent.futures.Executor, optional
        Run tiles elsewhere, e.g. ``distributed.Client(...).get_executor()`` (the classifier and
        the reader are sent to the workers, which must see the same file).
    palette : (n, 3) uint8 array, optional
        Colour table for Simple Segmentation outputs written as PNG or TIFF (e.g. a Glasbey
        LUT): an indexed-colour file whose pixel values stay the class numbers.
    compression : str, optional
        None: HDF5 uncompressed, TIFF deflate; ``"gzip"``: HDF5 too is compressed (gzip level
        1, ilastik's "compressed hdf5"); ``"none"``: TIFF uncompressed as well.
    axes : str, optional
        Stored axes of ``source`` when the file does not say.
    show_progress : bool
        Show a progress bar over tiles (also disabled by ``PYQUINT_NO_PROGRESS``).
    scale_level : int
        Resolution level of an OME-Zarr ``source`` (0 = full resolution).
    frame : int, optional
        The time point of a time-series ``source`` to predict (features never cross ``t``);
        see :func:`frame_count`.

    Returns
    -------
    dict mapping each export source to the path written (a list of paths, in order, when
    ``outputs`` is a sequence of pairs).

    Raises
    ------
    InputError
        Unknown export source, unsupported output format, a source a format cannot hold
        (Features as PNG), an image the classifier cannot take, or unreadable input.
    """
    if not outputs:
        raise InputError("no outputs given: map at least one export source to a file")
    as_pairs = not isinstance(outputs, Mapping)
    pairs = [(str(k), v) for k, v in (outputs if as_pairs else outputs.items())]
    predictor = TilePredictor(classifier, list(dict.fromkeys(k for k, _ in pairs)))
    halo = feature_halo(predictor.selection) if halo is None else int(halo)
    resolved = [os.path.abspath(split_h5_path(p)[0]) for _, p in pairs]
    if len(set(resolved)) != len(resolved):
        raise InputError(f"two outputs would be written to the same file: {[str(p) for _, p in pairs]}")
    if not isinstance(source, (np.ndarray, LazyImage)):
        guard_outputs([source], [p for _, p in pairs])
    reader = open_lazy(source, axes, scale_level=scale_level, frame=frame)
    bands = tile_grid(reader.shape, tile, halo)
    band_rows = [(band[0].y0, band[0].y1) for band in bands]
    h, w, _ = reader.shape
    specs = []
    for name, path in pairs:
        suffix = _format_suffix(path)
        channels = predictor.channels(name)
        if suffix == ".png" and name == "Features":
            raise InputError(f"{path}: Features are float32 channels; write them as .tif or .h5")
        if suffix == ".png" and channels > 4:
            raise InputError(f"{path}: a PNG holds at most 4 channels; {name} has {channels} "
                             f"(use .tif or .h5)")
        dtype = np.uint8 if suffix == ".png" else predictor.dtype(name)
        use_palette = palette if name == "Simple Segmentation" else None
        attrs = ({"drange": np.asarray(_DRANGE[name], np.float32)}
                 if name in _DRANGE and suffix != ".png" else None)
        specs.append((name, path, (h, w, channels), dtype, use_palette, attrs))
    tiles = [t for band in bands for t in band]

    writers: list[tuple[str, str, TileWriter]] = []
    own_pool = None
    try:
        for name, path, shape, dtype, use_palette, attrs in specs:
            writers.append((name, _format_suffix(path),
                            open_writer(path, shape, dtype, band_rows, palette=use_palette,
                                        attrs=attrs, compression=compression)))
        if executor is None:
            if n_workers is None:
                n_workers = auto_workers(tiles[0], predictor)
            n_workers = int(n_workers)
            if n_workers < 1:
                raise InputError(f"n_workers must be ≥ 1, not {n_workers}")
            # several tiles at once: let each tile's feature pass use fewer threads
            predictor.feature_threads = max(1, available_cpus() // n_workers)
            own_pool = executor = ThreadPoolExecutor(n_workers, thread_name_prefix="pyquint-tile")
            in_flight = n_workers + 1
        else:
            in_flight = max(2, int(n_workers or 4))

        def work(t: Tile) -> dict[str, np.ndarray]:
            return predictor(reader, t)

        results = _run_ordered(work, tiles, executor, in_flight)
        it = progress(results, desc="tiles", total=len(tiles), unit="tile") if show_progress else results
        for t, result in it:
            for name, suffix, writer in writers:
                writer.write(t.y0, t.x0, _to_output(name, result[name], suffix))
        closed = [writer.close() for _, _, writer in writers]
    except BaseException:
        for _, _, writer in writers:
            writer.abort()
        raise
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=True, cancel_futures=True)
        if not isinstance(source, LazyImage):
            reader.close()
    if as_pairs:
        return closed  # type: ignore[return-value]
    return {name: path for (name, _), path in zip(pairs, closed)}
