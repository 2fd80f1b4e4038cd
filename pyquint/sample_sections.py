"""Synthetic whole brain sections that look like real QUINT input, with ground truth.

Two kinds, both RGB ``uint8`` as slide scanners export them after QUINT's downscale (factor
0.2 of a ~1 µm/px scan, so a nominal :data:`PIXEL_SIZE_UM` of 5 µm per pixel):

- **brightfield DAB** (:func:`make_dab_section`): a coronal section outline (two hemispheres,
  the midline fissure, two ventricles) on a bright slide, haematoxylin-blue counterstain
  with nuclei, brown DAB-stained cells (3-7 px across, a few hundred per section), diffuse
  non-specific DAB background, and what object classification must remove because it is as
  brown as the cells: edge staining along the outline and stained vessels; plus a tissue
  fold, air bubbles (dark rims) and dust specks. Colours follow Beer-Lambert with the
  usual haematoxylin and DAB optical-density vectors.
- **fluorescence** (:func:`make_fluorescence_section`): dark background, tissue
  autofluorescence, a nuclear counterstain (blue), labelled cells (green), and artefacts
  that glow in every channel (edge autofluorescence, a fold, dust).

Annotations as for :mod:`pyquint.data`: ``truth`` 0 = background (slide, unstained
tissue, diffuse non-specific staining), 1 = labelled cell, 2 = artefact; ``labels`` (pixel
classification) 1 = Background, 2 = Stain (all that is stain-coloured: cells, edge staining,
vessels); ``object_labels`` 1 = label (cell), 2 = artefact, short strokes inside a few
objects, as users paint them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["PIXEL_SIZE_UM", "RgbSection", "make_dab_section", "make_fluorescence_section"]

#: Nominal pixel size of the synthetic sections (µm): a 1 µm/px scan downscaled by 0.2.
PIXEL_SIZE_UM = 5.0

# Optical-density vectors (R, G, B) of haematoxylin and DAB (Ruifrok & Johnston's values).
_HAEMATOXYLIN = np.array([0.650, 0.704, 0.286])
_DAB = np.array([0.268, 0.570, 0.776])
_NEUTRAL = np.array([0.577, 0.577, 0.577])  # dust, bubble rims: grey


@dataclass
class RgbSection:
    """One synthetic RGB section and its annotations (``yx`` arrays, image ``yxc``)."""

    image: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    object_labels: np.ndarray
    tissue: np.ndarray
    n_cells: int


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return n / (n.std() + 1e-12)


def _brain_outline(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Tissue mask of a coronal section and the ventricles (holes), with a wobbly outline."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (xx - w / 2) / (0.47 * w) + 0.035 * _noise(rng, shape, 25)
    v = (yy - h / 2) / (0.44 * h) + 0.035 * _noise(rng, shape, 25)
    hemis = [((u - s * 0.45) / 0.58) ** 2 + ((v + 0.05 * v**2) / 0.97) ** 2 <= 1 for s in (-1, 1)]
    tissue = hemis[0] | hemis[1]
    tissue &= ~((np.abs(u) < 0.012 + 0.02 * np.clip(-v - 0.4, 0, 1)) & (v < -0.25))  # dorsal fissure
    tissue &= ~((np.abs(u) < 0.10 * np.clip(v - 0.72, 0, 1) / 0.28 + 0.005) & (v > 0.72))  # ventral notch
    ventricles = np.zeros(shape, bool)
    for s in (-1, 1):
        du, dv = u - s * 0.13, v + 0.12
        a = s * 0.5
        ru, rv = du * np.cos(a) + dv * np.sin(a), -du * np.sin(a) + dv * np.cos(a)
        ventricles |= (ru / 0.035) ** 2 + (rv / 0.17) ** 2 <= 1
    tissue &= ~ventricles
    tissue = ndi.binary_opening(tissue, iterations=2)
    return tissue, ventricles


def _disk_stamp(canvas: np.ndarray, y: float, x: float, r: float, value: float, soft: float = 0.8) -> None:
    """max-paint a soft-edged disc of ``value`` into ``canvas``."""
    h, w = canvas.shape
    m = int(np.ceil(r + 2 * soft)) + 1
    y0, y1, x0, x1 = max(0, int(y) - m), min(h, int(y) + m + 1), max(0, int(x) - m), min(w, int(x) + m + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(yy - y, xx - x)
    profile = value * np.clip(1.0 - np.maximum(d - r, 0) / soft, 0, 1)
    np.maximum(canvas[y0:y1, x0:x1], profile, out=canvas[y0:y1, x0:x1])


def _curve(rng: np.random.Generator, y: float, x: float, length: float, step: float = 0.7) -> np.ndarray:
    """Points of a smooth random curve starting at (y, x)."""
    n = max(2, int(length / step))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.06, n))
    return np.stack([y + np.cumsum(step * np.sin(heading)), x + np.cumsum(step * np.cos(heading))], axis=1)


def _draw_path(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    path = np.zeros(shape, bool)
    iy, ix = np.rint(points[:, 0]).astype(int), np.rint(points[:, 1]).astype(int)
    ok = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
    path[iy[ok], ix[ok]] = True
    return path


def _band(path: np.ndarray, half_width: float, soft: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(soft profile in [0, 1], hard mask) of a line ``half_width`` pixels either side of ``path``."""
    d = ndi.distance_transform_edt(~path)
    return np.clip(1.0 - np.maximum(d - half_width, 0) / soft, 0, 1), d <= half_width + 0.5


@dataclass
class _Layout:
    """Where things are, shared by the brightfield and fluorescence renderings."""

    tissue: np.ndarray
    cells: np.ndarray          # cell "concentration" in [0, 1.x], soft discs
    cell_truth: np.ndarray     # bool
    centres: list[tuple[float, float, float]]
    edge: np.ndarray           # profile of edge staining
    vessels: np.ndarray        # profile of stained vessels
    fold: np.ndarray           # profile of a tissue fold
    bubble_rim: np.ndarray     # profile of bubble rims
    bubble_inside: np.ndarray  # bool
    dust: np.ndarray           # profile of dust specks
    artefact_truth: np.ndarray  # bool
    artefact_parts: dict[str, np.ndarray]


def _layout(rng: np.random.Generator, shape: tuple[int, int], cells_per_kpx: float) -> _Layout:
    h, w = shape
    tissue, _ = _brain_outline(rng, shape)
    inner = ndi.binary_erosion(tissue, iterations=6)
    outline = tissue & ~ndi.binary_erosion(tissue, iterations=1)

    # Edge staining: arcs of the outline, 1-2.5 px wide, just inside the tissue.
    edge = np.zeros(shape)
    edge_mask = np.zeros(shape, bool)
    rim_points = np.argwhere(outline)
    for _ in range(int(rng.integers(3, 6))):
        cy, cx = rim_points[rng.integers(len(rim_points))]
        near = np.hypot(rim_points[:, 0] - cy, rim_points[:, 1] - cx) < rng.uniform(0.08, 0.2) * w
        path = np.zeros(shape, bool)
        path[rim_points[near, 0], rim_points[near, 1]] = True
        prof, mask = _band(path, rng.uniform(1.0, 2.5))
        edge = np.maximum(edge, prof * tissue)
        edge_mask |= mask & tissue

    # Stained vessels: short thin curves inside the tissue.
    vessels = np.zeros(shape)
    vessel_mask = np.zeros(shape, bool)
    inner_points = np.argwhere(inner)
    for _ in range(int(rng.integers(4, 8))):
        y, x = inner_points[rng.integers(len(inner_points))]
        prof, mask = _band(_draw_path(shape, _curve(rng, y, x, rng.uniform(25, 70))), rng.uniform(0.6, 1.1))
        vessels = np.maximum(vessels, prof * tissue)
        vessel_mask |= mask & tissue

    # A fold: a wide band of doubled tissue across part of one hemisphere.
    y, x = inner_points[rng.integers(len(inner_points))]
    fold, fold_mask = _band(_draw_path(shape, _curve(rng, y, x, rng.uniform(0.15, 0.3) * w, step=0.5)),
                            rng.uniform(2.5, 4.0), soft=1.5)
    fold, fold_mask = fold * tissue, fold_mask & tissue

    # Bubbles: circles with a dark thin rim, anywhere on the slide.
    yy, xx = np.mgrid[0:h, 0:w]
    bubble_rim = np.zeros(shape)
    bubble_inside = np.zeros(shape, bool)
    for _ in range(int(rng.integers(1, 3))):
        by, bx, br = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w, rng.uniform(10, 22)
        d = np.hypot(yy - by, xx - bx)
        bubble_rim = np.maximum(bubble_rim, np.clip(1.0 - np.abs(d - br) / 1.3, 0, 1))
        bubble_inside |= d < br - 1
    rim_mask = bubble_rim > 0.5

    # Dust: irregular specks, on tissue and slide.
    dust = np.zeros(shape)
    for _ in range(int(rng.integers(8, 16))):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        for _ in range(int(rng.integers(1, 4))):
            _disk_stamp(dust, y0 + rng.normal(0, 1.2), x0 + rng.normal(0, 1.2), rng.uniform(0.6, 1.8), 1.0, 0.6)
    dust_mask = dust > 0.5

    parts = {"edge staining": edge_mask, "vessel": vessel_mask, "fold": fold_mask, "bubble": rim_mask,
             "dust": dust_mask}
    artefact = np.zeros(shape, bool)
    for m in parts.values():
        artefact |= m

    # Cells: soft discs 3-7 px across, away from artefacts and from each other.
    target = int(round(cells_per_kpx * tissue.sum() / 1000.0))
    occupied = ndi.binary_dilation(artefact, iterations=3) | ~inner
    cells = np.zeros(shape)
    centres: list[tuple[float, float, float]] = []
    tries = 0
    while len(centres) < target and tries < 40 * target:
        tries += 1
        y, x = inner_points[rng.integers(len(inner_points))] + rng.uniform(-0.5, 0.5, 2)
        r = rng.uniform(1.6, 3.4)
        iy, ix = int(round(y)), int(round(x))
        m = int(np.ceil(r + 2))
        if occupied[max(0, iy - m) : iy + m + 1, max(0, ix - m) : ix + m + 1].any():
            continue
        _disk_stamp(cells, y, x, r, rng.uniform(0.75, 1.25))
        win = (slice(max(0, iy - m - 1), iy + m + 2), slice(max(0, ix - m - 1), ix + m + 2))
        occupied[win] |= (yy[win] - y) ** 2 + (xx[win] - x) ** 2 <= (r + 2) ** 2
        centres.append((y, x, r))
    cell_truth = cells >= 0.3  # the visibly stained part of the soft edge
    return _Layout(tissue, cells, cell_truth, centres, edge, vessels, fold, bubble_rim, bubble_inside,
                   dust, artefact & ~cell_truth, parts)


def _truth(layout: _Layout) -> np.ndarray:
    truth = np.zeros(layout.tissue.shape, np.uint8)
    truth[layout.artefact_truth] = 2
    truth[layout.cell_truth] = 1
    return truth


def _annotations(rng: np.random.Generator, layout: _Layout, truth: np.ndarray,
                 stain_like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse pixel labels and object label strokes, as a user would paint them."""
    shape = truth.shape
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    # Stain: a dot in every third cell, and a few pixels of stain-coloured artefacts.
    for y, x, r in layout.centres[::3]:
        labels[(np.hypot(yy - y, xx - x) <= max(1.0, r - 1.2)) & layout.cell_truth] = 2
    stain_art = np.argwhere(stain_like & layout.artefact_truth)
    if len(stain_art):
        pick = stain_art[rng.choice(len(stain_art), min(40, len(stain_art)), replace=False)]
        labels[pick[:, 0], pick[:, 1]] = 2
    # Background: strokes in tissue (also over the diffuse staining), on the slide, on dust.
    far = ndi.distance_transform_edt(truth == 0) > 3
    for region, n in ((far & layout.tissue, 30), (far & ~layout.tissue, 8)):
        cand = np.argwhere(region)
        for y, x in cand[rng.choice(len(cand), min(n, len(cand)), replace=False)]:
            run = slice(x, min(w, x + 18))
            labels[y, run][region[y, run]] = 1
    # Object labels: strokes of 3 pixels in a few cells and in a few artefacts.
    object_labels = np.zeros(shape, np.uint8)
    for y, x, _ in layout.centres[1:40:4]:
        iy, ix = int(round(y)), int(round(x))
        object_labels[iy, max(0, ix - 1) : ix + 2][layout.cell_truth[iy, max(0, ix - 1) : ix + 2]] = 1
    for name in ("edge staining", "vessel", "fold"):
        ids, n = ndi.label(layout.artefact_parts[name] & (truth == 2) & stain_like)
        for i in range(1, min(n, 2) + 1):
            pixels = np.argwhere(ids == i)
            if len(pixels) >= 6:
                mid = len(pixels) // 2
                object_labels[pixels[mid : mid + 3, 0], pixels[mid : mid + 3, 1]] = 2
    return labels, object_labels


def make_dab_section(seed: int, shape: tuple[int, int] = (448, 576), cells_per_kpx: float = 2.0) -> RgbSection:
    """A brightfield DAB section (RGB uint8) with haematoxylin counterstain and artefacts.

    Parameters
    ----------
    seed : int
        The same seed gives the same section.
    shape : (int, int)
        Rows and columns; at least 192 × 192.
    cells_per_kpx : float
        Stained cells per 1000 tissue pixels (2.0 ≈ 80 cells/mm² at 5 µm/px).

    Returns
    -------
    RgbSection
    """
    _check_shape(shape)
    rng = np.random.default_rng(seed)
    lay = _layout(rng, shape, cells_per_kpx)
    tissue = lay.tissue.astype(np.float64)
    # Haematoxylin: tissue with texture, a denser cortical band, and nuclei.
    depth = ndi.distance_transform_edt(lay.tissue)
    cortex = np.exp(-depth / 18.0)
    nuclei_points = (rng.random(shape) < 0.015) & lay.tissue
    nuclei = ndi.gaussian_filter(nuclei_points.astype(np.float64), 0.7) * 3.0
    haem = tissue * (0.22 + 0.05 * _noise(rng, shape, 8) + 0.03 * _noise(rng, shape, 1.5) + 0.10 * cortex)
    haem += nuclei * tissue * rng.uniform(0.6, 1.0)
    haem += 0.35 * lay.fold
    # DAB: cells, edge staining, vessels, fold, and diffuse non-specific background.
    diffuse = tissue * np.clip(0.05 + 0.06 * _noise(rng, shape, 30), 0, 0.16)
    dab = np.maximum.reduce([lay.cells * 1.15, lay.edge * rng.uniform(0.9, 1.2), lay.vessels * 1.0]) + diffuse
    dab += 0.45 * lay.fold
    neutral = 0.9 * lay.bubble_rim + 1.3 * lay.dust
    od = (np.clip(haem, 0, None)[..., None] * _HAEMATOXYLIN + np.clip(dab, 0, None)[..., None] * _DAB
          + neutral[..., None] * _NEUTRAL + 0.025)
    od[lay.bubble_inside] *= 0.85  # bubbles: lighter inside
    rgb = 250.0 * np.power(10.0, -od) * (0.98 + 0.02 * _noise(rng, shape, 60))[..., None]
    rgb += rng.normal(0, 2.0, rgb.shape)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    truth = _truth(lay)
    stain_like = (lay.edge > 0.5) | (lay.vessels > 0.5) | lay.cell_truth | (lay.fold > 0.5)
    labels, object_labels = _annotations(rng, lay, truth, stain_like)
    return RgbSection(image, truth, labels, object_labels, lay.tissue, len(lay.centres))


def make_fluorescence_section(seed: int, shape: tuple[int, int] = (448, 576),
                              cells_per_kpx: float = 2.0) -> RgbSection:
    """A fluorescence section (RGB uint8): green labelled cells, blue nuclei, autofluorescence.

    Artefacts glow in every channel (edge autofluorescence, a fold, dust, bubble rims);
    labelled cells only in green. Parameters as :func:`make_dab_section`.
    """
    _check_shape(shape)
    rng = np.random.default_rng(seed + 7919)
    lay = _layout(rng, shape, cells_per_kpx)
    tissue = lay.tissue.astype(np.float64)
    auto = tissue * (22 + 4 * _noise(rng, shape, 10))
    nuclei = ndi.gaussian_filter(((rng.random(shape) < 0.03) & lay.tissue).astype(np.float64), 0.7) * 6.0
    glow = 150 * np.maximum.reduce([lay.edge, 0.7 * lay.fold, lay.dust * 1.4, 0.6 * lay.bubble_rim])
    r = 6 + auto + glow
    g = 6 + auto * 1.1 + 170 * lay.cells + glow + tissue * np.clip(6 * _noise(rng, shape, 30), 0, 12)
    b = 8 + auto * 0.9 + 90 * nuclei * tissue + glow
    image = np.stack([r, g, b], axis=-1) + rng.normal(0, 2.5, shape + (3,))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    truth = _truth(lay)
    # In fluorescence the stain-coloured things are the cells; edge glow is white, not green,
    # but still bright in green: the user labels it Stain and lets object classification drop it.
    stain_like = lay.cell_truth | (lay.edge > 0.5) | (lay.fold > 0.5)
    labels, object_labels = _annotations(rng, lay, truth, stain_like)
    return RgbSection(image, truth, labels, object_labels, lay.tissue, len(lay.centres))


def _check_shape(shape: tuple[int, int]) -> None:
    if len(shape) != 2 or shape[0] < 192 or shape[1] < 192:
        raise ValueError(f"shape {shape} is too small; use at least (192, 192)")
