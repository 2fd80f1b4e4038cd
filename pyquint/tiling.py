"""Windows with a halo: the one tiling policy of every prediction path.

An image is cut along y and x into *cores* that cover it exactly once; each core is read
with a *halo* of real pixels around it (clipped at the image border, where the feature
filters apply their own mirror border), so that features computed on the window and cut
back to the core equal whole-image features bit for bit. Only how the cores are spaced
differs between callers, and it is chosen here by name:

- ``"even"``: near-equal spans of at most ``tile`` pixels, no small remainder
  (:class:`pyquint.pixel.PixelClassifier`, which picks the tile from a memory budget);
- ``"fixed"``: a core every ``tile`` pixels, the last one smaller (the streaming tile path
  :mod:`pyquint.tiles`, whose writers need a fixed grid);
- :func:`chunk_sizes`: ``tile``-sized chunks whose last one is merged into its neighbour when
  smaller than the halo, so that every halo comes from one neighbour (Dask's ``map_overlap``).

>>> spans(10, 4, "even"), spans(10, 4, "fixed")
([(0, 3), (3, 7), (7, 10)], [(0, 4), (4, 8), (8, 10)])
>>> [w.outer for w in windows((6, 10), (6, 4), 2, "fixed")][1]
(slice(0, 6, None), slice(2, 10, None))
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["SPACINGS", "Window", "chunk_sizes", "grow", "spans", "tile_shape", "windows"]

#: How cores are spaced along an axis (see the module docstring).
SPACINGS = ("even", "fixed")


@dataclass(frozen=True)
class Window:
    """One tile: its ``core`` and the ``outer`` window read for it (core + halo, clipped).

    Both are tuples of slices over the image's spatial axes (leading axes such as z whole).
    """

    core: tuple[slice, ...]
    outer: tuple[slice, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """Slices that cut the core out of the outer window."""
        return tuple(slice(c.start - o.start, c.stop - o.start)
                     for c, o in zip(self.core, self.outer))


def spans(size: int, tile: int, spacing: str = "even") -> list[tuple[int, int]]:
    """Split ``0..size`` into ``(start, stop)`` spans of at most ``tile`` pixels.

    Parameters
    ----------
    size : int
        Length of the axis.
    tile : int
        Largest span (≥ 1).
    spacing : {"even", "fixed"}
        ``"even"``: ``ceil(size / tile)`` near-equal spans; ``"fixed"``: one every ``tile``
        pixels, the last one holding the remainder.

    Returns
    -------
    list of (int, int)
        Consecutive spans that cover ``0..size`` exactly once (one empty-free span for
        ``size`` ≤ ``tile``).
    """
    tile = _positive(tile)
    if spacing == "even":
        n = max(1, math.ceil(size / tile))
        edges = np.linspace(0, size, n + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    if spacing == "fixed":
        return [(a, min(size, a + tile)) for a in range(0, size, tile)]
    raise InputError(f"unknown tile spacing {spacing!r}; choose from {', '.join(SPACINGS)}")


def grow(start: int, stop: int, halo: int, size: int) -> tuple[int, int]:
    """The span ``start..stop`` grown by ``halo`` on both sides, clipped to ``0..size``."""
    return max(0, start - halo), min(size, stop + halo)


def tile_shape(tile: int | Sequence[int]) -> tuple[int, int]:
    """``(rows, columns)`` of a tile given as one edge or a pair; refuses sizes below 1."""
    th, tw = (tile, tile) if np.isscalar(tile) else tuple(tile)  # type: ignore[misc]
    if int(th) < 1 or int(tw) < 1:
        raise InputError(f"tile size must be positive, not {tile!r}")
    return int(th), int(tw)


def windows(
    spatial: Sequence[int],
    tile: int | Sequence[int],
    halo: int,
    spacing: str = "even",
) -> Iterator[Window]:
    """The windows that tile the last two (y, x) axes of ``spatial``, row by row.

    Parameters
    ----------
    spatial : sequence of int
        Spatial shape (``(y, x)`` or ``(z, y, x)``; axes before y are never cut).
    tile : int or (int, int)
        Largest core edge (rows, columns).
    halo : int
        Pixels of context on each side of a core (≥ 0), clipped at the border.
    spacing : {"even", "fixed"}
        See :func:`spans`.

    Yields
    ------
    Window
        Cores in row-major order; together they cover the image exactly once.
    """
    if halo < 0:
        raise InputError(f"halo must be ≥ 0, not {halo}")
    th, tw = tile_shape(tile)
    *lead_shape, ny, nx = (int(s) for s in spatial)
    lead = tuple(slice(0, n) for n in lead_shape)
    x_spans = spans(nx, tw, spacing)
    for y0, y1 in spans(ny, th, spacing):
        wy = slice(*grow(y0, y1, halo, ny))
        for x0, x1 in x_spans:
            yield Window(lead + (slice(y0, y1), slice(x0, x1)),
                         lead + (wy, slice(*grow(x0, x1, halo, nx))))


def chunk_sizes(size: int, chunk: int, halo: int) -> tuple[int, ...]:
    """Chunk sizes along one axis for an overlapping map: ``chunk`` each (enlarged to at
    least ``halo``), a last chunk smaller than ``halo`` merged into its neighbour, so that
    every chunk's halo comes from its direct neighbours only."""
    chunk = max(_positive(chunk, "chunk size"), halo, 1)
    sizes = [chunk] * (size // chunk)
    if size % chunk:
        sizes.append(size % chunk)
    if len(sizes) > 1 and sizes[-1] < halo:
        tail = sizes.pop()
        sizes[-1] += tail
    return tuple(sizes) if sizes else (size,)


def _positive(value: int, what: str = "tile size") -> int:
    if int(value) < 1:
        raise InputError(f"{what} must be positive, not {value}")
    return int(value)
