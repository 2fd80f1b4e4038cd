"""pyquint's Glasbey generator against Fiji's tables, and its building blocks."""

from __future__ import annotations

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.lut import (
    PYQUINT_LUT_DIR,
    cam02ucs_from_srgb,
    farthest_point_palette,
    glasbey_lut,
    lab_d50_from_srgb,
    median_cut_palette,
    read_lut,
)


@pytest.fixture(scope="module")
def fiji(reference_dir):
    return {n: read_lut(reference_dir / "fiji-luts" / f"{n}.lut").table for n in
            ("glasbey", "glasbey_on_dark", "glasbey_inverted")}


@pytest.fixture(scope="module")
def fresh():
    # the real generator, once per test session (about 15-20 s)
    return {n: glasbey_lut(n, cached=False).table for n in ("glasbey", "glasbey_on_dark", "glasbey_inverted")}


def _matches(a, b) -> int:
    return int((a.astype(int) == b.astype(int)).all(axis=1).sum())


def test_committed_files_are_current(fresh):
    for name, table in fresh.items():
        committed = read_lut(PYQUINT_LUT_DIR / f"{name}.lut")
        assert np.array_equal(committed.table, table), f"lut/{name}.lut is stale: run `pyquint lut make-glasbey`"
        assert (PYQUINT_LUT_DIR / f"{name}.lut").stat().st_size == 768


def test_match_with_fiji(fresh, fiji):
    g = fresh["glasbey"]
    # QUINT's documented colours: 1 blue, 2 red, 3 green; 0 white
    assert [tuple(c) for c in g[:4].tolist()] == [(255, 255, 255), (0, 0, 255), (255, 0, 0), (0, 255, 0)]
    # Achieved: 252/256 entries identical, the first 145 in a row; the same 256 colours
    # (145<->146 and 169<->170 are swapped: near-ties of 0.0007 and 0.0004 in CIELAB)
    assert _matches(g, fiji["glasbey"]) >= 252
    assert np.array_equal(g[:145], fiji["glasbey"][:145])
    assert {tuple(c) for c in g.tolist()} == {tuple(c) for c in fiji["glasbey"].tolist()}
    # glasbey_on_dark and glasbey_inverted: every entry
    assert _matches(fresh["glasbey_on_dark"], fiji["glasbey_on_dark"]) == 256
    assert _matches(fresh["glasbey_inverted"], fiji["glasbey_inverted"]) == 256


def test_median_cut_reproduces_fiji_inverted_from_fiji_glasbey(fiji):
    # ImageJ's 8-bit Color on the inverted glasbey ramp made Fiji's glasbey_inverted
    palette = median_cut_palette(255 - fiji["glasbey"].astype(int))
    assert np.array_equal(palette, fiji["glasbey_inverted"])


def test_median_cut_small_cases():
    # one colour -> one entry, binned to multiples of 8; near-white restored to white
    assert median_cut_palette(np.array([[17, 200, 255]])).tolist() == [[16, 200, 248]]
    assert median_cut_palette(np.array([[250, 251, 255]])).tolist() == [[255, 255, 255]]
    # two colours split along the longest axis (red): both kept
    out = median_cut_palette(np.array([[0, 0, 0], [255, 8, 0]]))
    assert sorted(map(tuple, out.tolist())) == [(0, 0, 0), (248, 8, 0)]
    # more colours than boxes: weighted mean of each box
    out = median_cut_palette(np.array([[0, 0, 0], [8, 0, 0], [248, 0, 0]]), np.array([1, 3, 4]), max_colors=2)
    assert sorted(map(tuple, out.tolist())) == [(6, 0, 0), (248, 0, 0)]


def _naive(points, n, seeds, exclude=None):
    dist = np.full(len(points), 1000.0)
    if exclude is not None:
        dist[exclude] = -1.0
    for s in seeds:
        upd = np.sqrt(((points - s) ** 2).sum(1))
        dist = np.where(dist < 0, dist, np.minimum(dist, upd))
    out = []
    for _ in range(n):
        i = int(np.argmax(dist))
        out.append(i)
        upd = np.sqrt(((points - points[i]) ** 2).sum(1))
        dist = np.where(dist < 0, dist, np.minimum(dist, upd))
    return out


def test_farthest_point_analytic_line():
    pts = np.stack([np.arange(11.0), np.zeros(11), np.zeros(11)], 1)
    # from 0: 10, then 5, then the ties at distance 2 go to the lowest index (2, 3?, ...)
    assert farthest_point_palette(pts, 4, pts[:1]).tolist() == [10, 5, 2, 7]


@pytest.mark.parametrize("block", [1, 8, 64])
def test_farthest_point_blocks_do_not_change_result(block):
    rng = np.random.default_rng(1)
    pts = np.round(rng.random((512, 3)) * 20, 1)  # rounding makes exact ties likely
    exclude = rng.random(512) < 0.1
    seeds = np.array([[0.0, 0.0, 0.0]])
    got = farthest_point_palette(pts, 60, seeds, exclude=exclude, block=block)
    assert got.tolist() == _naive(pts, 60, seeds, exclude)
    with pytest.raises(InputError):
        farthest_point_palette(pts, 600, seeds)


def test_colour_spaces_known_values():
    lab = lab_d50_from_srgb(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.02) and np.allclose(lab[1], 0)
    # ICC sRGB primaries in D50 Lab (as Photoshop/ICC colour management report them)
    assert np.allclose(lab[2], [54.29, 80.80, 69.89], atol=0.05)
    assert np.allclose(lab[3], [29.57, 68.30, -112.03], atol=0.05)
    ucs = cam02ucs_from_srgb(np.array([[255, 255, 255], [0, 0, 0]]))
    assert abs(ucs[0, 0] - 100) < 0.01 and np.allclose(ucs[1], 0, atol=1e-6)


def test_cam02ucs_equals_colorspacious():
    colorspacious = pytest.importorskip("colorspacious")
    rgb = np.random.default_rng(2).integers(0, 256, (2000, 3))
    ref = colorspacious.cspace_convert(rgb, "sRGB255", "CAM02-UCS")
    assert np.allclose(cam02ucs_from_srgb(rgb), ref, rtol=0, atol=1e-9)


def test_unknown_variant_and_cache():
    with pytest.raises(InputError, match="glasbey_on_dark"):
        glasbey_lut("glasbey_on_light")
    assert glasbey_lut("Glasbey On Dark") == read_lut(PYQUINT_LUT_DIR / "glasbey_on_dark.lut")


def _greedy_order(points: np.ndarray) -> list[int]:
    """Farthest-point order of all points after point 0 (the seed), with the pick margins."""
    dist = np.sqrt(((points - points[0]) ** 2).sum(1))
    dist[0] = -1
    order = [0]
    for _ in range(len(points) - 1):
        i = int(np.argmax(dist))
        order.append(i)
        dist = np.where(dist < 0, dist, np.minimum(dist, np.sqrt(((points - points[i]) ** 2).sum(1))))
        dist[i] = -1
    return order


def _lab_with_matrix(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    v = rgb / 255.0
    linear = np.where(v < 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    t = linear @ matrix.T / np.array([0.96422, 1.0, 0.82521])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def test_why_two_pairs_are_swapped(fiji):
    # Among Fiji's own 256 colours, the Glasbey order is decided by the 4th decimal of the
    # sRGB -> XYZ(D50) matrix: the ICC profile's 4-decimal colorants (pyquint's generator)
    # swap exactly 145<->146 and 169<->170; the matrix in full precision (sRGB primaries and
    # D65, Bradford-adapted to D50; within 1e-4 of the ICC values) gives Fiji's order. Over all 2**24 candidates the
    # full-precision matrix picks (222, 0, 255) instead of Fiji's (221, 0, 255) at entry 17,
    # so the rounded matrix is the one that finds Fiji's colours (docs/luts.md).
    rgb = fiji["glasbey"].astype(np.float64)
    order = _greedy_order(lab_d50_from_srgb(fiji["glasbey"]))
    assert [i for i, k in enumerate(order) if i != k] == [145, 146, 169, 170]
    assert order[145:147] == [146, 145] and order[169:171] == [170, 169]
    xy = np.array([[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]])
    prim = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy.sum(1)) / xy[:, 1]])
    d65, d50 = np.array([0.95047, 1.0, 1.08883]), np.array([0.96422, 1.0, 0.82521])
    to_xyz = prim * np.linalg.solve(prim, d65)
    brad = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    full = np.linalg.inv(brad) @ np.diag((brad @ d50) / (brad @ d65)) @ brad @ to_xyz
    icc = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
    assert np.abs(full - icc).max() < 1.5e-4  # the same matrix to the ICC profile's 4 decimals
    assert _greedy_order(_lab_with_matrix(rgb, full)) == list(range(256))
    # and pyquint's shipped table is Fiji's with exactly those two pairs exchanged
    swapped = fiji["glasbey"].copy()
    swapped[[145, 146, 169, 170]] = swapped[[146, 145, 170, 169]]
    assert np.array_equal(glasbey_lut("glasbey").table, swapped)
