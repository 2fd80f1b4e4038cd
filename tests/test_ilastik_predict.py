"""Prediction with ilastik projects: pc.ilp's stored forest, retraining, headless batch exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pyquint.errors import InputError
from pyquint.features import compute_features
from pyquint.ilastik import (
    ProjectPredictor,
    default_rounding,
    predict_project,
    read_project,
    write_project,
)
from pyquint.io import axistags_json, parse_axistags

# pc.ilp's labels lie in y 329..746, x 191..660; this crop holds them all plus the features' reach
CROP = (slice(300, 780), slice(160, 700))


@pytest.fixture(scope="module")
def pc(pc_ilp: Path):
    project = read_project(pc_ilp)
    raw, axes = project.read_lane(0)
    labels = project.label_image(0)[..., 0]
    stored = ProjectPredictor(project).fit()
    return project, raw, axes, labels, stored


@pytest.fixture(scope="module")
def stored_segmentation(pc):
    _, raw, axes, _, stored = pc
    return stored.predict(raw, axes)


@pytest.fixture(scope="module")
def made(forested_ilp: Path):
    """The same as ``pc`` for a pyquint-written project with a stored vigra-layout forest."""
    project = read_project(forested_ilp)
    raw, axes = project.read_lane(0)
    labels = project.label_image(0)[..., 0]
    stored = ProjectPredictor(project).fit()
    return project, raw, axes, labels, stored


@pytest.fixture
def made_png(tmp_path: Path) -> Path:
    """A 160x200 synthetic section (not the project's own image), beside which exports land."""
    from pyquint.data import make_section

    path = tmp_path / "piece.png"
    Image.fromarray(make_section(12, (160, 200)).image).save(path)
    return path


@pytest.fixture
def small_png(cells_png: Path, tmp_path: Path) -> Path:
    """A 160x200 piece of the reference image, beside which exports land."""
    image = np.asarray(Image.open(cells_png))[380:540, 300:500]
    path = tmp_path / "piece.png"
    Image.fromarray(image).save(path)
    return path


# --------------------------------------------------------------------------- must show
def test_stored_forest_classifies_its_labelled_pixels(pc, stored_segmentation) -> None:
    project, _, _, labels, stored = pc
    assert stored.rounding_ == "fast" and not stored.retrained_
    labelled = labels > 0
    accuracy = float(np.mean(stored_segmentation[labelled] == labels[labelled]))
    print(f"\nstored vigra forest on pyquint features: {accuracy:.4%} of "
          f"{int(labelled.sum())} labelled pixels correct")
    assert accuracy >= 0.99
    assert stored_segmentation.shape == labels.shape and set(np.unique(stored_segmentation)) == {1, 2}


def test_retrained_forest_agrees_with_stored(pc, stored_segmentation) -> None:
    project, raw, axes, labels, _ = pc
    retrained = ProjectPredictor(project, retrain=True, seed=0).fit()
    assert retrained.retrained_ and retrained.classifier_.forest_.n_trees == 100
    seg = retrained.predict(raw, axes)
    labelled = labels > 0
    accuracy = float(np.mean(seg[labelled] == labels[labelled]))
    agreement = float(np.mean(seg == stored_segmentation))
    print(f"\nretrained pyquint forest: {accuracy:.4%} of labelled pixels correct; Simple "
          f"Segmentation agrees with the stored forest's on {agreement:.4%} of "
          f"{seg.size} pixels")
    assert accuracy >= 0.99
    assert agreement >= 0.98


def test_fast_rounding_agrees_with_exact(pc) -> None:
    """The default ("fast") features give the same segmentation as fastfilters-exact ones."""
    project, raw, _, _, stored = pc
    image = raw[CROP]
    sel = project.feature_selection()
    forest = stored.classifier_.forest_
    segs = {}
    for rounding in ("fast", "exact"):
        feats = compute_features(image, sel, axes="yxc", rounding=rounding)
        proba = forest.predict_proba(feats.reshape(-1, 49), n_classes=2)
        segs[rounding] = proba.argmax(1)
    agreement = float(np.mean(segs["fast"] == segs["exact"]))
    print(f"\nfast vs exact features, stored forest: {agreement:.5%} of {segs['fast'].size} pixels agree")
    assert agreement >= 0.999


def test_default_rounding_by_version(made, tmp_path: Path) -> None:
    project = made[0]
    assert default_rounding(project) == "fast"
    path = tmp_path / "old.ilp"
    shutil.copyfile(project.path, path)
    with h5py.File(path, "a") as f:
        del f["ilastikVersion"]
        f.create_dataset("ilastikVersion", data=b"1.3.3post1")
    with h5py.File(path, "a") as f:
        blocks = list(f["PixelClassification/LabelSets/labels000"].values())
        assert all(blk.ndim == 3 for blk in blocks)
        for blk in blocks:
            del blk.attrs["axistags"]
    old = read_project(path)
    assert default_rounding(old) == "muladd"
    # 3-D blocks cannot be 1.3.3post1's 5-D txyzc: the lane's own order is used instead
    assert [b.stored_axes for b in old.label_blocks] == ["yxc"] * len(blocks)
    assert np.array_equal(old.label_image(0), project.label_image(0))


def test_probabilities_properties(made, made_png: Path) -> None:
    _, _, _, _, stored = made
    image = np.asarray(Image.open(made_png))
    proba = stored.predict_proba(image, "yx")
    assert proba.dtype == np.float32 and proba.shape == image.shape + (2,)
    assert np.allclose(proba.sum(-1), 1, atol=1e-6)
    assert np.allclose(proba * 100, np.round(proba * 100), atol=1e-4)  # 100 pure trees
    seg = stored.predict(image, "yx")
    assert np.array_equal(seg, proba.argmax(-1) + 1)


# --------------------------------------------------------------------------- headless batch
def test_predict_project_several_sources(forested_ilp: Path, made_png: Path, made) -> None:
    written = predict_project(forested_ilp, [made_png],
                              export_source=["Probabilities", "simple segmentation", "Uncertainty", "Labels"])
    d = made_png.parent
    names = sorted(p.name for p in written)
    assert names == sorted(f"piece_{s}.h5" for s in ("Probabilities", "Simple Segmentation", "Uncertainty", "Labels"))
    expected = made[4].predict_proba(np.asarray(Image.open(made_png)), "yx")
    with h5py.File(d / "piece_Probabilities.h5", "r") as f:
        ds = f["exported_data"]
        assert ds.dtype == np.float32 and ds.shape == (160, 200, 2)
        assert parse_axistags(ds.attrs["axistags"]) == "yxc"
        assert ds.attrs["drange"].tolist() == [0.0, 1.0]
        assert np.array_equal(ds[()], expected)
    with h5py.File(d / "piece_Simple Segmentation.h5", "r") as f:
        seg = f["exported_data"][()]
        assert seg.dtype == np.uint8 and seg.shape == (160, 200, 1)
        assert np.array_equal(seg[..., 0], expected.argmax(-1) + 1)
    with h5py.File(d / "piece_Uncertainty.h5", "r") as f:
        unc = f["exported_data"][()]
        assert unc.dtype == np.float32
        assert np.allclose(unc[..., 0], 1 - np.abs(expected[..., 0] - expected[..., 1]), atol=1e-6)
    with h5py.File(d / "piece_Labels.h5", "r") as f:
        assert f["exported_data"].dtype == np.uint8 and not f["exported_data"][()].any()
    # resume: everything exists, nothing is recomputed; --overwrite rewrites
    assert predict_project(forested_ilp, [made_png], export_source="Probabilities") == []
    again = predict_project(forested_ilp, [made_png], export_source="Probabilities", overwrite=True)
    assert [p.name for p in again] == ["piece_Probabilities.h5"]


def test_predict_project_conversion_and_formats(forested_ilp: Path, made_png: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    written = predict_project(
        forested_ilp, [made_png], export_source="Probabilities", output_format="tiff",
        output_filename_format=str(out_dir / "{nickname}_{result_type}_{x_stop}x{y_stop}"),
        export_dtype="uint8", pipeline_result_drange="(0.0,1.0)", export_drange="(0,255)",
        output_axis_order="cyx",
    )
    assert [p.name for p in written] == ["piece_Probabilities_200x160.tiff"]
    import tifffile

    data = tifffile.imread(written[0])
    assert data.dtype == np.uint8 and data.shape == (2, 160, 200)
    with h5py.File(_reference_h5(forested_ilp, made_png, tmp_path), "r") as f:
        proba = f["exported_data"][()]
    assert np.array_equal(data, np.rint(np.moveaxis(proba, -1, 0) * 255).astype(np.uint8))


def _reference_h5(project: Path, png: Path, tmp_path: Path) -> Path:
    (written,) = predict_project(project, [png], output_filename_format=str(tmp_path / "ref"))
    return written


def test_h5_input_keeps_its_axis_order(forested_ilp: Path, made_png: Path, tmp_path: Path) -> None:
    image = np.asarray(Image.open(made_png))
    h5 = tmp_path / "stack.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("volume/data", data=image[np.newaxis]).attrs["axistags"] = axistags_json("cyx")
    (out,) = predict_project(forested_ilp, [f"{h5}/volume/data"], export_source="Simple Segmentation",
                             output_format="hdf5")
    assert out.name == "stack-volume-data_Simple Segmentation.h5"
    with h5py.File(out, "r") as f:
        ds = f["exported_data"]
        assert parse_axistags(ds.attrs["axistags"]) == "cyx" and ds.shape == (1, 160, 200)


def test_project_export_settings_are_defaults(made_png: Path, tmp_path: Path, made) -> None:
    project, raw, axes, labels, _ = made
    settings = {"OutputFormat": "png", "OutputFilenameFormat": "{dataset_dir}/{nickname}_seg",
                "ExportDtype": "uint8", "InputMin": 0.0, "InputMax": 1.0, "ExportMin": 0, "ExportMax": 255}
    path = write_project(tmp_path / "own.ilp", [raw], [labels], project.feature_selection(),
                         axes=axes, export_settings=settings)
    (out,) = predict_project(path, [made_png], export_source="Probabilities", seed=1)
    assert out.name == "piece_seg.png"
    png = np.asarray(Image.open(out))
    assert png.dtype == np.uint8 and png.shape == (160, 200, 2)  # gray + alpha, as vigra
    assert png.max() == 255 and png.min() == 0


# --------------------------------------------------------------------------- retrain and errors
def test_retrain_from_referenced_images(made, tmp_path: Path) -> None:
    project, raw, axes, labels, _ = made
    img_path = tmp_path / "imgs" / "crop.png"
    img_path.parent.mkdir()
    Image.fromarray(raw.reshape(labels.shape)).save(img_path)
    path = write_project(tmp_path / "ref.ilp", [img_path], [labels], project.feature_selection(),
                         store_raw=False)
    seg = ProjectPredictor(path, seed=3).fit().predict(raw, axes)  # no forest: retrains
    crop_labels = labels
    assert np.mean(seg[crop_labels > 0] == crop_labels[crop_labels > 0]) >= 0.99
    # the image moves: a clear error listing it, or found again through search_dirs
    moved = tmp_path / "moved"
    img_path.parent.rename(moved)
    with pytest.raises(InputError, match="missing.*imgs/crop.png"):
        ProjectPredictor(path).fit()
    ProjectPredictor(path, search_dirs=[moved], seed=3).fit()


def test_no_labels_and_no_forest(tmp_path: Path) -> None:
    from pyquint.features import FeatureSelection

    path = write_project(tmp_path / "p.ilp", [np.zeros((64, 64), np.uint8)], None, FeatureSelection.all())
    with pytest.raises(InputError, match="no trained classifier and no labels"):
        ProjectPredictor(path).fit()
    empty = write_project(tmp_path / "q.ilp", [np.zeros((64, 64), np.uint8)], None, None)
    with pytest.raises(InputError, match="selects no features"):
        ProjectPredictor(empty).fit()


def test_forest_feature_count_mismatch(forested_ilp: Path, tmp_path: Path) -> None:
    path = tmp_path / "pc.ilp"
    shutil.copyfile(forested_ilp, path)
    with h5py.File(path, "a") as f:
        m = f["FeatureSelections/SelectionMatrix"][()]
        m[5, :] = False
        f["FeatureSelections/SelectionMatrix"][...] = m
    with pytest.raises(InputError, match="49 features but the feature selection gives 37"):
        ProjectPredictor(path).fit()


def test_wrong_channel_count(forested_ilp: Path, tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(rgb)
    with pytest.raises(InputError, match=r"rgb\.png.*3 channel"):
        predict_project(forested_ilp, [rgb])


def test_never_overwrites_inputs(forested_ilp: Path, made_png: Path) -> None:
    with pytest.raises(InputError, match="overwrite an input"):
        predict_project(forested_ilp, [made_png], output_format="png",
                        output_filename_format="{dataset_dir}/piece")
    with pytest.raises(InputError, match="unknown export source"):
        predict_project(forested_ilp, [made_png], export_source="Probs")
