"""QUINT end to end on synthetic sections: outputs, F1, Nutil counts, resume, engines, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pyquint.cli import main
from pyquint.data import write_sample_dataset
from pyquint.errors import InputError
from pyquint.workflows.config import QuintConfig
from pyquint.workflows.quint import run_quint


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample_dataset(tmp_path_factory.mktemp("sample"), n_sections=3, seed=0)


def _config(sample, out, **over) -> QuintConfig:
    cfg = QuintConfig(base_dir=out.parent)
    cfg.input.sections = str(sample / "sections")
    cfg.pixel.labels = str(sample / "labels")
    cfg.pixel.class_names = ["Background", "Stain"]
    cfg.pixel.trees = 30
    cfg.objects.enabled = True
    cfg.objects.labels = str(sample / "object_labels")
    cfg.objects.trees = 30
    cfg.lut.classes = [2]
    cfg.output.folder = str(out)
    for key, value in over.items():
        section, attr = key.split("__")
        setattr(getattr(cfg, section), attr, value)
    return cfg


@pytest.fixture(scope="module")
def python_run(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    return run_quint(_config(sample, out), truth=sample / "truth", truth_value=1, evaluate_class=2)


def test_outputs_exist_and_are_nutil_ready(python_run, sample):
    out = python_run.output_folder
    for name in ("legend.png", "nutil_colours.csv", "qc_montage.png", "report.html", "summary.csv",
                 "provenance.json"):
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in (out / "segmentations").iterdir())
    assert pngs == ["brain_s001.png", "brain_s002.png", "brain_s003.png"]
    with Image.open(out / "segmentations" / "brain_s001.png") as im:
        assert im.mode == "P"                       # palette PNG, as ImageJ writes
        idx = np.asarray(im)
        assert set(np.unique(idx)) <= {0, 2}        # only the coloured class keeps its index
        assert tuple(im.getpalette()[6:9]) == (255, 0, 0)   # glasbey label 2 = red
    csv_text = (out / "nutil_colours.csv").read_text()
    assert "255" in csv_text and "Stain" in csv_text
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["parameters"]["pixel"]["seed"] == 0 and len(prov["inputs"]) == 3
    assert prov["model"]["sha256"] and "numpy" in prov["software"]


def test_f1_against_ground_truth(python_run):
    f1s = [s.f1 for s in python_run.sections]
    assert all(f >= 0.85 for f in f1s), f1s
    assert python_run.mean_f1 >= 0.9


def test_nutil_counts_equal_pyquint_object_counts(python_run):
    for s in python_run.sections:
        assert s.objects[2] > 10
        assert s.pynutil_objects[2] == s.objects[2], s
        assert s.nutil_objects[2] == s.objects[2], s
        assert s.pynutil_pixels[2] == s.class_pixels[2]


def test_resume_skips_existing_and_is_identical(sample, python_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(python_run.output_folder / "segmentations", out / "segmentations")
    before = {p.name: p.read_bytes() for p in (out / "segmentations").iterdir()}
    result = run_quint(_config(sample, out))
    assert all(s.resumed for s in result.sections)
    assert {p.name: p.read_bytes() for p in (out / "segmentations").iterdir()} == before
    assert [s.objects for s in result.sections] == [s.objects for s in python_run.sections]


def test_same_seed_same_pngs(sample, python_run, tmp_path):
    result = run_quint(_config(sample, tmp_path / "again"))
    for a, b in zip(result.sections, python_run.sections):
        np.testing.assert_array_equal(np.asarray(Image.open(a.output)), np.asarray(Image.open(b.output)))


def test_imagej_engine_gives_identical_pngs(sample, python_run, tmp_path, require_imagej):
    result = run_quint(_config(sample, tmp_path / "ij", run__engine="imagej"))
    for a, b in zip(result.sections, python_run.sections):
        with Image.open(a.output) as ia, Image.open(b.output) as ib:
            assert ia.mode == ib.mode == "P"
            np.testing.assert_array_equal(np.asarray(ia), np.asarray(ib))
            assert ia.getpalette() == ib.getpalette()


def test_rgb_output_and_custom_colour(sample, tmp_path):
    cfg = _config(sample, tmp_path / "rgb", lut__rgb=True, lut__set={2: (10, 200, 30)}, objects__enabled=False)
    result = run_quint(cfg)
    with Image.open(result.sections[0].output) as im:
        assert im.mode == "RGB"
        rgb = np.asarray(im)
    assert (rgb == (10, 200, 30)).all(-1).sum() == result.sections[0].class_pixels[2]


def test_resize(sample, tmp_path):
    result = run_quint(_config(sample, tmp_path / "small", input__resize=0.5, objects__enabled=False))
    with Image.open(result.sections[0].output) as im:
        assert im.size == (160, 128)


def test_bad_inputs(sample, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no section images"):
        run_quint(_config(sample, tmp_path / "o1", input__sections=str(empty)))
    # names without _sXXX are reported before any work
    bad = tmp_path / "bad"
    shutil.copytree(sample / "sections", bad)
    (bad / "brain_s002.png").rename(bad / "brain-002.png")
    with pytest.raises(InputError, match="brain-002.png"):
        run_quint(_config(sample, tmp_path / "o2", input__sections=str(bad)))
    assert not (tmp_path / "o2").exists()
    # a label image that matches no section
    labels = tmp_path / "labels"
    shutil.copytree(sample / "labels", labels)
    shutil.copy(labels / "brain_s001.png", labels / "other_s099.png")
    with pytest.raises(InputError, match="other_s099.png"):
        run_quint(_config(sample, tmp_path / "o3", pixel__labels=str(labels)))
    # mixed channel counts
    mixed = tmp_path / "mixed"
    shutil.copytree(sample / "sections", mixed)
    grey = np.asarray(Image.open(mixed / "brain_s003.png"))
    Image.fromarray(np.stack([grey] * 3, -1)).save(mixed / "brain_s003.png")
    with pytest.raises(InputError, match="channel counts"):
        run_quint(_config(sample, tmp_path / "o4", input__sections=str(mixed)))
    # output folder = input folder
    with pytest.raises(InputError, match="among the input sections"):
        run_quint(_config(sample, sample / "sections" / "segmentations" / "..",
                          output__folder=str(sample / "sections")))


def test_cli_dry_run_and_toml(sample, tmp_path):
    cfg = tmp_path / "quint.toml"
    cfg.write_text(f'''[input]
sections = "{sample / 'sections'}"
[pixel]
labels = "{sample / 'labels'}"
trees = 10
[output]
folder = "out"
''')
    runner = CliRunner()
    res = runner.invoke(main, ["quint", "run", str(cfg), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.count("compute") == 3 and "brain_s002.png" in res.output
    assert not (tmp_path / "out").exists()
    cfg.write_text(cfg.read_text() + "[lut]\nnmae = 'x'\n")
    res = runner.invoke(main, ["quint", "run", str(cfg)])
    assert res.exit_code != 0 and "nmae" in res.output


def test_cli_run_with_flags(sample, tmp_path):
    res = CliRunner().invoke(main, [
        "quint", "run", "--sections", str(sample / "sections"), "--labels", str(sample / "labels"),
        "--trees", "10", "--classes", "2", "--set", "2=0,255,0", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "o" / "segmentations" / "brain_s001.png") as im:
        assert tuple(im.getpalette()[6:9]) == (0, 255, 0)


def test_probabilities_and_object_tables(sample, tmp_path):
    import h5py

    cfg = _config(sample, tmp_path / "extra", output__probabilities=True)
    result = run_quint(cfg)
    out = result.output_folder
    with h5py.File(out / "probabilities" / "brain_s001_Probabilities.h5", "r") as f:
        proba = f["exported_data"][()]
        assert proba.dtype == np.float32 and proba.shape == (256, 320, 2)
        assert "axistags" in f["exported_data"].attrs
    np.testing.assert_allclose(proba.sum(-1), 1, atol=1e-6)
    header = (out / "objects" / "brain_s001_table.csv").read_text().splitlines()[0]
    assert header.startswith("object_id,timestep,labelimage_oid,User Label,Predicted Class,Probability of label")


def test_object_labels_checked_before_the_pixel_work(sample, tmp_path):
    bad = tmp_path / "object_labels"
    shutil.copytree(sample / "object_labels", bad)
    lab = np.asarray(Image.open(bad / "brain_s002.png")).copy()
    lab[5, 5] = 3
    Image.fromarray(lab).save(bad / "brain_s002.png")
    with pytest.raises(InputError, match=r"brain_s002.png: object label 3; use 1 = keep"):
        run_quint(_config(sample, tmp_path / "o1", objects__labels=str(bad)))
    assert not (tmp_path / "o1" / "pixel_model.h5").exists()  # stopped before training
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad / "brain_s002.png")
    with pytest.raises(InputError, match=r"brain_s002.png: label image shape \(10, 10\)"):
        run_quint(_config(sample, tmp_path / "o2", objects__labels=str(bad)))
    assert not (tmp_path / "o2" / "pixel_model.h5").exists()


def test_report_areas_objects_f1_basis_and_next_step(python_run, sample):
    import csv as _csv

    from pyquint.lut import load_lut
    from pyquint.lut.nutil import legend_image

    out = python_run.output_folder
    rows = list(_csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 3
    for row, s in zip(rows, python_run.sections):
        idx = np.asarray(Image.open(s.output))
        background, stain = int(row["Background (class 1) px"]), int(row["Stain (class 2) px"])
        # every class has its area (Background is not 0 although it is not coloured)
        assert background > 0 and background + stain == idx.size
        assert stain == np.count_nonzero(idx == 2) and int(row["index 0 (not coloured) px"]) == np.count_nonzero(idx == 0)
        found, kept = int(row["objects found"]), int(row["objects kept"])
        rejected_by_class = int(row["rejected: classified 'artefact'"])
        assert found == kept + rejected_by_class and rejected_by_class > 0  # the streaks
        assert int(row["rejected: size filter (10..1000000 px)"]) >= 0
        assert kept == int(row["Stain objects (PyNutil)"]) == s.objects[2]
    report = (out / "report.html").read_text()
    assert "Next step in Nutil / PyNutil" in report and "<code>255,0,0</code>" in report
    assert str((out / "segmentations").resolve()) in report
    assert "Pixel F1 (Dice) of class 2 (Stain) in the written PNGs against the pixels equal to 1" in report
    assert "Index 0 of the PNGs holds every pixel not coloured for Nutil: Background (class 1)" in report
    assert "Pixel size: unknown" in report
    # legend at least twice the CLI's default size, with the hex colour
    small = legend_image(["Stain"], load_lut("glasbey"), [2])
    with Image.open(out / "legend.png") as im:
        assert im.width >= 2 * small.width and im.height >= 2 * small.height
        assert tuple(np.asarray(im.convert("RGB"))[im.height // 2, 30]) == (255, 0, 0)
    # overlays: the section with the segmentation drawn over it, objects outlined in their colour
    for s in python_run.sections:
        over = np.asarray(Image.open(out / "overlays" / s.output.name))
        idx = np.asarray(Image.open(s.output))
        raw = np.asarray(Image.open(sample / "sections" / s.output.name))
        assert over.shape == idx.shape + (3,)
        assert np.array_equal(over[idx == 0], np.stack([raw] * 3, -1)[idx == 0])
        from scipy import ndimage as ndi

        edge = (idx == 2) & ~ndi.binary_erosion(idx == 2, structure=ndi.generate_binary_structure(2, 1))
        assert edge.any() and np.all(over[edge] == (255, 0, 0))


def test_report_pixel_size(sample, tmp_path):
    res = CliRunner().invoke(main, [
        "quint", "run", "--sections", str(sample / "sections"), "--labels", str(sample / "labels"),
        "--class-names", "Background,Stain", "--trees", "10", "--classes", "2", "--pixel-size", "2.5",
        "--resize", "0.5", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "Nutil-ready segmentations:" in res.output.splitlines()[-1] and "segmentations/" in res.output
    report = (tmp_path / "o" / "report.html").read_text()
    assert "Pixel size: 5 µm per segmentation pixel" in report
    import csv as _csv

    row = next(_csv.DictReader((tmp_path / "o" / "summary.csv").open()))
    assert float(row["Stain mm²"]) == pytest.approx(int(row["Stain (class 2) px"]) * 25e-6, abs=1e-4)
