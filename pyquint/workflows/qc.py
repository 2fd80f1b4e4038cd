"""Quality control for the QUINT pipeline: Nutil-style counts, montage, HTML report, provenance.

The counts here are computed from the *written PNG files*, read back the way Nutil and PyNutil
read them (palette expanded to RGB), so the report states what those tools will see:

- PyNutil: exact colour match, 4-connected objects, every pixel of the image considered.
- Nutil Quantifier: colour match within ±2 per channel, 4-connected flood fill; seeds on the
  image border are skipped and the last row/column is never filled (Nutil's 1-pixel edge effect).

For pyquint's exact palette colours the two agree unless an object touches the image border.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from ..io import atomic_output, write_png

__all__ = [
    "ColourCount",
    "count_colour_objects",
    "file_sha256",
    "make_montage",
    "overlay",
    "pixel_f1",
    "provenance",
    "read_png_rgb",
    "write_report",
]

_FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


class ColourCount(NamedTuple):
    """Objects and pixels of one RGB colour, as a Nutil-like tool counts them."""

    objects: int
    pixels: int


def read_png_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG as Nutil does (Qt QImage): palette and grey images expanded to RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def count_colour_objects(rgb: np.ndarray, colour: Sequence[int], *, tolerance: int = 0,
                         nutil_edges: bool = False) -> ColourCount:
    """Count 4-connected objects of one colour in an RGB image.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    colour : (r, g, b)
    tolerance : int
        Per-channel tolerance: 0 as PyNutil, 2 as Nutil Quantifier.
    nutil_edges : bool
        Reproduce Nutil's edge effect: the last row and column are never filled and an
        object is only found from a seed that is not on the image border.
    """
    diff = np.abs(rgb.astype(np.int16) - np.asarray(colour, np.int16).reshape(1, 1, 3))
    mask = np.all(diff <= tolerance, axis=-1)
    if nutil_edges:
        mask[-1, :] = False
        mask[:, -1] = False
    labels, n = ndi.label(mask, structure=_FOUR_CONNECTED)
    if n == 0:
        return ColourCount(0, 0)
    if nutil_edges:
        interior = np.zeros_like(mask)
        interior[1:-1, 1:-1] = mask[1:-1, 1:-1]
        seeded = np.unique(labels[interior])
        seeded = seeded[seeded > 0]
        keep = np.isin(labels, seeded)
        return ColourCount(int(seeded.size), int(keep.sum()))
    return ColourCount(int(n), int(mask.sum()))


def pixel_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    """F1 score (Dice) of two boolean masks; 1.0 when both are empty."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    tp = np.count_nonzero(predicted & truth)
    denom = np.count_nonzero(predicted) + np.count_nonzero(truth)
    return 1.0 if denom == 0 else 2.0 * tp / denom


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _to_rgb_thumbnail(image: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        lo, hi = float(np.min(image)), float(np.max(image))
        image = np.zeros(image.shape, np.uint8) if hi <= lo else (
            (image.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    im = Image.fromarray(np.ascontiguousarray(image))
    im = im.convert("RGB")
    width = max(1, round(im.width * height / im.height))
    return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))


def overlay(raw: np.ndarray, seg_rgb: np.ndarray, coloured: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The segmentation drawn over the section: coloured pixels blended in, outlined.

    Parameters
    ----------
    raw : (H, W[, C]) image
    seg_rgb : (H, W, 3) uint8, the written segmentation as RGB
    coloured : (H, W) bool, the pixels that carry a class colour (not index 0)
    alpha : float
        Weight of the segmentation colour inside objects; their 1-pixel outline is opaque.
    """
    base = _to_rgb_thumbnail(raw, raw.shape[0]).astype(np.float64)
    out = base.copy()
    out[coloured] = (1 - alpha) * base[coloured] + alpha * seg_rgb[coloured]
    edge = coloured & ~ndi.binary_erosion(coloured, structure=_FOUR_CONNECTED)
    out[edge] = seg_rgb[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_montage(rows: Sequence[tuple], height: int = 160) -> np.ndarray:
    """A QC montage: for each section its name, the raw image, the coloured segmentation and,
    when given, the segmentation drawn over the section.

    Parameters
    ----------
    rows : sequence of (name, raw image, RGB segmentation[, RGB overlay])
    height : int
        Height of each thumbnail in pixels.

    Returns
    -------
    (H, W, 3) uint8 RGB image.
    """
    from PIL import Image, ImageDraw

    caption = 14
    tiles = []
    for name, raw, seg, *rest in rows:
        panels = [_to_rgb_thumbnail(raw, height), _to_rgb_thumbnail(seg, height)]
        panels += [_to_rgb_thumbnail(rest[0], height)] if rest else []
        gap = np.full((height, 6, 3), 255, np.uint8)
        parts = [panels[0]]
        for p in panels[1:]:
            parts += [gap, p]
        body = np.concatenate(parts, axis=1)
        canvas = Image.new("RGB", (body.shape[1], height + caption), "white")
        canvas.paste(Image.fromarray(body), (0, caption))
        what = "raw | segmentation" + (" | overlay" if rest else "")
        ImageDraw.Draw(canvas).text((2, 1), f"{name}: {what}", fill=(0, 0, 0))
        tiles.append(np.asarray(canvas))
    if not tiles:
        return np.full((height, height, 3), 255, np.uint8)
    width = max(t.shape[1] for t in tiles)
    padded = [np.pad(t, ((0, 6), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    return np.concatenate(padded, axis=0)


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("pyquint", "numpy", "scipy", "scikit-image", "scikit-learn", "h5py", "tifffile",
                 "Pillow", "opencv-python-headless", "numba", "click"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def provenance(parameters: dict, inputs: Sequence[str | os.PathLike], model: str | os.PathLike | None,
               extra: dict | None = None) -> dict:
    """What produced a run's outputs: versions, parameters, seeds, input and model hashes."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": _versions(),
        "parameters": parameters,
        "inputs": {os.fspath(p): file_sha256(p) for p in inputs},
        "model": None if model is None else {"path": os.fspath(model), "sha256": file_sha256(model)},
        **(extra or {}),
    }


def _png_data_uri(rgb: np.ndarray) -> str:
    buf = write_png(io.BytesIO(), rgb)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_report(path: str | os.PathLike, title: str, table: Sequence[dict], montage: np.ndarray,
                 legend: np.ndarray | None, parameters: dict, *, intro_html: str = "",
                 after_table_html: str = "") -> Path:
    """Write a small self-contained HTML report (images embedded) atomically.

    ``intro_html`` goes above the table and ``after_table_html`` below it (already-escaped
    HTML built by the caller, e.g. the next-step box and notes on the columns).
    """
    columns: list[str] = []
    for row in table:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in table
    )
    legend_html = f'<h2>Legend</h2><img src="{_png_data_uri(legend)}" alt="legend">' if legend is not None else ""
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}} th{{background:#eee}}
pre{{background:#f6f6f6;padding:1em}}
.next{{border:2px solid #c00;background:#fff6f6;padding:0.5em 1.5em;max-width:60em}}
.next code{{font-size:120%;background:#fff;padding:0 4px}}</style></head><body>
<h1>{html.escape(title)}</h1>
{intro_html}
<h2>Sections</h2><table><tr>{head}</tr>{body}</table>
{after_table_html}
{legend_html}
<h2>QC montage</h2><img src="{_png_data_uri(montage)}" alt="QC montage">
<h2>Parameters</h2><pre>{html.escape(json.dumps(parameters, indent=2, default=str))}</pre>
</body></html>
"""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
