"""QUINT QC pieces: Nutil/PyNutil-style counting, F1, montage, report, provenance, config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.workflows.config import config_from_dict, load_config
from pyquint.workflows.qc import (
    count_colour_objects,
    file_sha256,
    make_montage,
    pixel_f1,
    provenance,
    read_png_rgb,
    write_report,
)

RED = (255, 0, 0)


def _rgb(mask: np.ndarray, colour=RED) -> np.ndarray:
    img = np.full(mask.shape + (3,), 255, np.uint8)
    img[mask] = colour
    return img


def test_four_connectivity_and_exact_match():
    mask = np.zeros((10, 10), bool)
    mask[2, 2] = mask[3, 3] = True          # diagonal: two objects
    mask[6:8, 6:9] = True                   # one block
    img = _rgb(mask)
    assert count_colour_objects(img, RED) == (3, 8)
    # a colour 2 levels off is found by Nutil (±2) but not by PyNutil (exact)
    near = _rgb(mask, (253, 2, 0))
    assert count_colour_objects(near, RED).objects == 0
    assert count_colour_objects(near, RED, tolerance=2) == (3, 8)
    assert count_colour_objects(_rgb(mask, (252, 0, 0)), RED, tolerance=2).objects == 0


def test_nutil_edge_effect():
    mask = np.zeros((8, 8), bool)
    mask[0, 3] = True          # a border-only object: never seeded
    mask[3:5, 6:8] = True      # touches the last column: that column is never filled
    mask[4, 3] = True
    c = count_colour_objects(_rgb(mask), RED, tolerance=2, nutil_edges=True)
    assert c.objects == 2 and c.pixels == 3
    assert count_colour_objects(_rgb(mask), RED).objects == 3


def test_pixel_f1():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert pixel_f1(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert pixel_f1(a, b) == pytest.approx(0.5)


def test_montage_report_and_provenance(tmp_path):
    raw = np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8)
    seg = _rgb(raw > 128)
    montage = make_montage([("s001", raw, seg), ("s002", raw[:, :30], seg[:, :30])], height=50)
    assert montage.dtype == np.uint8 and montage.shape[2] == 3 and montage.shape[0] >= 2 * 50
    report = write_report(tmp_path / "r.html", "t<1>", [{"section": "s001", "objects": 3}], montage, seg,
                          {"a": 1})
    text = report.read_text()
    assert "t&lt;1&gt;" in text and text.count("data:image/png;base64,") == 2 and "s001" in text
    (tmp_path / "in.bin").write_bytes(b"abc")
    prov = provenance({"seed": 3}, [tmp_path / "in.bin"], None)
    assert prov["inputs"][str(tmp_path / "in.bin")] == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert prov["software"]["numpy"] == np.__version__
    json.dumps(prov)
    assert file_sha256(tmp_path / "in.bin") == prov["inputs"][str(tmp_path / "in.bin")]


def test_read_png_rgb_expands_palette(tmp_path):
    from PIL import Image

    idx = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.frombytes("P", (2, 2), idx.tobytes())
    im.putpalette([255, 255, 255, 0, 0, 255, 255, 0, 0] + [0] * (3 * 253))
    im.save(tmp_path / "p.png")
    rgb = read_png_rgb(tmp_path / "p.png")
    assert tuple(rgb[1, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (0, 0, 255)


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(InputError, match="unknown key.*trés"):
        config_from_dict({"input": {"sections": "x", "trés": 1}})
    with pytest.raises(InputError, match="unknown section.*outptu"):
        config_from_dict({"outptu": {}})
    with pytest.raises(InputError, match="exactly one training source"):
        config_from_dict({"input": {"sections": "x"}}).validate()
    with pytest.raises(InputError, match="min_size"):
        config_from_dict({"input": {"sections": "x"}, "pixel": {"labels": "l"},
                          "objects": {"enabled": True, "min_size": 5, "max_size": 2}}).validate()
    with pytest.raises(InputError, match="resize"):
        config_from_dict({"input": {"sections": "x", "resize": 2}, "pixel": {"labels": "l"}}).validate()
    path = tmp_path / "q.toml"
    path.write_text('[input]\nsections = "s"\n[pixel]\nlabels = "l"\n[lut]\nset = { 2 = [255, 0, 0] }\n')
    cfg = load_config(path).validate()
    assert cfg.lut.set == {2: (255, 0, 0)}
    assert cfg.resolve(cfg.input.sections) == tmp_path / "s"
    path.write_text("[input\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(path)
