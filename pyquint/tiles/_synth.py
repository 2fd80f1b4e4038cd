"""Synthetic test sections of any size, written to disk tile by tile (never whole in memory)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import make_section
from ..errors import InputError
from ..io import H5_SUFFIXES, TIFF_SUFFIXES, atomic_output, split_h5_path
from ._writers import open_writer

__all__ = ["make_test_image", "mosaic_tile"]


def _patterns(seed: int, n_patterns: int, size: int) -> list[np.ndarray]:
    return [make_section(seed * 1009 + k, (size, size)).image for k in range(n_patterns)]


def mosaic_tile(patterns: Sequence[np.ndarray], seed: int, ty: int, tx: int) -> np.ndarray:
    """Tile ``(ty, tx)``: one of ``patterns`` under one of the 8 rotations/flips, chosen by a
    generator seeded with ``(seed, ty, tx)`` (so any tile can be made on its own)."""
    rng = np.random.default_rng([seed, ty, tx])
    pattern = patterns[int(rng.integers(len(patterns)))]
    k = int(rng.integers(8))
    out = np.rot90(pattern, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def make_test_image(
    path: str | os.PathLike,
    size: Sequence[int] = (30000, 30000),
    *,
    seed: int = 0,
    tile: int = 512,
    n_patterns: int = 8,
    compression: str | None = None,
    patterns: Sequence[np.ndarray] | None = None,
) -> Path:
    """Write a synthetic uint8 section mosaic of ``size = (rows, cols)`` tile by tile.

    Each ``tile × tile`` block is a synthetic DAB-like section (:func:`pyquint.data.make_section`:
    tissue, stained cells, streaks, noise) taken from ``n_patterns`` pre-made patterns under a
    rotation/flip drawn from a per-tile seed. Memory stays at a few tiles whatever the size.

    Parameters
    ----------
    path : path
        ``.h5`` (chunked dataset ``data``, or ``file.h5/name``; axistags ``yxc``), ``.tif``
        (tiled TIFF; ``compression`` ``"zlib"`` or None) or ``.npy`` (written through a memory map).
    size : (int, int)
        Rows and columns (each ≥ 1).
    seed : int
        Same seed, same image.
    tile : int
        Pattern size (≥ 96).
    n_patterns : int
        Distinct sections to draw from.
    compression : str, optional
        TIFF ``"zlib"``; HDF5 ``"gzip"``.
    patterns : sequence of uint8 arrays, optional
        Use these ``tile × tile`` (grey) or ``tile × tile × 3`` (RGB) images instead of
        pyquint's sections (e.g. noisier ones for benchmarks); ``n_patterns`` is then ignored.

    Returns
    -------
    Path of the file.
    """
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise InputError(f"size must be positive, not {tuple(size)}")
    if tile < 96:
        raise InputError(f"tile must be at least 96 pixels, not {tile}")
    if n_patterns < 1:
        raise InputError(f"n_patterns must be ≥ 1, not {n_patterns}")
    file, inner = split_h5_path(path)
    suffix = file.suffix.lower()
    if suffix not in H5_SUFFIXES + TIFF_SUFFIXES + (".npy",):
        raise InputError(f"{path}: write the test image as .h5, .tif or .npy")
    if patterns is None:
        patterns = _patterns(seed, n_patterns, tile)
    else:
        patterns = [np.asarray(p) for p in patterns]
        shapes = {p.shape for p in patterns}
        if (not patterns or len(shapes) != 1 or patterns[0].dtype != np.uint8
                or patterns[0].shape[:2] != (tile, tile) or patterns[0].ndim not in (2, 3)
                or (patterns[0].ndim == 3 and patterns[0].shape[2] != 3)):
            raise InputError(f"patterns must be uint8 arrays of one shape ({tile}, {tile}) or "
                             f"({tile}, {tile}, 3), not {sorted(shapes)}")
    n_channels = 1 if patterns[0].ndim == 2 else 3
    bands = [(y, min(h, y + tile)) for y in range(0, h, tile)]

    def tiles():
        for ty, (y0, y1) in enumerate(bands):
            for tx, x0 in enumerate(range(0, w, tile)):
                x1 = min(w, x0 + tile)
                yield y0, x0, mosaic_tile(patterns, seed, ty, tx)[: y1 - y0, : x1 - x0]

    if suffix == ".npy":
        with atomic_output(file) as tmp:
            shape = (h, w) if n_channels == 1 else (h, w, 3)
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            for y0, x0, block in tiles():
                mm[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block
            mm.flush()
            del mm
        return file
    target = f"{file}/{inner or 'data'}" if suffix in H5_SUFFIXES else file
    with open_writer(target, (h, w, n_channels), np.uint8, bands, compression=compression or "none") as writer:
        for y0, x0, block in tiles():
            writer.write(y0, x0, block)
    return file
