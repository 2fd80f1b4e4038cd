"""Helpers for the Nutil side of QUINT: colour tables, legends and file-name checks.

Nutil Quantifier extracts one RGB colour per run (typed as ``R,G,B``). PyNutil, its
Python port, reads images with OpenCV, so it compares its ``pixel_id`` with the pixels in
**B,G,R** order: the colour table gives both. Section numbers come from ``_s<digits>``
in the file names; :func:`check_nutil_names` reports every name either tool would reject
or misread.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import InputError
from ..io import atomic_output
from .formats import Lut

__all__ = [
    "check_nutil_names",
    "nutil_name",
    "colour_table",
    "legend_image",
    "section_id",
    "write_colour_table",
]

_SECTION = re.compile(r"_s(\d+)")
_NUTIL_SUFFIXES = (".png",)
_PYNUTIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dzip")


def section_id(name: str | os.PathLike) -> int | None:
    """The section number of a file name: the last ``_s<digits>`` (as PyNutil reads it).

    ``"tg2345_MMSH_s001_segmentation.png"`` -> 1; a name without ``_s<digits>`` -> None.
    """
    stem = Path(name).name
    matches = _SECTION.findall(stem)
    return int(matches[-1]) if matches else None


def check_nutil_names(paths: Iterable[str | os.PathLike], *, require_png: bool = False) -> list[str]:
    """Every problem Nutil or PyNutil would have with these file names.

    Checks (names only; the files need not exist yet, so outputs can be checked before any
    work starts): hidden files (macOS ``._x.png`` are read as a duplicate section by
    PyNutil), with ``require_png`` a file type Nutil does not read as a segmentation
    (segmentations must be PNG; section images may be other types), exactly one
    lower-case ``_s<digits>`` section id, no other ``_s`` before it (Nutil reads the first),
    no ``.`` or spaces in the name before the extension, an ``s<digits>`` preceded by
    another separator (``-s001``, `` s001``, ``.s001``) or upper-case ``_S001``, and the
    same section number twice in one folder (``_s1`` and ``_s001`` are the same number).

    Returns
    -------
    list of str
        One message per problem, each naming the file; empty when all names are fine.
    """
    problems: list[str] = []
    by_folder: dict[Path, dict[int, str]] = {}
    for raw in paths:
        path = Path(raw)
        name = path.name
        if name.startswith("."):
            problems.append(
                f"{path}: hidden file (a macOS '._' copy?); PyNutil reads it as another section - delete it"
            )
            continue
        suffix = path.suffix.lower()
        stem = name[: -len(path.suffix)] if path.suffix else name
        if require_png and suffix not in _NUTIL_SUFFIXES:
            where = "PyNutil reads it, but " if suffix in _PYNUTIL_SUFFIXES else ""
            problems.append(f"{path}: {where}Nutil reads segmentations as PNG files, not {suffix or 'no extension'}")
        ids = _SECTION.findall(stem)
        if "." in stem:
            problems.append(f"{path}: '.' in the name before the extension; Nutil needs names without dots")
        if " " in stem:
            problems.append(f"{path}: space in the name; Nutil needs names without spaces")
        if not ids:
            if re.search(r"_S\d+", stem):
                problems.append(f"{path}: section id must use a lower-case s ('_s001', not '_S001')")
            elif re.search(r"(^|[-. ])s\d+", stem):
                problems.append(
                    f"{path}: section id must follow an underscore ('name_s001'), not another separator"
                )
            else:
                problems.append(f"{path}: no section id; add '_s' and the section number, e.g. 'brain_s001.png'")
            continue
        if len(ids) > 1:
            problems.append(f"{path}: {len(ids)} section ids ({', '.join('_s' + i for i in ids)}); keep exactly one")
        elif stem.find("_s") != _SECTION.search(stem).start():
            problems.append(
                f"{path}: an '_s' before the section id (e.g. '_ss_s001'); Nutil reads the first '_s'"
            )
        number = int(ids[-1])
        seen = by_folder.setdefault(path.parent, {})
        if number in seen:
            problems.append(f"{path}: section number {number} is also used by {seen[number]}")
        else:
            seen[number] = name
    return problems


#: ilastik's export name parts ("{nickname}_{result_type}"), dropped by :func:`nutil_name`.
ILASTIK_RESULT_TYPES = ("Simple Segmentation", "Object Predictions", "Object Identities",
                        "Object Probabilities", "Probabilities", "Uncertainty", "Labels", "Features")


def nutil_name(name: str | os.PathLike, suffix: str = ".png") -> str:
    """A file name Nutil and PyNutil accept, derived from ``name`` (the ``_sXXX`` id kept).

    ilastik's result-type part is dropped (``brain_s001_Simple Segmentation.png`` ->
    ``brain_s001.png``), then spaces and dots become ``_``. Names that are fine stay as they
    are (with ``suffix``). A name without a section id stays without one:
    :func:`check_nutil_names` still reports it.
    """
    path = Path(name)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    for kind in ILASTIK_RESULT_TYPES:
        for sep in ("_", " ", "-"):
            if stem.endswith(sep + kind):
                stem = stem[: -len(kind) - 1]
                break
    stem = re.sub(r"[ .]+", "_", stem).strip("_") or "section"
    return stem + suffix


# --------------------------------------------------------------------------- colour tables
def _class_items(lut: Lut, classes, class_names) -> list[tuple[int, str]]:
    if classes is None:
        if isinstance(class_names, Mapping):
            classes = list(class_names)
        elif class_names is not None:
            classes = list(range(1, len(class_names) + 1))  # ilastik labels start at 1
        else:
            raise InputError("give the class ids (e.g. [1, 2]) or the class names")
    classes = [int(c) for c in classes]
    for c in classes:
        if not 0 <= c <= 255:
            raise InputError(f"class id {c} is outside the LUT's 0..255")
    if isinstance(class_names, Mapping):
        names = [str(class_names.get(c, f"class {c}")) for c in classes]
    elif class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != len(classes):
            raise InputError(f"{len(names)} class names for {len(classes)} classes")
    else:
        names = [f"class {c}" for c in classes]
    return list(zip(classes, names))


def colour_table(
    lut: Lut,
    classes: Sequence[int] | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> list[dict]:
    """The colour of each class, as typed into Nutil and as given to PyNutil.

    Parameters
    ----------
    lut : Lut
    classes : sequence of int, optional
        Label values (default 1..len(class_names), as ilastik numbers its classes).
    class_names : sequence of str or mapping int -> str, optional

    Returns
    -------
    list of dict
        Keys ``class``, ``name``, ``r``, ``g``, ``b``, ``nutil_rgb`` (``"r,g,b"`` for Nutil's
        colour field / ``extraction_color``), ``pynutil_pixel_id`` (``[b, g, r]``: PyNutil
        compares OpenCV's B,G,R pixels with it) and ``hex``.
    """
    rows = []
    for c, name in _class_items(lut, classes, class_names):
        r, g, b = lut.color(c)
        rows.append(
            {
                "class": c,
                "name": name,
                "r": r,
                "g": g,
                "b": b,
                "nutil_rgb": f"{r},{g},{b}",
                "pynutil_pixel_id": [b, g, r],
                "hex": f"#{r:02x}{g:02x}{b:02x}",
            }
        )
    return rows


def write_colour_table(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write :func:`colour_table` rows as CSV (``.csv``) or JSON (``.json``), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(rows, indent=2) + "\n"
    elif suffix == ".csv":
        buf = _io.StringIO()
        fields = ["class", "name", "r", "g", "b", "nutil_rgb", "pynutil_pixel_id", "hex"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "pynutil_pixel_id": ",".join(str(v) for v in row["pynutil_pixel_id"])})
        text = buf.getvalue()
    else:
        raise InputError(f"{path}: write the colour table as .csv or .json")
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def legend_image(
    class_names: Sequence[str] | Mapping[int, str] | None,
    lut: Lut,
    classes: Sequence[int] | None = None,
    *,
    swatch: int = 24,
    font_size: int | None = None,
    show_hex: bool = False,
):
    """A legend picture: one row per class with its colour swatch, name and ``R,G,B``.

    Returns a Pillow RGB image (save it with ``.save("legend.png")``). Text uses Pillow's
    default font (its scalable form at ``font_size`` points when given), so no font files
    are needed; ``show_hex`` adds the ``#rrggbb`` form of the colour.
    """
    from PIL import Image, ImageDraw, ImageFont

    items = _class_items(lut, classes, class_names)
    font = ImageFont.load_default() if font_size is None else ImageFont.load_default(size=font_size)
    labels = []
    for c, name in items:
        r, g, b = (int(v) for v in lut.color(c))
        text = f"{c}  {name}   R,G,B = {r},{g},{b}"
        labels.append(text + (f"   #{r:02x}{g:02x}{b:02x}" if show_hex else ""))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((probe.textbbox((0, 0), t, font=font)[2] for t in labels), default=0)
    pad = max(6, swatch // 4)
    width = pad * 3 + swatch + int(text_w)
    height = pad + len(items) * (swatch + pad)
    image = Image.new("RGB", (max(width, 1), max(height, 1)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row, ((c, _), text) in enumerate(zip(items, labels)):
        y = pad + row * (swatch + pad)
        colour = tuple(int(v) for v in lut.color(c))
        draw.rectangle([pad, y, pad + swatch - 1, y + swatch - 1], fill=colour, outline=(0, 0, 0))
        top = probe.textbbox((0, 0), text, font=font)
        draw.text((pad * 2 + swatch, y + (swatch - (top[3] - top[1])) // 2 - top[1]), text, fill=(0, 0, 0), font=font)
    return image
