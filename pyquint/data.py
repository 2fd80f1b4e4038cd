"""Deterministic synthetic brain-section images for tests, demos and benchmarks.

Each section imitates a downscaled DAB-stained brightfield section as QUINT users feed to
ilastik, reduced to one channel (the DAB/grey channel): a bright slide, an elliptical piece
of tissue with low-frequency texture and noise, round stained cells, and thin streaks of
edge staining that are exactly as dark as the cells (so only their shape tells them apart,
which is what object classification is for).

Every section comes with its ground truth and with sparse training labels, the way a user
would scribble them in ilastik:

- ``truth``: 0 = unstained (tissue or slide), 1 = stained cell, 2 = streak artefact;
- ``labels`` (pixel classification, ilastik convention 0 = unlabelled): 1 = background,
  2 = stain (cells *and* streaks: both are the same colour);
- ``object_labels`` (object classification): 1 = "label" (a cell), 2 = "artefact" (a streak),
  a few pixels inside a few objects.

File names follow Nutil's rules (``brain_s001.png``): see :func:`write_sample_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .io import write_image
from .sample_sections import make_dab_section, make_fluorescence_section

__all__ = ["Section", "make_section", "write_sample_dataset", "write_rgb_sample_dataset", "SAMPLE_CLASS_NAMES"]

#: Class names of the pixel labels (label value i+1 <-> name i).
SAMPLE_CLASS_NAMES = ("Background", "Stain")
#: Class names of the object labels.
SAMPLE_OBJECT_CLASS_NAMES = ("label", "artefact")

_SLIDE_LEVEL = 236.0
_TISSUE_LEVEL = 196.0
_STAIN_DEPTH = 128.0  # cells and streaks darken the tissue by the same amount


@dataclass
class Section:
    """One synthetic section and its annotations (all 2-D ``yx`` arrays)."""

    image: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    object_labels: np.ndarray
    cell_centres: list[tuple[int, int]] = field(default_factory=list)
    n_streaks: int = 0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return noise / (noise.std() + 1e-12)


def _disk(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_section(seed: int, shape: tuple[int, int] = (256, 320), n_cells: int | None = None,
                 n_streaks: int | None = None) -> Section:
    """Make one synthetic DAB-like section.

    Parameters
    ----------
    seed : int
        Seed of the random generator: the same seed gives the same section.
    shape : (int, int)
        Image size (rows, columns); at least 96 × 96.
    n_cells, n_streaks : int, optional
        Number of stained cells and of edge streaks (default: scaled with the area).

    Returns
    -------
    Section
        ``image`` (uint8), ``truth``, ``labels`` and ``object_labels`` (uint8).
    """
    h, w = shape
    if h < 96 or w < 96:
        raise ValueError(f"shape {shape} is too small; use at least (96, 96)")
    rng = np.random.default_rng(seed)
    area_scale = (h * w) / (256 * 320)
    n_cells = int(round(45 * area_scale)) if n_cells is None else n_cells
    n_streaks = max(3, int(round(5 * np.sqrt(area_scale)))) if n_streaks is None else n_streaks
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    # Tissue: an ellipse with a wobbly outline.
    cy, cx = h / 2 + rng.uniform(-0.03, 0.03) * h, w / 2 + rng.uniform(-0.03, 0.03) * w
    ry, rx = 0.42 * h, 0.44 * w
    angle = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
    wobble = 1 + 0.05 * np.sin(3 * angle + rng.uniform(0, 2 * np.pi)) + 0.03 * np.sin(
        5 * angle + rng.uniform(0, 2 * np.pi))
    radius = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) / wobble
    tissue = radius <= 1.0

    image = np.full(shape, _SLIDE_LEVEL)
    texture = 9.0 * _smooth_noise(rng, shape, 6.0) + 4.0 * _smooth_noise(rng, shape, 1.5)
    image[tissue] = _TISSUE_LEVEL + texture[tissue]

    # Stain: a darkness map in [0, 1] built from cells and streaks.
    darkness = np.zeros(shape)
    truth = np.zeros(shape, np.uint8)
    streak_mask = np.zeros(shape, bool)

    # Streaks: thin arcs of edge staining just inside the tissue outline.
    for _ in range(n_streaks):
        start = rng.uniform(-np.pi, np.pi)
        length = rng.uniform(0.35, 0.7)  # radians of arc
        inset = rng.uniform(0.88, 0.95)
        half_width = rng.uniform(0.9, 1.6)
        t = np.linspace(start, start + length, 400)
        py = cy + inset * ry * np.sin(t)
        px = cx + inset * rx * np.cos(t)
        path = np.zeros(shape, bool)
        iy, ix = np.round(py).astype(int), np.round(px).astype(int)
        ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        path[iy[ok], ix[ok]] = True
        dist = ndi.distance_transform_edt(~path)
        profile = np.clip(1.0 - np.maximum(dist - half_width, 0) / 1.2, 0, 1)
        darkness = np.maximum(darkness, profile)
        streak_mask |= dist <= half_width + 0.5
    truth[streak_mask & tissue] = 2

    # Cells: round blobs with a soft edge, away from streaks and from each other.
    centres: list[tuple[int, int]] = []
    occupied = ndi.binary_dilation(streak_mask, iterations=6) | ~ndi.binary_erosion(tissue, iterations=8)
    attempts = 0
    while len(centres) < n_cells and attempts < n_cells * 60:
        attempts += 1
        y0, x0 = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
        r = rng.uniform(3.0, 5.5)
        if occupied[y0, x0]:
            continue
        y_lo, y_hi, x_lo, x_hi = max(0, y0 - 12), min(h, y0 + 13), max(0, x0 - 12), min(w, x0 + 13)
        sy, sx = yy[y_lo:y_hi, x_lo:x_hi], xx[y_lo:y_hi, x_lo:x_hi]
        if occupied[y_lo:y_hi, x_lo:x_hi][_disk(sy, sx, y0, x0, r + 4)].any():
            continue
        d = np.sqrt((sy - y0) ** 2 + (sx - x0) ** 2)
        profile = np.clip(1.0 - np.maximum(d - r, 0) / 1.2, 0, 1)
        darkness[y_lo:y_hi, x_lo:x_hi] = np.maximum(darkness[y_lo:y_hi, x_lo:x_hi], profile)
        truth[y_lo:y_hi, x_lo:x_hi][d <= r + 0.5] = 1
        occupied[y_lo:y_hi, x_lo:x_hi] |= _disk(sy, sx, y0, x0, r + 3)
        centres.append((y0, x0))

    image = image - _STAIN_DEPTH * darkness * (0.92 + 0.08 * rng.random(shape))
    image = image + rng.normal(0.0, 3.0, shape)
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    labels = _pixel_labels(rng, truth, tissue, centres, shape)
    object_labels = _object_labels(truth, centres)
    return Section(image_u8, truth, labels, object_labels, centres, n_streaks)


def _pixel_labels(rng: np.random.Generator, truth: np.ndarray, tissue: np.ndarray,
                  centres: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
    """Sparse scribbles: stain dots in some cells and along a streak, background strokes."""
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    stain_distance = ndi.distance_transform_edt(truth == 0)
    for y0, x0 in centres[: max(4, len(centres) // 4)]:
        labels[_disk(yy, xx, y0, x0, 2.0) & (truth == 1)] = 2
        # A tight background arc just outside the cell, as users label the edge of an object.
        ring = _disk(yy, xx, y0, x0, 9.0) & (stain_distance >= 1.5) & (stain_distance < 2.5) & (yy > y0)
        labels[ring] = 1
    streak_pixels = np.argwhere(truth == 2)
    if len(streak_pixels):
        pick = streak_pixels[rng.choice(len(streak_pixels), min(30, len(streak_pixels)), replace=False)]
        labels[pick[:, 0], pick[:, 1]] = 2
    # Background: short horizontal strokes far from any stain, in tissue and on the slide.
    far = ndi.distance_transform_edt(truth == 0) > 2.5
    for region, n_strokes in ((far & tissue, 12), (far & ~tissue, 4)):
        candidates = np.argwhere(region)
        for y0, x0 in candidates[rng.choice(len(candidates), n_strokes, replace=False)]:
            x1 = min(w, x0 + 15)
            labels[y0, x0:x1][region[y0, x0:x1]] = 1
    return labels


def _object_labels(truth: np.ndarray, centres: list[tuple[int, int]]) -> np.ndarray:
    """A click in a few cells (1 = label) and in a few streaks (2 = artefact)."""
    labels = np.zeros(truth.shape, np.uint8)
    for y0, x0 in centres[:6]:
        labels[y0, x0] = 1
    streak_ids, n = ndi.label(truth == 2)
    for i in range(1, min(n, 3) + 1):
        pixels = np.argwhere(streak_ids == i)
        y0, x0 = pixels[len(pixels) // 2]
        labels[y0, x0] = 2
    return labels


def write_sample_dataset(folder: str | Path, n_sections: int = 3, seed: int = 0,
                         shape: tuple[int, int] = (256, 320), prefix: str = "brain") -> Path:
    """Write ``n_sections`` synthetic sections and their annotations as PNGs.

    Layout (names follow Nutil's ``_sXXX`` rule; the same name in every folder)::

        folder/sections/brain_s001.png        raw section (uint8 grey)
        folder/labels/brain_s001.png          sparse pixel labels (0, 1 = Background, 2 = Stain)
        folder/object_labels/brain_s001.png   object labels (0, 1 = label, 2 = artefact)
        folder/truth/brain_s001.png           ground truth (0, 1 = cell, 2 = streak)

    Returns the folder.
    """
    return _write_dataset(folder, [make_section(seed + i, shape) for i in range(n_sections)], prefix, "yx")


def _write_dataset(folder: str | Path, sections: list, prefix: str, image_axes: str) -> Path:
    """``folder/{sections,labels,object_labels,truth}/<prefix>_sNNN.png`` of each section."""
    folder = Path(folder)
    for i, section in enumerate(sections):
        name = f"{prefix}_s{i + 1:03d}.png"
        write_image(folder / "sections" / name, section.image, image_axes)
        for kind in ("labels", "object_labels", "truth"):
            write_image(folder / kind / name, getattr(section, kind), "yx")
    return folder


def write_rgb_sample_dataset(folder: str | Path, kind: str = "dab", n_sections: int = 3, seed: int = 0,
                             shape: tuple[int, int] = (448, 576), prefix: str = "brain") -> Path:
    """Write realistic RGB sections (:mod:`pyquint.sample_sections`) and their annotations.

    ``kind`` is ``"dab"`` (brightfield DAB on haematoxylin) or ``"fluorescence"``. Same layout
    and names as :func:`write_sample_dataset`; sections are RGB PNGs, truth is 0 = background,
    1 = labelled cell, 2 = artefact (edge staining, vessels, fold, bubbles, dust).
    """
    makers = {"dab": make_dab_section, "fluorescence": make_fluorescence_section}
    if kind not in makers:
        raise ValueError(f"kind {kind!r}: use 'dab' or 'fluorescence'")
    return _write_dataset(folder, [makers[kind](seed + i, shape) for i in range(n_sections)], prefix, "yxc")
