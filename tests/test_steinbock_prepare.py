"""`pyquint steinbock prepare` against the real steinbock 0.16.5 outputs in ../shared."""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from synth import write_imc_inputs

from pyquint.cli import main
from pyquint.errors import InputError
from pyquint.steinbock import (
    channel_groups,
    create_ilastik_image,
    prepare,
    read_panel,
    resize_like_steinbock,
)

IGNORED_PROJECT_VALUES = {"datasetId", "time"}  # a new uuid1 and the creation time


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sb_ref(reference_dir: Path) -> Path:
    return reference_dir / "steinbock"


@pytest.fixture(scope="module")
def listing(sb_ref: Path) -> dict[str, dict]:
    return {entry["file"]: entry for entry in json.loads((sb_ref / "run_default" / "listing.json").read_text())}


@pytest.fixture(scope="module")
def dump_tool(sb_ref: Path):
    """The reference's own lister (dump_outputs.py), so both sides are described alike."""
    spec = importlib.util.spec_from_file_location("sb_dump_outputs", sb_ref / "dump_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, sb_ref: Path) -> Path:
    """`prepare --cropsize 50 --seed 123` on the reference inputs, through the CLI."""
    work = tmp_path_factory.mktemp("prepare")
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=work) as cwd:
        shutil.copytree(sb_ref / "inputs", cwd, dirs_exist_ok=True)
        result = runner.invoke(main, ["steinbock", "prepare", "--cropsize", "50", "--seed", "123"])
        assert result.exit_code == 0, result.output
        assert "3 Ilastik images, 3 crops" in result.output
        return Path(cwd)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _comparable(entries: list[dict]) -> dict[str, dict]:
    out = {}
    for e in json.loads(json.dumps(entries, default=str)):
        if e["path"].rsplit("/", 1)[-1] in IGNORED_PROJECT_VALUES:
            e.pop("value", None)
        out[e["path"]] = e
    return out


# --------------------------------------------------------------------------- reproduction
def test_same_files_as_steinbock(prepared: Path, listing: dict) -> None:
    ours = sorted(str(p.relative_to(prepared)) for p in prepared.rglob("*.h5"))
    ref = sorted(f for f in listing if f.endswith(".h5"))
    assert ours == ref
    assert (prepared / "pixel_classifier.ilp").is_file()


def test_h5_files_are_byte_identical(prepared: Path, listing: dict) -> None:
    for name, entry in listing.items():
        if name.endswith(".h5"):
            assert (prepared / name).stat().st_size == entry["bytes"], name
            assert _sha256(prepared / name) == entry["sha256"], name


def test_h5_layout_matches_listing(prepared: Path, listing: dict, dump_tool) -> None:
    for name, entry in listing.items():
        if name.endswith(".h5"):
            ours = json.loads(json.dumps(dump_tool.h5_entries(prepared / name), default=str))
            assert ours == entry["hdf5"], name


def test_arrays_equal_reference_files(prepared: Path, sb_ref: Path) -> None:
    ref_dir = sb_ref / "run_default"
    for ref_file in sorted(ref_dir.rglob("*.h5")):
        rel = ref_file.relative_to(ref_dir)
        dataset = "img" if rel.parts[0] == "ilastik_img" else "crop"
        with h5py.File(ref_file, "r") as a, h5py.File(prepared / rel, "r") as b:
            ref, ours = a[dataset][()], b[dataset][()]
            assert ours.dtype == ref.dtype == np.float32
            np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
            assert np.array_equal(ours, ref), f"{rel} is not bit-identical"
            assert b.libver[0] == "earliest"


def test_crop_positions_match_crop_locations_csv(prepared: Path, sb_ref: Path) -> None:
    rows = [r for r in csv.DictReader((sb_ref / "crop_locations.csv").open()) if r["run"].startswith("run_default")]
    assert len(rows) == 3
    for row in rows:
        crop = prepared / "ilastik_crops" / row["crop_file"]
        x, y, w, h = (int(row[k]) for k in ("x", "y", "w", "h"))
        with h5py.File(crop, "r") as c, h5py.File(prepared / "ilastik_img" / f"{row['image']}.h5", "r") as i:
            assert np.array_equal(c["crop"][()], i["img"][:, y : y + h, x : x + w])


def test_crop_positions_scale1_nomean(tmp_path: Path, sb_ref: Path) -> None:
    rows = [r for r in csv.DictReader((sb_ref / "crop_locations.csv").open()) if r["run"].startswith("run_scale1")]
    shutil.copytree(sb_ref / "inputs", tmp_path, dirs_exist_ok=True)
    result = prepare(tmp_path / "img", tmp_path / "panel.csv", tmp_path / "p.ilp", scale=1, mean=False,
                     crop_size=50, seed=123, img_out=tmp_path / "ii", crop_out=tmp_path / "cc")
    assert [p.name for p in result.crop_files] == [r["crop_file"] for r in rows]
    for row, crop in zip(rows, result.crop_files):
        assert result.crop_positions[crop] == (int(row["x"]), int(row["y"]))
        with h5py.File(crop, "r") as f:
            assert f["crop"].shape == (2, 50, 50)


def test_project_matches_reference_project(prepared: Path, sb_ref: Path, tmp_path: Path, dump_tool) -> None:
    ref_ilp = tmp_path / "reference.ilp"
    with gzip.open(sb_ref / "run_default" / "pixel_classifier.ilp.gz") as src, ref_ilp.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    ref = _comparable(dump_tool.h5_entries(ref_ilp))
    ours = _comparable(dump_tool.h5_entries(prepared / "pixel_classifier.ilp"))
    # documented: pyquint writes no pickled ClassifierFactory (ilastik then uses its default)
    assert set(ref) - set(ours) == {"/PixelClassification/ClassifierFactory"}
    assert set(ours) - set(ref) == set()
    for path in ours:
        assert ours[path] == ref[path], path
    with h5py.File(prepared / "pixel_classifier.ilp", "r") as f:
        ids = {f[f"Input Data/infos/{lane}/Raw Data/datasetId"][()] for lane in f["Input Data/infos"]}
        assert len(ids) == 1  # one uuid shared by all lanes, as steinbock
        assert f["PixelClassification/PmapColors"][1].tolist() == [0, 225, 0]


def test_project_matches_template_listing(prepared: Path, sb_ref: Path) -> None:
    """Every group/dataset of steinbock's bundled template is written (except the pickle)."""
    template = sb_ref / "template_ilp_listing.txt"
    paths = [ln[5:].split(" shape=")[0] for ln in template.read_text().splitlines()
             if ln.startswith(("   G ", "   D "))]
    assert len(paths) == 27
    paths = [p for p in paths if p != "/PixelClassification/ClassifierFactory"]
    with h5py.File(prepared / "pixel_classifier.ilp", "r") as f:
        for p in paths:
            assert p in f, p


def test_rerun_gives_identical_h5_bytes(tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        folder = write_imc_inputs(tmp_path / name)
        prepare(folder / "img", folder / "panel.csv", folder / "pixel_classifier.ilp",
                crop_size=50, seed=123, img_out=folder / "ilastik_img", crop_out=folder / "ilastik_crops")
        runs.append(folder)
    files = sorted(p.relative_to(runs[0]) for p in runs[0].rglob("*.h5"))
    assert len(files) == 6  # 3 images + 3 crops
    for rel in files:
        assert _sha256(runs[0] / rel) == _sha256(runs[1] / rel), rel


# --------------------------------------------------------------------------- arithmetic
def _lerp_resize_x2(ch: np.ndarray) -> np.ndarray:
    """Independent model of cv2's x2 bilinear (spec 2.3): half-pixel centres, clamped edges,
    x pass then y pass, A + w*(B-A) in float32 (IPP) or A*(1-w)+B*w (plain)."""
    def axis_pass(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        d = np.arange(2 * n)
        u = (d + 0.5) / 2 - 0.5
        i = np.floor(u).astype(int)
        w = (u - i).astype(np.float32)
        border = (i < 0) | (i + 1 > n - 1)
        w[border] = 0
        i = np.clip(i, 0, n - 1)
        j = np.clip(i + 1, 0, n - 1)
        A, B = np.take(a, i, axis=axis), np.take(a, j, axis=axis)
        shape = [1, 1]
        shape[axis] = -1
        w = w.reshape(shape)
        return (A + w * (B - A)).astype(np.float32)
    return axis_pass(axis_pass(ch, 1), 0)


def test_resize_matches_independent_bilinear_model() -> None:
    rng = np.random.default_rng(0)
    ch = (rng.random((13, 17)) * 100).astype(np.float32)
    ours = resize_like_steinbock(ch, 2)
    assert ours.shape == (26, 34) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _lerp_resize_x2(ch), rtol=1e-6, atol=1e-5)


def test_mean_channel_is_mean_of_groups_not_of_channels(tmp_path: Path) -> None:
    panel = read_panel(write_imc_inputs(tmp_path) / "panel.csv")
    assert [r["channel"] for r in panel.rows] == ["Ch1", "Ch2", "Ch3", "Ch4", "Ch5"]  # keep=0 dropped
    groups = channel_groups(panel)
    np.testing.assert_array_equal(groups, [2, 1, 2, np.nan, 2])
    img = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    out = create_ilastik_image(img, groups, "mean", scale=1)
    g1 = img[1]  # group 1 first (sorted numeric order), though Ch1 is in group 2
    g2 = (img[0] + img[2] + img[4]) / 3
    np.testing.assert_allclose(out[1], g1)
    np.testing.assert_allclose(out[2], g2, rtol=1e-6)
    np.testing.assert_allclose(out[0], (g1 + g2) / 2 * 100, rtol=1e-6)
    assert not np.allclose(out[0], img[[0, 1, 2, 4]].mean(0) * 100)


def test_panel_without_groups_keeps_all_channels(tmp_path: Path) -> None:
    panel_file = tmp_path / "panel.csv"
    panel_file.write_text("channel;name;keep\nA;a;1\nB;b;1\n")
    panel = read_panel(panel_file)
    assert channel_groups(panel) is None
    img = np.ones((2, 3, 3), np.uint16)
    out = create_ilastik_image(img, None, mean=False, scale=1)
    assert out.shape == (2, 3, 3) and out.dtype == np.float32


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """An IMC set made here (three 5 × 100 × 120 images and a panel), as steinbock's inputs."""
    return write_imc_inputs(tmp_path)


def _nothing_written(folder: Path) -> bool:
    return not any((folder / d).exists() for d in ("ilastik_img", "ilastik_crops", "pixel_classifier.ilp"))


def test_panel_channel_mismatch_is_an_error(inputs: Path) -> None:
    panel = inputs / "panel.csv"
    panel.write_text(panel.read_text() + "Ch6,Marker6,1,1,,\n")  # 6 kept rows, 5 channels
    with pytest.raises(InputError, match="6 kept channels.*synth_a.tiff has 5"):
        prepare(inputs / "img", panel, inputs / "pixel_classifier.ilp", crop_size=50,
                img_out=inputs / "ilastik_img", crop_out=inputs / "ilastik_crops")
    assert _nothing_written(inputs)


def test_panel_channel_mismatch_cli_exit_code(inputs: Path) -> None:
    panel = inputs / "panel.csv"
    panel.write_text("channel,name,keep,ilastik\nCh1,M1,1,1\nCh2,M2,1,2\n")
    runner = CliRunner()
    result = runner.invoke(main, ["steinbock", "prepare", "--img", str(inputs / "img"), "--panel", str(panel),
                                  "-o", str(inputs / "pixel_classifier.ilp"),
                                  "--imgout", str(inputs / "ilastik_img"), "--cropout", str(inputs / "ilastik_crops")])
    assert result.exit_code == 1
    assert "2 kept channels" in result.output and "Traceback" not in result.output


def test_bad_panels(tmp_path: Path) -> None:
    cases = {
        "no_name.csv": ("channel,keep\nA,1\n", "missing 'name'"),
        "dupe.csv": ("channel,name\nA,x\nB,x\n", "duplicated values in column 'name'"),
        "keep.csv": ("channel,name,keep\nA,x,\n", "missing values in column 'keep'"),
        "keep2.csv": ("channel,name,keep\nA,x,yes\n", "'keep' must be 0 or 1"),
        "group.csv": ("channel,name,ilastik\nA,x,nuclear\n", "must hold numbers"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=message):
            channel_groups(read_panel(tmp_path / name))
    with pytest.raises(InputError, match="does not exist"):
        read_panel(tmp_path / "missing.csv")


def test_unknown_aggregation(inputs: Path) -> None:
    with pytest.raises(InputError, match="unknown channel aggregation.*'average'"):
        prepare(inputs / "img", inputs / "panel.csv", inputs / "pixel_classifier.ilp", aggr="average",
                img_out=inputs / "ilastik_img", crop_out=inputs / "ilastik_crops")
    assert _nothing_written(inputs)
    runner = CliRunner()
    result = runner.invoke(main, ["steinbock", "prepare", "--img", str(inputs / "img"),
                                  "--panel", str(inputs / "panel.csv"), "--aggr", "__version__",
                                  "-o", str(inputs / "p.ilp")])
    assert result.exit_code == 1 and "unknown channel aggregation" in result.output


def test_median_aggregation_is_used(inputs: Path) -> None:
    img = np.stack([np.full((4, 4), v, np.float32) for v in (1, 5, 2, 7, 9)])
    groups = channel_groups(read_panel(inputs / "panel.csv"))
    out = create_ilastik_image(img, groups, "median", mean=False, scale=1)
    np.testing.assert_array_equal(out[:, 0, 0], [5, 2])  # group 1 = {5}; group 2 = median(1, 2, 9)


def test_images_smaller_than_crop_are_reported_and_skipped(inputs: Path, caplog) -> None:
    # synth_* are 240x200 after x2: a crop of 210 fits in x (240) but not in y (200)
    with caplog.at_level("WARNING", logger="pyquint.steinbock"):
        result = prepare(inputs / "img", inputs / "panel.csv", inputs / "pixel_classifier.ilp",
                         crop_size=210, seed=1, img_out=inputs / "ilastik_img", crop_out=inputs / "ilastik_crops")
    assert result.crop_files == [] and len(result.skipped_crops) == 3
    assert "too small for crop size 210" in caplog.text
    with h5py.File(inputs / "pixel_classifier.ilp", "r") as f:
        assert len(f["Input Data/infos"]) == 0


def test_small_image_consumes_no_random_draw(inputs: Path) -> None:
    # a tiny first image gets no crop and must not shift the draws of the others
    tifffile.imwrite(inputs / "img" / "a_tiny.tiff", np.ones((1, 1, 5, 10, 10, 1), np.float32), imagej=True)
    result = prepare(inputs / "img", inputs / "panel.csv", inputs / "pixel_classifier.ilp",
                     crop_size=50, seed=123, img_out=inputs / "ilastik_img", crop_out=inputs / "ilastik_crops")
    assert [p.name for p in result.crop_files] == [
        "synth_a_x2_y102_w50_h50.h5", "synth_b_x112_y8_w50_h50.h5", "synth_c_x172_y33_w50_h50.h5"]
    assert len(result.skipped_crops) == 1 and "a_tiny" in result.skipped_crops[0]


def test_crops_outside_project_folder(inputs: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(InputError, match="not inside the project's folder"):
        prepare(inputs / "img", inputs / "panel.csv", inputs / "project" / "pixel_classifier.ilp",
                crop_size=50, img_out=inputs / "ilastik_img", crop_out=elsewhere / "crops")
    assert _nothing_written(inputs) and not (elsewhere / "crops").exists()


def test_existing_project_needs_overwrite_and_images_resume(inputs: Path) -> None:
    kwargs = dict(crop_size=50, seed=123, img_out=inputs / "ilastik_img", crop_out=inputs / "ilastik_crops")
    prepare(inputs / "img", inputs / "panel.csv", inputs / "pixel_classifier.ilp", **kwargs)
    with pytest.raises(InputError, match="project exists"):
        prepare(inputs / "img", inputs / "panel.csv", inputs / "pixel_classifier.ilp", **kwargs)
    stamp = (inputs / "ilastik_img" / "synth_a.h5").stat().st_mtime_ns
    result = prepare(inputs / "img", inputs / "panel.csv", inputs / "second.ilp", **kwargs)
    assert len(result.reused_images) == 3
    assert (inputs / "ilastik_img" / "synth_a.h5").stat().st_mtime_ns == stamp
    result = prepare(inputs / "img", inputs / "panel.csv", inputs / "second.ilp", overwrite=True, **kwargs)
    assert result.reused_images == [] and len(result.crop_files) == 3


def test_missing_inputs(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    with pytest.raises(InputError, match="no \\*.tiff images"):
        prepare(tmp_path / "img", None, tmp_path / "p.ilp")
    with pytest.raises(InputError, match="does not exist"):
        prepare(tmp_path / "nope", None, tmp_path / "p.ilp")
