"""The helpers every entry point shares: pairing by name, feature-selection specs, thread
counts, PNG writing, colour overrides, model files that are never replaced silently, and the
object and LUT batch functions the CLI calls."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pyquint.errors import InputError
from pyquint.features import FeatureSelection, compute_features, parse_selection
from pyquint.forest import load_model, save_model, train_forest
from pyquint.ilastik import load_feature_selection, selection_from_ilp, write_project
from pyquint.io import png_image, write_png
from pyquint.lut import apply_files, load_lut, parse_color_set
from pyquint.naming import pair_by_name
from pyquint.objects import threshold_objects
from pyquint.objects.batch import pair_objects_files, threshold_files
from pyquint.parallel import available_cpus, resolve_n_jobs
from pyquint.pixel import PixelClassifier


# --------------------------------------------------------------------------- pairing
def test_pair_by_name_prefers_the_first_name_and_never_pairs_a_file_with_itself(tmp_path):
    imgs = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    labels = [tmp_path / "a_labels.png", tmp_path / "a.png", tmp_path / "b.tif"]
    found = pair_by_name(imgs, labels, names=lambda p: [p.stem, p.stem + "_labels"],
                         duplicates="first")
    # a.png answers to itself first, but a file is never its own partner: a_labels.png
    assert found == [tmp_path / "a_labels.png", tmp_path / "b.tif", None]


def test_pair_by_name_refuses_two_candidates_with_one_name(tmp_path):
    with pytest.raises(InputError, match=r"two label files for 'x': .*x\.png and .*x\.tif"):
        pair_by_name([tmp_path / "x.png"], [tmp_path / "x.png", tmp_path / "x.tif"], what="label")
    first = pair_by_name([tmp_path / "y.h5"], [tmp_path / "x.png", tmp_path / "x.tif"],
                         names=lambda p: ["x"], duplicates="first")
    assert first == [tmp_path / "x.png"]


def test_objects_pairing_strips_ilastik_export_suffixes(tmp_path):
    raws = [tmp_path / "r" / "brain_s001.png", tmp_path / "r" / "brain_s002.png"]
    maps = [tmp_path / "p" / "brain_s002_Probabilities.h5", tmp_path / "p" / "brain_s001.h5"]
    assert pair_objects_files(raws, maps, "probability") == [maps[1], maps[0]]
    with pytest.raises(InputError, match="no probability file with the name of .*brain_s003"):
        pair_objects_files([tmp_path / "brain_s003.png"], maps, "probability")


# --------------------------------------------------------------------------- feature specs
def test_parse_selection_accepts_every_form(tmp_path):
    sel = FeatureSelection.steinbock()
    assert parse_selection("ALL") == FeatureSelection.all()
    assert parse_selection(" steinbock ") == sel
    assert parse_selection(json.dumps(sel.to_dict())) == sel
    assert parse_selection(sel.to_dict()) == sel and parse_selection(sel) is sel
    (tmp_path / "s.json").write_text(json.dumps(sel.to_dict()), encoding="utf-8")
    assert parse_selection(str(tmp_path / "s.json")) == sel
    with pytest.raises(InputError, match=r"^--selection 'nope': use 'all'"):
        parse_selection("nope", option="--selection")
    with pytest.raises(InputError, match="invalid JSON"):
        parse_selection("{not json")


def test_an_ilp_selection_is_read_by_the_ilastik_layer(tmp_path):
    matrix = np.zeros((6, 7), bool)
    matrix[0, 1] = matrix[3, 4] = True
    sel = FeatureSelection(matrix, FeatureSelection.all().scales)
    project = write_project(tmp_path / "p.ilp", [np.zeros((32, 32), np.uint8)], None, sel)
    with pytest.raises(InputError, match="load_feature_selection"):
        parse_selection(str(project))
    assert load_feature_selection(str(project)) == sel
    with h5py.File(project, "r") as f:
        assert selection_from_ilp(f["FeatureSelections"]) == sel
        with pytest.warns(DeprecationWarning, match="selection_from_ilp"):
            assert FeatureSelection.from_ilp(f["FeatureSelections"]) == sel


# --------------------------------------------------------------------------- threads
def test_resolve_n_jobs_one_rule():
    cores = available_cpus()
    assert resolve_n_jobs(None) == resolve_n_jobs(-1) == resolve_n_jobs(0) == cores
    assert resolve_n_jobs(1) == 1
    assert resolve_n_jobs(10_000) == cores
    with pytest.warns(DeprecationWarning, match="n_threads= is deprecated"):
        assert resolve_n_jobs(None, alias=1) == 1


def test_compute_features_n_threads_is_a_deprecated_n_jobs():
    image = np.random.default_rng(0).integers(0, 255, (40, 48)).astype(np.uint8)
    sel = FeatureSelection.steinbock()
    expected = compute_features(image, sel, n_jobs=1)
    with pytest.warns(DeprecationWarning):
        old = compute_features(image, sel, n_threads=2)
    assert np.array_equal(old, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(compute_features(image, sel, n_jobs=-1), expected)


# --------------------------------------------------------------------------- PNG
@pytest.mark.parametrize("shape,dtype,mode", [((5, 7), np.uint8, "L"), ((5, 7), np.uint16, "I;16"),
                                              ((5, 7, 3), np.uint8, "RGB"), ((5, 7, 2), np.uint8, "LA"),
                                              ((5, 7, 1), np.uint8, "L")])
def test_write_png_round_trips_through_pillow(tmp_path, shape, dtype, mode):
    data = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, shape).astype(dtype)
    path = write_png(tmp_path / "x.png", data)
    with Image.open(path) as im:
        assert im.mode == mode
        back = np.asarray(im)
    assert np.array_equal(back, data.reshape(back.shape))
    buf = write_png(io.BytesIO(), data)
    assert buf.getvalue() == path.read_bytes()


def test_write_png_palette_and_refusals(tmp_path):
    lut = load_lut("glasbey")
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with Image.open(write_png(tmp_path / "p.png", labels, palette=lut.table)) as im:
        assert im.mode == "P" and np.array_equal(np.asarray(im), labels)
        assert np.array_equal(np.array(im.getpalette()).reshape(-1, 3), lut.table)
    with pytest.raises(InputError, match="uint8 or uint16"):
        png_image(np.zeros((3, 3), np.float32))
    with pytest.raises(InputError, match="at most 4 channels"):
        png_image(np.zeros((3, 3, 5), np.uint8))


# --------------------------------------------------------------------------- colours
def test_parse_color_set():
    assert parse_color_set(["2=255,0,0", "0=1, 2, 3"]) == {2: (255, 0, 0), 0: (1, 2, 3)}
    with pytest.raises(InputError, match=r"^--set '2=300,0,0': index 0..255"):
        parse_color_set(["2=300,0,0"])
    with pytest.raises(InputError, match="use INDEX=R,G,B"):
        parse_color_set(["red"])


# --------------------------------------------------------------------------- model files
def test_save_refuses_to_replace_a_model_unless_asked(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (24, 24)).astype(np.uint8)
    labels = np.zeros((24, 24), np.uint8)
    labels[:4], labels[-4:] = 1, 2
    matrix = np.zeros((6, 2), bool)
    matrix[0] = True
    clf = PixelClassifier(features=FeatureSelection(matrix, (0.7, 1.6)), n_trees=3, seed=0)
    clf.fit([image], [labels])
    path = clf.save(tmp_path / "m.h5")
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"m\.h5 exists; pass overwrite=True"):
        clf.save(path)
    assert path.read_bytes() == before  # untouched
    clf.save(path, overwrite=True)
    assert np.array_equal(PixelClassifier.load(path).predict(image), clf.predict(image))
    forest = train_forest(rng.random((20, 2), dtype=np.float32), np.repeat([1, 2], 10), n_trees=2, seed=0)
    with pytest.raises(InputError, match="exists"):
        save_model(path, "pixel", forest, {}, overwrite=False)
    save_model(path, "pixel", forest, {})  # the low-level writer keeps replacing by default
    assert load_model(path)[0].n_trees == 2


# --------------------------------------------------------------------------- batches
def test_threshold_files_equals_threshold_objects(tmp_path):
    rng = np.random.default_rng(3)
    proba = rng.random((30, 40, 2)).astype(np.float32)
    (tmp_path / "in").mkdir()
    with h5py.File(tmp_path / "in" / "brain_s001_Probabilities.h5", "w") as f:
        f["exported_data"] = proba
    result = threshold_files([tmp_path / "in"], tmp_path / "out", {"min_size": 2})
    assert (result.done, result.skipped, result.failures) == (1, 0, [])
    with h5py.File(tmp_path / "out" / "brain_s001_Object Identities.h5", "r") as f:
        got = f["exported_data"][()]
    want = threshold_objects(proba, channel=1, threshold=0.5, sigma=(1.0, 1.0), min_size=2, max_size=1_000_000)
    assert np.array_equal(got.reshape(want.shape), want)
    again = threshold_files([tmp_path / "in"], tmp_path / "out", {"min_size": 2})
    assert (again.done, again.skipped) == (0, 1)  # resumes


def test_apply_files_writes_imagejs_palette_pngs(tmp_path):
    lut = load_lut("glasbey")
    labels = np.random.default_rng(4).integers(0, 4, (10, 12)).astype(np.uint8)
    (tmp_path / "seg").mkdir()
    Image.fromarray(labels).save(tmp_path / "seg" / "brain s001.png")
    reported: list[str] = []
    result = apply_files([tmp_path / "seg"], tmp_path / "out", lut, classes=[2], report=reported.append)
    assert reported and reported == result.name_problems  # the space breaks Nutil's rules
    assert result.written == [tmp_path / "out" / "brain s001.png"]
    with Image.open(result.written[0]) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im), np.where(labels == 2, 2, 0))
        assert np.array_equal(np.array(im.getpalette()).reshape(-1, 3), lut.table)
    with pytest.raises(InputError, match="Nutil cannot use"):
        apply_files([tmp_path / "seg"], tmp_path / "out2", lut, check_names=True)
    assert not (tmp_path / "out2").exists()
    fixed = apply_files([tmp_path / "seg"], tmp_path / "out3", lut, nutil_names=True)
    assert fixed.written == [tmp_path / "out3" / "brain_s001.png"] and not fixed.name_problems
    assert Path(tmp_path / "seg" / "brain s001.png").is_file()  # the input is never touched
