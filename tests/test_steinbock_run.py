"""`pyquint steinbock run`: probabilities without ilastik, in steinbock's TIFF format."""

from __future__ import annotations

import gzip
import importlib
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
from pyquint.steinbock import SteinbockClassifier, prepare, read_ilastik_h5, run, write_labels
from pyquint.steinbock.run import probabilities_to_uint16

run_module = importlib.import_module("pyquint.steinbock.run")  # the package's `run` is the function
NUC_R, CELL_R, SCALE, CROP = 4.0, 8.5, 2, 80


# --------------------------------------------------------------------------- synthetic cells
def _centres(seed: int, h: int = 100, w: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([(cy + rng.uniform(-3, 3), cx + rng.uniform(-3, 3))
                     for cy in range(10, h - 5, 20) for cx in range(10, w - 5, 20)])


def _truth(centres: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1 nucleus (r <= 4), 2 cytoplasm (r <= 8.5), 3 background; and the distance to a centre."""
    d = np.min([np.hypot(yy - cy, xx - cx) for cy, cx in centres], axis=0)
    t = np.full(yy.shape, 3, np.uint8)
    t[d <= CELL_R] = 2
    t[d <= NUC_R] = 1
    return t, d


def _scaled_truth(centres: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    # pixel d of the x2 image is centred on source coordinate (d + 0.5) / 2 - 0.5 (OpenCV)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return _truth(centres, (yy + 0.5) / SCALE - 0.5, (xx + 0.5) / SCALE - 0.5)


def _away_from_edges(d: np.ndarray, margin: float = 1.5) -> np.ndarray:
    return (np.abs(d - NUC_R) > margin) & (np.abs(d - CELL_R) > margin)


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """IMC-like images (DNA in nuclei, a membrane/cytoplasm marker around them, one noise
    channel), prepared by pyquint, crops labelled from the known geometry."""
    folder = tmp_path_factory.mktemp("cells")
    (folder / "img").mkdir()
    centres = {}
    for i, seed in enumerate((1, 2, 3)):
        c = _centres(seed)
        yy, xx = np.mgrid[0:100, 0:120].astype(float)
        t, _ = _truth(c, yy, xx)
        img = np.stack([np.where(t == 1, 40.0, 2.0), np.where(t == 2, 25.0, np.where(t == 1, 8.0, 1.0)),
                        np.full(t.shape, 5.0)])
        img += np.random.default_rng(seed + 100).normal(0, 2.0, img.shape)
        img = np.clip(img, 0, None).astype(np.float32)
        tifffile.imwrite(folder / "img" / f"cells_{i}.tiff", img[None, None, ..., None], imagej=True)
        centres[f"cells_{i}"] = c
    (folder / "panel.csv").write_text("channel,name,keep,ilastik\nDNA,DNA,1,1\nMem,Membrane,1,2\nBg,Other,1,\n")
    result = prepare(folder / "img", folder / "panel.csv", folder / "pixel_classifier.ilp", crop_size=CROP,
                     seed=1, img_out=folder / "ilastik_img", crop_out=folder / "ilastik_crops")
    labels = []
    for crop in result.crop_files:
        x, y = result.crop_positions[crop]
        t, d = _scaled_truth(centres[crop.stem.split("_x")[0]], (200, 240))
        lab = np.where(_away_from_edges(d), t, 0)[y : y + CROP, x : x + CROP]
        labels.append(lab[::2, ::2].repeat(2, 0).repeat(2, 1))  # sparse, like brush strokes
    write_labels(folder / "pixel_classifier.ilp", labels)
    return folder, centres


@pytest.fixture(scope="module")
def predicted(cells, tmp_path_factory) -> Path:
    folder, _ = cells
    runner = CliRunner()
    result = runner.invoke(main, ["steinbock", "run", "--ilp", str(folder / "pixel_classifier.ilp"),
                                  "--img", str(folder / "ilastik_img"), "-o", str(folder / "ilastik_probabilities"),
                                  "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert "3 probability images written" in result.output and "retrained on" in result.output
    return folder / "ilastik_probabilities"


# --------------------------------------------------------------------------- format
def test_probability_tiffs_format(predicted: Path) -> None:
    files = sorted(predicted.iterdir())
    assert [f.name for f in files] == ["cells_0.tiff", "cells_1.tiff", "cells_2.tiff"]
    for f in files:
        data = tifffile.imread(f)
        assert data.dtype == np.uint16 and data.shape == (200, 240, 3)  # scale x original, YXS
        with tifffile.TiffFile(f) as tif:
            assert len(tif.pages) == 1
            page = tif.pages[0]
            assert page.photometric == tifffile.PHOTOMETRIC.RGB
            assert page.planarconfig == tifffile.PLANARCONFIG.CONTIG
            assert page.compression == tifffile.COMPRESSION.NONE
            assert page.samplesperpixel == 3


def test_documented_scaling_of_values(predicted: Path) -> None:
    # a retrained 100-tree forest with pure leaves gives p = k/100; ilastik exports
    # uint16(p * float32(65535)), truncating
    allowed = (np.arange(101, dtype=np.float32) / np.float32(100) * np.float32(65535)).astype(np.int64)
    for f in sorted(predicted.iterdir()):
        data = tifffile.imread(f).astype(np.int64)
        nearest = np.abs(data[..., None] - allowed).min(-1)
        assert nearest.max() <= 1
        total = data.sum(-1)
        assert total.min() >= 65535 - 3 and total.max() <= 65535
        assert data.max() == 65535


def test_probabilities_to_uint16_truncates() -> None:
    p = np.array([0.0, 1.0, 0.5, 0.25, 0.99999, 0.1], np.float32)
    np.testing.assert_array_equal(probabilities_to_uint16(p), [0, 65535, 32767, 16383, 65534, 6553])


def test_probabilities_separate_the_classes(predicted: Path, cells) -> None:
    _, centres = cells
    for f in sorted(predicted.iterdir()):
        data = tifffile.imread(f)
        t, d = _scaled_truth(centres[f.stem], data.shape[:2])
        ok = _away_from_edges(d)
        pred = data.argmax(-1) + 1  # channels in label order: Nucleus, Cytoplasm, Background
        assert (pred == t)[ok].mean() > 0.97, f.name
        for c in (1, 2, 3):
            recall = ((pred == c) & (t == c) & ok).sum() / ((t == c) & ok).sum()
            assert recall > 0.9, (f.name, c, recall)
            # confident where the truth is unambiguous
            assert np.median(data[..., c - 1][(t == c) & ok]) > 0.8 * 65535


def test_resume_and_overwrite(cells, predicted: Path, tmp_path: Path) -> None:
    folder, _ = cells
    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    stamp = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    result = run(folder / "pixel_classifier.ilp", folder / "ilastik_img", out)
    assert result.written == [] and len(result.skipped) == 3
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamp
    (out / "cells_1.tiff").unlink()
    result = run(folder / "pixel_classifier.ilp", folder / "ilastik_img", out, n_jobs=1, n_trees=10)
    assert [f.name for f in result.written] == ["cells_1.tiff"] and len(result.skipped) == 2
    assert (out / "cells_0.tiff").stat().st_mtime_ns == stamp["cells_0.tiff"]


def test_same_seed_same_probabilities(cells, tmp_path: Path) -> None:
    folder, _ = cells
    (tmp_path / "img").mkdir()
    shutil.copy(folder / "ilastik_img" / "cells_2.h5", tmp_path / "img")
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run(folder / "pixel_classifier.ilp", tmp_path / "img", tmp_path / name, n_jobs=1, seed=seed, n_trees=10)
        outs.append(tifffile.imread(tmp_path / name / "cells_2.tiff"))
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_tiles_give_the_whole_image_result(cells, monkeypatch) -> None:
    folder, _ = cells
    clf = SteinbockClassifier.from_project(folder / "pixel_classifier.ilp", n_jobs=1, n_trees=10)
    image = read_ilastik_h5(folder / "ilastik_img" / "cells_0.h5", "img")
    whole = clf.predict_proba(image)
    monkeypatch.setattr(run_module, "_TILE", 37)
    np.testing.assert_array_equal(clf.predict_proba(image), whole)


def test_threads_is_a_deprecated_n_jobs_and_rounding_follows_the_project(cells, tmp_path: Path) -> None:
    from pyquint.ilastik import default_rounding, read_project

    folder, _ = cells
    project = folder / "pixel_classifier.ilp"
    clf = SteinbockClassifier.from_project(project, n_jobs=1, n_trees=5)
    # the same default as every other .ilp entry point (ilastik predict, large predict)
    assert clf.rounding == clf.classifier.rounding == default_rounding(read_project(project))
    image = read_ilastik_h5(folder / "ilastik_img" / "cells_0.h5", "img")
    with pytest.warns(DeprecationWarning, match="threads= is deprecated; use n_jobs="):
        old = clf.predict_proba(image, threads=1)
    np.testing.assert_array_equal(old, clf.predict_proba(image, n_jobs=1))
    (tmp_path / "img").mkdir()
    shutil.copy(folder / "ilastik_img" / "cells_2.h5", tmp_path / "img")
    with pytest.warns(DeprecationWarning, match="threads= is deprecated"):
        run(project, tmp_path / "img", tmp_path / "a", threads=1, seed=3, n_trees=5)
    run(project, tmp_path / "img", tmp_path / "b", n_jobs=1, seed=3, n_trees=5)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / "cells_2.tiff"),
                                  tifffile.imread(tmp_path / "b" / "cells_2.tiff"))


# --------------------------------------------------------------------------- bad input
def test_project_without_labels(tmp_path: Path) -> None:
    write_imc_inputs(tmp_path)
    prepare(tmp_path / "img", tmp_path / "panel.csv", tmp_path / "pixel_classifier.ilp", crop_size=50,
            img_out=tmp_path / "ilastik_img", crop_out=tmp_path / "ilastik_crops")
    with pytest.raises(InputError, match="has no labels"):
        run(tmp_path / "pixel_classifier.ilp", tmp_path / "ilastik_img", tmp_path / "out")
    result = CliRunner().invoke(main, ["steinbock", "run", "--ilp", str(tmp_path / "pixel_classifier.ilp"),
                                       "--img", str(tmp_path / "ilastik_img"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "has no labels" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_images_with_other_channels_than_the_crops(cells, tmp_path: Path) -> None:
    folder, _ = cells
    (tmp_path / "img").mkdir()
    with h5py.File(folder / "ilastik_img" / "cells_0.h5", "r") as f:
        data = f["img"][()]
    from pyquint.steinbock import write_ilastik_h5

    write_ilastik_h5(tmp_path / "img" / "two.h5", data[:2], "img")
    with pytest.raises(InputError, match="two.h5.*different channels"):
        run(folder / "pixel_classifier.ilp", tmp_path / "img", tmp_path / "out", n_trees=5)


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    with pytest.raises(InputError, match="no Ilastik images"):
        run(tmp_path / "p.ilp", tmp_path / "img", tmp_path / "out")


# --------------------------------------------------------------------------- real steinbock files
def test_run_on_steinbock_made_project(tmp_path: Path, reference_dir: Path) -> None:
    """steinbock's own prepare output (with its pickled ClassifierFactory), labelled by intensity."""
    ref = reference_dir / "steinbock" / "run_default"
    for d in ("ilastik_img", "ilastik_crops"):
        shutil.copytree(ref / d, tmp_path / d)
    with gzip.open(ref / "pixel_classifier.ilp.gz") as src, (tmp_path / "pixel_classifier.ilp").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    labels = []
    for crop in sorted((tmp_path / "ilastik_crops").glob("*.h5")):
        mean = read_ilastik_h5(crop, "crop")[0]
        lo, mid_lo, mid_hi, hi = np.percentile(mean, [15, 45, 55, 85])
        labels.append(np.select([mean >= hi, (mean >= mid_lo) & (mean <= mid_hi), mean <= lo], [1, 2, 3], 0))
    write_labels(tmp_path / "pixel_classifier.ilp", labels)
    result = run(tmp_path / "pixel_classifier.ilp", tmp_path / "ilastik_img", tmp_path / "ilastik_probabilities",
                 n_trees=20, n_jobs=2)
    assert [f.name for f in result.written] == ["synth_a.tiff", "synth_b.tiff", "synth_c.tiff"]
    for f in result.written:
        proba = tifffile.imread(f)
        assert proba.shape == (200, 240, 3) and proba.dtype == np.uint16
        mean = read_ilastik_h5(tmp_path / "ilastik_img" / f"{f.stem}.h5", "img")[0]
        pred = proba.argmax(-1)
        # brighter classes stay brighter: nucleus > cytoplasm > background in the mean channel
        levels = [np.median(mean[pred == c]) for c in (0, 1, 2)]
        assert levels[0] > levels[1] > levels[2], levels


def test_stored_forest_is_used(forested_ilp: Path) -> None:
    """A project with a stored forest: that forest (not a retrain) classifies its labelled pixels."""
    from pyquint.ilastik.project import read_project

    project = read_project(forested_ilp)
    clf = SteinbockClassifier.from_project(forested_ilp, n_jobs=2)
    assert clf.source == "stored forest" and clf.forest.n_features == 49
    image, _ = project.read_lane(0)
    region = image.reshape(image.shape[:2])[np.newaxis]
    proba = clf.predict_proba(region, n_jobs=2)
    labels = project.label_image(0)[..., 0]
    mask = labels > 0
    agreement = (proba.argmax(-1) + 1)[mask] == labels[mask]
    assert agreement.mean() > 0.97


