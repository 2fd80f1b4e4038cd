"""``pyquint lut``: apply, show, convert and make lookup tables; Nutil colour tables."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..batch import same_file
from ..errors import InputError
from ..io import write_png
from ..lut import (
    GLASBEY_VARIANTS,
    apply_files,
    check_nutil_names,
    colour_table,
    glasbey_lut,
    legend_image,
    lut_ramp,
    lut_with_overrides,
    nutil_name,
    write_colour_table,
    write_lut,
    write_palette_png,
)

_lut_option = click.option(
    "--lut", "lut_name", default="glasbey", show_default=True,
    help="LUT name (searched in --fiji's luts/, then pyquint's lut/; 'glasbey on dark' = "
         "glasbey_on_dark.lut) or a path to a .lut file (raw, NIH Image or text).",
)
_fiji_option = click.option(
    "--fiji", type=click.Path(file_okay=False), default=None,
    help="Fiji.app/ImageJ folder whose luts/ is searched first (default: $FIJI_HOME or $PYQUINT_FIJI).",
)
_set_option = click.option(
    "--set", "sets", multiple=True, metavar="INDEX=R,G,B",
    help="Override one LUT entry, e.g. --set 2=255,0,0 --set 1=0,0,0 (repeatable).",
)


@click.group("lut")
def cli() -> None:
    """Lookup tables: colour label images for Nutil, as Fiji's Glasbey LUT does.

    ilastik's segmentations hold labels 1..N and look black; Nutil needs each class in one
    RGB colour. `pyquint lut apply` writes palette PNGs exactly as ImageJ does after
    Image > Lookup Tables > glasbey and File > Save As > PNG.
    """


@cli.command("apply")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@_lut_option
@_fiji_option
@_set_option
@click.option("--rgb", is_flag=True, help="Write 24-bit RGB PNGs instead of palette (indexed) PNGs.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder; each output is named after its input, with .png.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them, so a rerun resumes).")
@click.option("--engine", type=click.Choice(["python", "imagej"]), default="python", show_default=True,
              help="'python': Pillow, no Java. 'imagej': a real ImageJ via pyquint.imagej (same pixels).")
@click.option("--check-names", is_flag=True,
              help="Stop before any work if an output name breaks Nutil's/PyNutil's rules (_s<digits> ids).")
@click.option("--nutil-names", is_flag=True,
              help="Name outputs so that Nutil accepts them: ilastik's '_Simple Segmentation' part "
                   "dropped, spaces and dots -> '_' (brain_s001_Simple Segmentation.png -> brain_s001.png).")
@click.option("--classes", default=None, metavar="C1,C2,...",
              help="Colour only these label values; all others become index 0 (the LUT's first "
                   "colour), e.g. --classes 1 for the cells of an Object Predictions image.")
def apply_cmd(images, lut_name, fiji, sets, rgb, out_dir, overwrite, engine, check_names, nutil_names,
              classes) -> None:
    """Colour label images (files or folders) with a LUT and write PNGs to --out.

    Labels must be 0..255 (uint8; 16-bit with small values is converted exactly, with a
    warning, where ImageJ would rescale). Outputs are written atomically and never over an
    input; existing outputs are skipped unless --overwrite. Output names Nutil would refuse
    get a warning before any work (--nutil-names fixes them, --check-names stops).
    """
    if engine == "imagej" and rgb:
        raise click.UsageError("--rgb is not available with --engine imagej (ImageJ writes palette PNGs)")
    lut = lut_with_overrides(lut_name, fiji, sets)
    result = apply_files(images, out_dir, lut, rgb=rgb, classes=_parse_classes(classes),
                         nutil_names=nutil_names, check_names=check_names, overwrite=overwrite,
                         imagej_apply=_imagej_backend() if engine == "imagej" else None,
                         report=lambda problem: click.echo(f"warning: {problem}", err=True))
    if result.name_problems and not nutil_names:
        click.echo("warning: Nutil will refuse these names; rerun with --nutil-names to write e.g. "
                   f"{nutil_name(result.outputs[0].name)}", err=True)
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"{len(result.written)} written, {result.skipped} skipped (already there) -> {out_dir}", err=True)


def _parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: comma-separated label values, e.g. 1 or 1,2",
                                 param_hint="--classes") from None
    if not values or any(not 1 <= v <= 255 for v in values):
        raise click.BadParameter(f"{text!r}: label values 1..255", param_hint="--classes")
    return values


def _imagej_backend():
    try:
        from .. import imagej  # noqa: PLC0415 - optional, heavy (Java)
    except ImportError as exc:
        raise InputError(f"--engine imagej needs pyquint.imagej, which cannot be imported ({exc})") from exc
    func = getattr(imagej, "apply_lut_imagej", None)
    if func is None:
        raise InputError("--engine imagej: pyquint.imagej has no apply_lut_imagej in this build")
    return func


@cli.command("show")
@click.argument("name")
@_fiji_option
@_set_option
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="PNG to write: the LUT as ImageJ's 256 x 32 ramp (palette PNG).")
@click.option("--height", default=32, show_default=True, type=click.IntRange(1, 4096))
def show_cmd(name, fiji, sets, out_path, height) -> None:
    """Render a LUT as a picture, like ImageJ opening a LUT with no image open."""
    lut = lut_with_overrides(name, fiji, sets)
    write_palette_png(out_path, lut_ramp(256, height), lut)
    click.echo(f"{lut.name} -> {out_path}", err=True)


@cli.command("convert")
@click.argument("source")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["binary", "text"]), default="binary", show_default=True,
              help="binary: 768-byte raw LUT (what ImageJ's Save As > LUT writes); text: index r g b table.")
@_fiji_option
@_set_option
@click.option("--overwrite", is_flag=True, help="Replace DEST if it exists.")
def convert_cmd(source, dest, fmt, fiji, sets, overwrite) -> None:
    """Read a LUT (any ImageJ format, or a name) and write it as binary or text.

    With --set this makes a custom LUT, e.g. `pyquint lut convert glasbey mine.lut --set 2=255,0,0`.
    """
    if Path(source).exists() and same_file(source, dest):
        raise InputError(f"{dest}: would overwrite the input; choose another name")
    if Path(dest).exists() and not overwrite:
        raise InputError(f"{dest}: exists; add --overwrite to replace it")
    lut = lut_with_overrides(source, fiji, sets)
    write_lut(lut, dest, fmt)
    click.echo(f"{lut.name} -> {dest} ({fmt})", err=True)


@cli.command("make-glasbey")
@click.option("--out", "out_dir", default="pyquint/lut/tables", show_default=True, type=click.Path(file_okay=False),
              help="Folder for glasbey.lut, glasbey_on_dark.lut, glasbey_inverted.lut.")
@click.option("--variant", "variants", multiple=True,
              type=click.Choice(["glasbey", "glasbey_on_dark", "glasbey_inverted"]),
              help="Only these variants (default: all three).")
@click.option("--format", "fmt", type=click.Choice(["binary", "text"]), default="binary", show_default=True)
def make_glasbey_cmd(out_dir, variants, fmt) -> None:
    """Regenerate pyquint's Glasbey LUTs with its own generator (about 20 s).

    glasbey: white first, CIELAB (D50); glasbey_on_dark: black first, CAM02-UCS;
    glasbey_inverted: glasbey inverted and quantised as ImageJ's 8-bit Color does.
    """
    for variant in variants or GLASBEY_VARIANTS:
        path = write_lut(glasbey_lut(variant, cached=False), Path(out_dir) / f"{variant}.lut", fmt)
        click.echo(f"{variant} -> {path}", err=True)


@cli.command("nutil-table")
@_lut_option
@_fiji_option
@_set_option
@click.option("--class", "classes", multiple=True, required=True, metavar="ID=NAME",
              help="A class and its name, e.g. --class 1=background --class 2=cells (repeatable).")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the table as .csv or .json (default: print JSON).")
@click.option("--legend", type=click.Path(dir_okay=False), default=None,
              help="Also write a legend PNG (swatch, name, R,G,B per class).")
def nutil_table_cmd(lut_name, fiji, sets, classes, out_path, legend) -> None:
    """The RGB colour of each class for Nutil, and PyNutil's pixel_id (B,G,R order)."""
    names: dict[int, str] = {}
    for text in classes:
        key, _, name = text.partition("=")
        try:
            names[int(key)] = name or f"class {key}"
        except ValueError:
            raise click.BadParameter(f"{text!r}: use ID=NAME, e.g. 2=cells", param_hint="--class") from None
    lut = lut_with_overrides(lut_name, fiji, sets)
    rows = colour_table(lut, list(names), names)
    if out_path:
        write_colour_table(out_path, rows)
    else:
        click.echo(json.dumps(rows, indent=2))
    if legend:
        write_png(legend, np.asarray(legend_image(names, lut, list(names)).convert("RGB")))


@cli.command("check-names")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--any-type", is_flag=True,
              help="Do not require .png (e.g. for section images rather than segmentations).")
def check_names_cmd(paths, any_type) -> None:
    """Check file names (files or folders) against Nutil's and PyNutil's rules.

    Segmentations must be PNG files with one '_s<digits>' section id and unique numbers.

    Prints every problem and exits with status 1 if there is any.
    """
    names: list[Path] = []
    for p in map(Path, paths):
        names.extend(sorted(p.iterdir()) if p.is_dir() else [p])
    problems = check_nutil_names([n for n in names if not n.is_dir()], require_png=not any_type)
    for line in problems:
        click.echo(line)
    if problems:
        raise SystemExit(1)
    click.echo(f"{len(names)} names OK", err=True)
