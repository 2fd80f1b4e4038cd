"""The run-level outputs of the QUINT pipeline: legend, colour table, summary, montage, report.

The report is written for the person who takes the segmentations to Nutil or PyNutil: a
row per section with the area of every class (and of index 0, the pixels not coloured for
Nutil), the objects the object step kept and rejected and why, what the F1 was computed
against, the pixel size when known, and a box with the next step and the exact colour to type.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np

from ..io import atomic_output, write_image
from ..lut import colour_table, legend_image, write_colour_table
from . import qc
from .config import QuintConfig
from .sections import SEGMENTATION_DIR, load_section

__all__ = ["write_run_outputs"]

LEGEND_SWATCH = 48     # px: twice the CLI legend's swatch
LEGEND_FONT_SIZE = 22  # pt, Pillow's scalable default font


def _class_label(class_names: list[str], c: int) -> str:
    return class_names[c - 1] if c - 1 < len(class_names) else f"class {c}"


def _summary_rows(result, config: QuintConfig, class_names: list[str], coloured: list[int],
                  n_classes: int, um_per_px: float | None) -> list[dict]:
    o = config.objects
    rows = []
    for s in result.sections:
        row: dict[str, object] = {"section": s.name}
        for c in range(1, n_classes + 1):
            key = f"{_class_label(class_names, c)} (class {c}) px"
            row[key] = s.class_pixels.get(c, "n/a (resumed)")
            if um_per_px is not None and c in s.class_pixels:
                row[f"{_class_label(class_names, c)} mm²"] = round(s.class_pixels[c] * um_per_px**2 / 1e6, 4)
        row["index 0 (not coloured) px"] = s.index0_pixels
        if o.enabled:
            row["objects found"] = "n/a (resumed)" if s.objects_found is None else s.objects_found
            row["objects kept"] = s.objects.get(o.channel, "")
            for reason, n in s.objects_rejected.items():
                row[f"rejected: {reason}"] = n
        for c in coloured:
            name = _class_label(class_names, c)
            row[f"{name} objects (PyNutil)"] = s.pynutil_objects[c]
            row[f"{name} objects (Nutil ±2)"] = s.nutil_objects[c]
        if s.f1 is not None:
            row["pixel F1"] = round(s.f1, 4)
        row["resumed"] = s.resumed
        rows.append(row)
    return rows


def _next_step_html(result, colour_rows: list[dict], seg_dir: Path) -> str:
    items = "".join(
        f"<li>class {r['class']} <b>{html.escape(str(r['name']))}</b>: type "
        f"<code>{r['nutil_rgb']}</code> in Nutil ({r['hex']}); PyNutil <code>colour=[{r['nutil_rgb']}]</code> "
        f"(B,G,R <code>pixel_id</code> {list(r['pynutil_pixel_id'])} for readers that use OpenCV's order)</li>"
        for r in colour_rows)
    return (f'<div class="next"><h2>Next step in Nutil / PyNutil</h2>'
            f"<p>Segmentation folder: <code>{html.escape(str(seg_dir))}</code> "
            f"({len(result.sections)} PNG files, Nutil-safe names: the <code>_sXXX</code> id kept, no spaces).</p>"
            f"<p>Object colour to type:</p><ul>{items}</ul>"
            "<p>With the atlas registration of these sections (QuickNII/VisuAlign JSON), Nutil Quantifier "
            "(or PyNutil) counts the objects of that colour per atlas region. pyquint can run PyNutil itself: "
            "<code>pyquint quint run ... --alignment registration.json --atlas ...</code>.</p></div>")


def _notes_html(config: QuintConfig, class_names: list[str], coloured: list[int], um_per_px: float | None,
                truth_dir: Path | None, truth_value: int, evaluate_class: int) -> str:
    o = config.objects
    not_coloured = [f"{_class_label(class_names, c)} (class {c})" for c in range(1, len(class_names) + 1)
                    if c not in coloured]
    notes = [
        "Areas are in pixels of the segmentation" + (f" (sections downscaled by {config.input.resize})"
                                                     if config.input.resize not in (None, 1) else "") + ".",
        "Index 0 of the PNGs holds every pixel not coloured for Nutil"
        + (f": {', '.join(not_coloured)}." if not_coloured else " (every class is coloured, so none)."),
    ]
    if um_per_px is not None:
        notes.append(f"Pixel size: {um_per_px:.4g} µm per segmentation pixel (input.pixel_size "
                     f"{config.input.pixel_size} µm per section pixel).")
    else:
        notes.append("Pixel size: unknown (give --pixel-size, µm per pixel of the section files, for areas in mm²).")
    if o.enabled:
        notes.append(
            f"Objects: 4-connected regions where the smoothed (σ {o.sigma}) probability of "
            f"{_class_label(class_names, o.channel)} (class {o.channel}) is at least {o.threshold}; "
            f"'rejected: size filter' are those outside {o.min_size}..{o.max_size} px, "
            "'rejected: classified ...' those the object classifier put in another class than "
            f"'keep' (class {o.keep_class}). Kept objects are the coloured objects Nutil counts.")
    if truth_dir is not None:
        notes.append(
            f"Pixel F1 (Dice) of class {evaluate_class} ({_class_label(class_names, evaluate_class)}) in the "
            f"written PNGs against the pixels equal to {truth_value} in the ground truth images of "
            f"{html.escape(str(truth_dir))} (same names as the sections).")
    return "<h2>How to read the table</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"


def _regions_html(result, config: QuintConfig, class_names: list[str]) -> str:
    if result.regions is None:
        return ""
    shown = [r for r in result.regions if r.get("object_count", 0) or r.get("pixel_count", 0)]
    cols = [c for c in ("idx", "name", "object_count", "pixel_count", "region_area", "area_fraction")
            if any(c in r for r in shown)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(qc._fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in shown)
    name = _class_label(class_names, result.region_class)
    total = sum(int(r.get("object_count", 0)) for r in result.regions)
    return (f"<h2>Per-region counts (PyNutil)</h2><p>PyNutil on <code>segmentations/</code> with "
            f"<code>{html.escape(str(config.pynutil.alignment))}</code> and atlas "
            f"<code>{html.escape(str(config.pynutil.atlas or config.pynutil.atlas_volume))}</code>: objects "
            f"of class {result.region_class} ({html.escape(name)}), counted by centroid, {total} in all; "
            f"regions without objects or pixels are left out here (all are in "
            f"<code>pynutil/region_counts.csv</code>).</p><table><tr>{head}</tr>{body}</table>")


def write_run_outputs(result, config: QuintConfig, sections: list[Path], class_names: list[str],
                      coloured: list[int], lut, n_classes: int, models: list[Path], *,
                      truth_dir: Path | None = None, truth_value: int = 1, evaluate_class: int = 2) -> None:
    """Write legend.png, nutil_colours.csv, summary.csv, qc_montage.png, report.html and
    provenance.json into the run's folder, recording them in ``result.files``."""
    out_dir = result.output_folder
    names = {c: _class_label(class_names, c) for c in coloured}
    legend = np.asarray(legend_image([names[c] for c in coloured], lut, coloured, swatch=LEGEND_SWATCH,
                                     font_size=LEGEND_FONT_SIZE, show_hex=True).convert("RGB"))
    result.files["legend"] = write_image(out_dir / "legend.png", legend, "yxc")
    colour_rows = colour_table(lut, classes=coloured, class_names=[names[c] for c in coloured])
    result.files["nutil_colours"] = write_colour_table(out_dir / "nutil_colours.csv", colour_rows)

    um_per_px = None
    if config.input.pixel_size is not None:
        um_per_px = config.input.pixel_size / (config.input.resize or 1.0)
    summary = _summary_rows(result, config, class_names, coloured, n_classes, um_per_px)
    result.files["summary"] = _write_csv(out_dir / "summary.csv", summary)

    rows_for_montage = []
    for section, s in zip(sections, result.sections):
        rgb = qc.read_png_rgb(s.output)
        over = qc.read_png_rgb(out_dir / "overlays" / s.output.name)
        rows_for_montage.append((s.name, load_section(section, config), rgb, over))
    montage = qc.make_montage(rows_for_montage, height=240)
    result.files["montage"] = write_image(out_dir / "qc_montage.png", montage, "yxc")
    parameters = config.to_dict()
    seg_dir = (out_dir / SEGMENTATION_DIR).resolve()
    result.files["report"] = qc.write_report(
        out_dir / "report.html", "pyquint QUINT segmentation report", summary, montage, legend, parameters,
        intro_html=_next_step_html(result, colour_rows, seg_dir),
        after_table_html=_notes_html(config, class_names, coloured, um_per_px, truth_dir, truth_value,
                                     evaluate_class) + _regions_html(result, config, class_names))
    prov = qc.provenance(parameters, sections, models[0] if models else None,
                         extra={"models": {str(p): qc.file_sha256(p) for p in models},
                                "seeds": {"pixel": config.pixel.seed, "objects": config.objects.seed}})
    path = out_dir / "provenance.json"
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(prov, indent=2, default=str))
    result.files["provenance"] = path


def _write_csv(path: Path, rows: list[dict]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
