"""The optional PyNutil step of `quint run`: per-region counts with a synthetic atlas.

The atlas is a 60 × 50 × 40 volume made here: region 1 ("left") where the first atlas axis
is below 30, region 2 ("right") above. Each section's QuickNII anchoring maps the image's x
axis onto that first axis, so the expected count of a region is the number of coloured
objects whose centroid lies in that half of the PNG, counted here from the PNGs with scipy.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage as ndi

from pyquint.cli import main
from pyquint.data import write_sample_dataset

pytest.importorskip("PyNutil", reason="PyNutil is not installed (pip install 'pyquint[pynutil]'): "
                                      "the PyNutil step is NOT tested")

X, Y, Z = 60, 50, 40


@pytest.fixture(scope="module")
def atlas_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("pynutil")
    data = write_sample_dataset(root / "data", n_sections=2, seed=1, shape=(192, 240))
    volume = np.zeros((X, Y, Z), np.uint32)
    volume[: X // 2], volume[X // 2 :] = 1, 2
    np.save(root / "annotation.npy", volume)
    (root / "labels.csv").write_text("idx,name,r,g,b\n0,Clear Label,0,0,0\n1,left,255,0,0\n2,right,0,255,0\n")
    slices = [{"filename": f"brain_s00{nr}.png", "nr": nr, "width": 240, "height": 192,
               "anchoring": [0, 10 + 5 * nr, Z, X, 0, 0, 0, 0, -Z]} for nr in (1, 2)]
    (root / "registration.json").write_text(json.dumps({"name": "synthetic", "target": "custom",
                                                        "slices": slices}))
    return root, data


def _expected_by_half(seg_dir) -> list[int]:
    counts = [0, 0]
    for png in sorted(seg_dir.glob("*.png")):
        rgb = np.asarray(Image.open(png).convert("RGB"))
        lab, n = ndi.label((rgb == (255, 0, 0)).all(-1))  # 4-connected, as PyNutil and Nutil
        for _, cx in ndi.center_of_mass(np.ones(lab.shape), lab, range(1, n + 1)):
            counts[int(cx >= rgb.shape[1] / 2)] += 1
    return counts


def test_quint_run_adds_pynutil_region_counts(atlas_case):
    root, data = atlas_case
    out = root / "out"
    res = CliRunner().invoke(main, [
        "quint", "run", "--sections", str(data / "sections"), "--labels", str(data / "labels"),
        "--class-names", "Background,Stain", "--trees", "20", "--classes", "2", "-o", str(out),
        "--alignment", str(root / "registration.json"), "--atlas", str(root / "annotation.npy"),
        "--atlas-labels", str(root / "labels.csv")])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "pynutil" / "region_counts.csv").open()))
    by_name = {r["name"]: r for r in rows}
    left, right = _expected_by_half(out / "segmentations")
    assert left > 5 and right > 5
    assert int(by_name["left"]["object_count"]) == left
    assert int(by_name["right"]["object_count"]) == right
    red_pixels = sum(int(((np.asarray(Image.open(p).convert("RGB")) == (255, 0, 0)).all(-1)).sum())
                     for p in (out / "segmentations").glob("*.png"))
    assert sum(int(r["pixel_count"]) for r in rows) == red_pixels
    report = (out / "report.html").read_text()
    assert "Per-region counts (PyNutil)" in report and f"{left + right} in all" in report


def test_pynutil_inputs_checked_before_any_work(atlas_case, tmp_path):
    root, data = atlas_case
    base = ["quint", "run", "--sections", str(data / "sections"), "--labels", str(data / "labels"),
            "--trees", "5", "-o", str(tmp_path / "o")]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = CliRunner().invoke(main, [*base, "--alignment", str(bad), "--atlas", str(root / "annotation.npy"),
                                    "--atlas-labels", str(root / "labels.csv")])
    assert res.exit_code == 1 and "is not a JSON file" in res.output
    res = CliRunner().invoke(main, [*base, "--alignment", str(root / "registration.json")])
    assert res.exit_code == 1 and "give either atlas" in res.output
    res = CliRunner().invoke(main, [*base, "--alignment", str(root / "registration.json"),
                                    "--atlas", str(root / "annotation.npy")])
    assert res.exit_code == 1 and "pynutil.atlas_labels" in res.output
    assert not (tmp_path / "o" / "pixel_model.h5").exists()
