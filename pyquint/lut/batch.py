"""Colouring label images over files, as ``pyquint lut apply`` runs it (the CLI only parses
options and prints), and the ``INDEX=R,G,B`` colour overrides every command accepts.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import collect_inputs, guard_outputs, progress
from ..errors import InputError
from ..io import split_h5_path
from ..naming import check_distinct_outputs
from .apply import read_labels, write_palette_png, write_rgb_png
from .formats import Lut, write_lut
from .library import load_lut
from .nutil import check_nutil_names, nutil_name

__all__ = ["LABEL_IMAGE_SUFFIXES", "ApplyResult", "apply_files", "lut_with_overrides", "output_names",
           "parse_color_set"]

LABEL_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".h5", ".hdf5", ".npy", ".bmp", ".gif")

#: ``apply(source, lut_file, destination)``: colour one file (or a label array) as ImageJ does.
ImageJApply = Callable[[Any, Path, Path], Any]


def parse_color_set(values: Iterable[str], *, option: str = "--set") -> dict[int, tuple[int, int, int]]:
    """``["2=255,0,0", ...]`` -> ``{2: (255, 0, 0)}``: LUT entries (label values) 0..255 and
    their colours; an :class:`InputError` naming ``option`` for anything else."""
    colours: dict[int, tuple[int, int, int]] = {}
    for text in values:
        try:
            index_text, rgb_text = text.split("=", 1)
            index = int(index_text)
            rgb = tuple(int(v) for v in rgb_text.replace(" ", "").split(","))
        except ValueError:
            raise InputError(f"{option} {text!r}: use INDEX=R,G,B, e.g. 2=255,0,0") from None
        if len(rgb) != 3 or not 0 <= index <= 255 or any(not 0 <= v <= 255 for v in rgb):
            raise InputError(f"{option} {text!r}: index 0..255 and three components 0..255, e.g. 2=255,0,0")
        colours[index] = rgb  # type: ignore[assignment]
    return colours


def lut_with_overrides(name: str | os.PathLike, fiji_dir: str | os.PathLike | None = None,
                       sets: Iterable[str] = ()) -> Lut:
    """:func:`load_lut` with ``INDEX=R,G,B`` overrides (:func:`parse_color_set`) applied."""
    lut = load_lut(name, fiji_dir)
    colours = parse_color_set(sets)
    return lut.with_colors(colours) if colours else lut


@dataclass
class ApplyResult:
    """What :func:`apply_files` did: ``outputs`` (one per input), those ``written`` now,
    ``name_problems`` (output names Nutil would refuse) and ``warnings`` (one line each)."""

    outputs: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    skipped: int = 0
    name_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def output_names(inputs: Sequence[Path], out_dir: str | os.PathLike, *, nutil_names: bool = False) -> list[Path]:
    """The PNG each input is written to: ``out_dir/<stem>.png``, or Nutil's cleaned name."""
    out = Path(out_dir)
    stems = [split_h5_path(p)[0].stem for p in inputs]
    outputs = [out / (nutil_name(s) if nutil_names else s + ".png") for s in stems]
    check_distinct_outputs(inputs, outputs)
    return outputs


def apply_files(images: Sequence[str | os.PathLike], out_dir: str | os.PathLike, lut: Lut, *,
                rgb: bool = False, classes: Sequence[int] | None = None, nutil_names: bool = False,
                check_names: bool = False, overwrite: bool = False,
                imagej_apply: ImageJApply | None = None,
                report: Callable[[str], None] | None = None) -> ApplyResult:
    """Colour label images (files or folders) with ``lut`` and write PNGs to ``out_dir``.

    Parameters
    ----------
    images : sequence of paths
        Label images or folders of them (labels 0..255).
    lut : Lut
    rgb : bool
        24-bit RGB PNGs instead of palette PNGs (ImageJ's own output is a palette PNG).
    classes : sequence of int, optional
        Colour only these label values; all others become index 0.
    nutil_names, check_names : bool
        Write names Nutil accepts; refuse (before any work) names it would not.
    overwrite : bool
        Replace existing outputs (default: skip them, so that a rerun resumes).
    imagej_apply : callable, optional
        Colour with a real ImageJ instead of Pillow (``pyquint.imagej.apply_lut_imagej``).
    report : callable, optional
        Called with each name problem before any work (the CLI prints them as warnings).

    Raises
    ------
    InputError
        Two inputs with one output name, an output over an input, a name Nutil refuses with
        ``check_names``, ``rgb`` with ImageJ, an unreadable label image.
    """
    inputs = collect_inputs(images, LABEL_IMAGE_SUFFIXES)
    outputs = output_names(inputs, out_dir, nutil_names=nutil_names)
    guard_outputs(inputs, outputs)
    result = ApplyResult(outputs=outputs, name_problems=check_nutil_names(outputs, require_png=True))
    if result.name_problems and check_names:
        raise InputError("output names Nutil cannot use:\n  " + "\n  ".join(result.name_problems))
    for problem in result.name_problems if report is not None else ():
        report(problem)
    if imagej_apply is not None and rgb:
        raise InputError("--rgb is not available with --engine imagej (ImageJ writes palette PNGs)")
    todo = [(i, o) for i, o in zip(inputs, outputs) if overwrite or not o.exists()]
    result.skipped = len(inputs) - len(todo)
    keep = None if classes is None else list(classes)
    with tempfile.TemporaryDirectory(prefix="pyquint-lut-") as tmpdir, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lut_path = write_lut(lut, Path(tmpdir) / f"{lut.name}.lut") if imagej_apply is not None else None
        for src, dst in progress(todo, desc="lut apply", total=len(todo)):
            result.written.append(_apply_one(src, dst, lut, rgb, keep, imagej_apply, lut_path))
    result.warnings = list(dict.fromkeys(str(w.message) for w in caught))
    return result


def _apply_one(src: Path, dst: Path, lut: Lut, rgb: bool, keep: list[int] | None,
               imagej_apply: ImageJApply | None, lut_path: Path | None) -> Path:
    if imagej_apply is not None and keep is None:  # ImageJ reads the file itself
        dst.parent.mkdir(parents=True, exist_ok=True)
        imagej_apply(src, lut_path, dst)  # type: ignore[arg-type]
        return dst
    labels = read_labels(src)
    if keep is not None:
        labels = np.where(np.isin(labels, keep), labels, 0).astype(labels.dtype)
    if imagej_apply is not None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        imagej_apply(labels, lut_path, dst)  # type: ignore[arg-type]
        return dst
    return (write_rgb_png if rgb else write_palette_png)(dst, labels, lut)
