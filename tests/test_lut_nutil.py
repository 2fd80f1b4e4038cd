"""Nutil helpers: section ids, name checks, colour tables (Nutil R,G,B / PyNutil B,G,R), legend."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.lut import (
    PYQUINT_LUT_DIR,
    Lut,
    check_nutil_names,
    colour_table,
    legend_image,
    read_lut,
    section_id,
    write_colour_table,
)


@pytest.fixture(scope="module")
def glasbey() -> Lut:
    """pyquint's Glasbey table (the palette's origin is not what these tests are about)."""
    return read_lut(PYQUINT_LUT_DIR / "glasbey.lut")


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("tg2345_MMSH_s001.png", 1),
        ("tg2345_MMSH_s001_segmentation.png", 1),
        ("brain_s1.png", 1),
        ("brain_s0042.PNG", 42),
        ("brain_s002_s001.png", 1),  # PyNutil takes the last match
        ("brain.png", None),
        ("brain_S001.png", None),
    ],
)
def test_section_id(name, number):
    assert section_id(name) == number


def test_good_names_pass():
    names = ["a/tg2345_MMSH_s001.png", "a/tg2345_MMSH_s002_segmentation.png", "a/x_s006.png", "b/x_s001.png"]
    assert check_nutil_names(names) == []


def test_every_bad_name_reported():
    names = [
        "d/brain.png",  # no id
        "d/brain_S003.png",  # upper-case S
        "d/brain-s004.png",  # wrong separator
        "d/brain s005.png",  # space separator
        "d/brain.s006.png",  # dot
        "d/brain_s007_s008.png",  # two ids
        "d/tg2345_MMSH_ss_s009.png",  # extra _s
        "d/._brain_s010.png",  # macOS resource fork
        "d/brain_s011.tif",  # not PNG
        "d/brain_s012.png",
        "d/other_s0012.png",  # same number as s012
    ]
    problems = check_nutil_names(names, require_png=True)
    joined = "\n".join(problems)
    for name in names[:-2]:
        assert name in joined, name
    assert "d/other_s0012.png: section number 12 is also used by brain_s012.png" in joined
    assert "lower-case" in joined and "underscore" in joined and "hidden" in joined
    assert "space" in joined and "'.'" in joined and "2 section ids" in joined
    assert not any(p.startswith("d/brain_s012.png") for p in problems)
    # section images may be TIFF: only segmentations must be PNG
    assert check_nutil_names(["d/brain_s011.tif"]) == []


def test_colour_table_nutil_and_pynutil(glasbey, tmp_path):
    rows = colour_table(glasbey, [1, 2, 3], ["background", "cells", "streaks"])
    assert [r["nutil_rgb"] for r in rows] == ["0,0,255", "255,0,0", "0,255,0"]
    assert [r["pynutil_pixel_id"] for r in rows] == [[255, 0, 0], [0, 0, 255], [0, 255, 0]]
    assert rows[1]["name"] == "cells" and rows[1]["hex"] == "#ff0000"
    # default class ids are ilastik's 1..N; mapping form too
    assert [r["class"] for r in colour_table(glasbey, class_names=["a", "b"])] == [1, 2]
    assert colour_table(glasbey, class_names={5: "x"})[0]["nutil_rgb"] == "255,0,182"
    write_colour_table(tmp_path / "t.csv", rows)
    with open(tmp_path / "t.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert read[1]["nutil_rgb"] == "255,0,0" and read[1]["pynutil_pixel_id"] == "0,0,255"
    write_colour_table(tmp_path / "t.json", rows)
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    with pytest.raises(InputError):
        write_colour_table(tmp_path / "t.txt", rows)
    with pytest.raises(InputError):
        colour_table(glasbey, [300])
    with pytest.raises(InputError):
        colour_table(glasbey, [1, 2], ["only one"])


def test_legend_swatches(glasbey):
    image = legend_image(["background", "cells", "streaks"], glasbey, [1, 2, 3], swatch=24)
    arr = np.asarray(image)
    assert image.mode == "RGB" and arr.shape[0] == 6 + 3 * 30
    for row, c in enumerate([1, 2, 3]):
        y = 6 + row * 30 + 12
        assert tuple(arr[y, 6 + 12]) == glasbey.color(c)
    # text was drawn right of the swatches (dark pixels)
    assert (arr[:, 6 + 24 + 6 :].min(axis=2) < 128).any()
