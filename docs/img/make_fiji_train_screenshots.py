"""Make docs/img/fiji_train_preview_{1,2}.png from real ImageJ runs of the fiji-train macro.

Two iterations on pyquint's synthetic section 3 (``pyquint.data.make_section(3)``), with ROIs
placed as in ``tests/test_imagej_training.py``; the images are the files ImageJ itself wrote
(``preview_montage.png``: ImageJ's montage of the preview stack, whose first panel is the image
with the segmentation overlay and the suggestion boxes, flattened by ImageJ). Run from the
repository root: ``python docs/img/make_fiji_train_screenshots.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from pyquint.data import make_section
from pyquint.imagej import run_macro
from pyquint.interactive_server import stop_server
from pyquint.macros import generate_macro

OUT = Path(__file__).resolve().parent


def boxes(mask, n, size, rng):
    inside = ndi.minimum_filter(mask.astype(np.uint8), size=size + 2) > 0
    ys, xs = np.nonzero(inside)
    pick = rng.choice(len(ys), n, replace=False)
    return [(int(xs[i]) - size // 2, int(ys[i]) - size // 2, size, size) for i in pick]


def points(mask, n, rng):
    ys, xs = np.nonzero(mask)
    pick = rng.choice(len(ys), n, replace=False)
    return [(int(xs[i]), int(ys[i])) for i in pick]


def roi_macro(image, rois):
    lines = [f'open("{image}");']
    for name, geom in rois:
        if isinstance(geom[0], tuple):
            lines.append(f'makeSelection("point", newArray({", ".join(str(x) for x, _ in geom)}), '
                         f'newArray({", ".join(str(y) for _, y in geom)}));')
        else:
            lines.append(f"makeRectangle({geom[0]}, {geom[1]}, {geom[2]}, {geom[3]});")
        lines += ['roiManager("add");', 'roiManager("select", roiManager("count") - 1);',
                  f'roiManager("rename", "{name}");']
    return "\n".join(lines) + "\n"


def main() -> None:
    section = make_section(3)
    macro = generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable, suggestions=4)
    rng = np.random.default_rng(0)
    slide = (section.image > 225) & (section.truth == 0)
    tissue = (section.image > 170) & (section.image < 215) & (section.truth == 0)
    first = [("background", b) for b in boxes(slide, 1, 10, rng)]
    first.append(("stain", points(ndi.binary_erosion(section.truth == 1), 6, rng)))
    second = [("background-tissue", b) for b in boxes(tissue, 6, 8, rng)]
    second.append(("stain-streak", points(section.truth == 2, 8, rng)))
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "brain_s001.png"
        Image.fromarray(section.image).save(image)
        work = Path(tmp) / "brain_s001_pyquint"
        for k, rois in enumerate((first, second), 1):
            print(run_macro(roi_macro(image, rois) + macro, timeout=300).output)
            # ImageJ's RGB montage with its colours reduced to a 256-colour palette (< 200 kB)
            with Image.open(work / "preview_montage.png") as im:
                im.convert("RGB").quantize(256).save(OUT / f"fiji_train_preview_{k}.png", optimize=True)
        stop_server(work)  # the macro's first run left a pyquint server for the image


if __name__ == "__main__":
    main()
