"""The tiling policy (pyquint.tiling): cores cover an image exactly once, halos are clipped at
the border, and features on the windows equal whole-image features."""

from __future__ import annotations

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.features import FeatureSelection, compute_features, feature_halo
from pyquint.tiling import chunk_sizes, grow, spans, tile_shape, windows


@pytest.mark.parametrize("spacing", ["even", "fixed"])
@pytest.mark.parametrize("size,tile", [(100, 30), (100, 50), (7, 100), (1, 1), (101, 10)])
def test_spans_cover_the_axis_once(spacing, size, tile):
    got = spans(size, tile, spacing)
    assert got[0][0] == 0 and got[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(got, got[1:]))  # consecutive, no gap or overlap
    assert all(0 < b - a <= tile for a, b in got)


def test_even_and_fixed_spacing():
    assert spans(100, 30, "even") == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert spans(100, 30, "fixed") == [(0, 30), (30, 60), (60, 90), (90, 100)]
    with pytest.raises(InputError, match="spacing"):
        spans(10, 3, "odd")
    with pytest.raises(InputError, match="positive"):
        spans(10, 0)


@pytest.mark.parametrize("spacing", ["even", "fixed"])
@pytest.mark.parametrize("tile", [16, (9, 40), 200])
def test_windows_cover_once_and_clip_halos(spacing, tile):
    shape, halo = (3, 45, 61), 7  # a leading z axis is never cut
    cover = np.zeros(shape, int)
    for w in windows(shape, tile, halo, spacing):
        assert w.core[0] == w.outer[0] == slice(0, 3)
        cover[w.core] += 1
        for c, o, n in zip(w.core[1:], w.outer[1:], shape[1:]):
            assert (o.start, o.stop) == (max(0, c.start - halo), min(n, c.stop + halo))
        inner = w.inner
        assert all(i.stop - i.start == c.stop - c.start for i, c in zip(inner, w.core))
        assert all(o.start + i.start == c.start for o, i, c in zip(w.outer, inner, w.core))
    assert (cover == 1).all()


def test_windows_refuse_bad_sizes():
    with pytest.raises(InputError, match="halo"):
        list(windows((10, 10), 4, -1))
    with pytest.raises(InputError, match="positive"):
        list(windows((10, 10), (4, 0), 1))
    assert tile_shape(5) == (5, 5) and tile_shape((3, 8)) == (3, 8)
    assert grow(2, 5, 4, 8) == (0, 8) and grow(10, 20, 3, 40) == (7, 23)


def test_chunk_sizes_merge_a_tail_smaller_than_the_halo():
    assert chunk_sizes(100, 40, 10) == (40, 40, 20)
    assert chunk_sizes(100, 45, 38) == (45, 55)  # a 10-pixel tail joins its neighbour
    assert chunk_sizes(100, 30, 38) == (38, 62)  # chunks are at least the halo
    assert chunk_sizes(20, 64, 38) == (20,)
    assert sum(chunk_sizes(12345, 1000, 38)) == 12345
    with pytest.raises(InputError):
        chunk_sizes(10, 0, 1)


@pytest.mark.parametrize("spacing", ["even", "fixed"])
def test_window_features_equal_whole_image_features(spacing):
    """The halo is what makes tiles exact: features of each window, cut to its core, are the
    whole image's (bit for bit), and a halo one pixel short is not."""
    rng = np.random.default_rng(1)
    image = rng.normal(100, 20, (70, 83)).astype(np.float32)
    sel = FeatureSelection.from_dict({"matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0],
                                                 [0, 0, 0], [0, 0, 0]], "scales": [0.7, 1.6, 3.5]})
    halo = feature_halo(sel)
    whole = compute_features(image, sel, axes="yx", rounding="exact")
    tiled = np.full_like(whole, np.nan)
    short = np.full_like(whole, np.nan)
    for w in windows(image.shape, 25, halo, spacing):
        tiled[w.core] = compute_features(image[w.outer], sel, axes="yx", rounding="exact")[w.inner]
    for w in windows(image.shape, 25, halo - 1, spacing):
        short[w.core] = compute_features(image[w.outer], sel, axes="yx", rounding="exact")[w.inner]
    assert np.array_equal(tiled, whole)
    assert not np.array_equal(short, whole)
