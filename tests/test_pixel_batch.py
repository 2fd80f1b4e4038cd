"""pyquint.pixel_batch: ExportSpec, predict_files (plan, guard, resume, failures) and
train_files, with files read back through h5py and Pillow."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pyquint.errors import InputError
from pyquint.features import FeatureSelection
from pyquint.pixel import PixelClassifier
from pyquint.pixel_batch import ExportSpec, plan_outputs, predict_files, train_files

SMALL = FeatureSelection.from_dict({"matrix": [[1, 1], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0]],
                                    "scales": [0.7, 1.6]})


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(60, 8, (40, 48))
    image[:, 24:] += 90
    labels = np.zeros(image.shape, np.uint8)
    labels[5:35:3, 3:18] = 1
    labels[5:35:3, 30:45] = 2
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def clf() -> PixelClassifier:
    image, labels = _scene(0)
    return PixelClassifier(SMALL, n_trees=8, seed=0).fit(image, labels)


@pytest.fixture()
def pngs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in (1, 2):
        paths.append(folder / f"sec_s00{i}.png")
        Image.fromarray(_scene(i)[0]).save(paths[-1])
    return paths


def test_export_spec_normalises_and_validates(tmp_path: Path) -> None:
    spec = ExportSpec(sources=["simple segmentation", "Simple Segmentation", "probabilities"],
                      format="H5", axis_order="CYX")
    assert spec.sources == ("Simple Segmentation", "Probabilities")
    assert spec.format == "hdf5" and spec.axis_order == "cyx" and not spec.needs_shape
    assert ExportSpec(sources=()).sources == ("Probabilities",)
    assert ExportSpec(filename_format="{dataset_dir}/{nickname}_{x_stop}").needs_shape
    outs = ExportSpec(format="png", output_dir=tmp_path).output_paths("a/b/sec.tif")
    assert outs == {"Probabilities": tmp_path / "sec_Probabilities.png"}
    with pytest.raises(InputError, match="unknown export source"):
        ExportSpec(sources=["Probs"])
    with pytest.raises(InputError, match="unknown output format"):
        ExportSpec(format="jpeg")


def test_predict_files_writes_resumes_and_overwrites(clf, pngs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = ExportSpec(sources=("Probabilities", "Simple Segmentation"), output_dir=out)
    result = predict_files(clf, [pngs[0].parent], spec)
    assert sorted(p.name for p in result.written) == sorted(
        f"sec_s00{i}_{s}.h5" for i in (1, 2) for s in ("Probabilities", "Simple Segmentation"))
    assert result.skipped == [] and result.failed == []
    for png in pngs:
        image = np.asarray(Image.open(png))
        with h5py.File(out / f"{png.stem}_Probabilities.h5", "r") as f:
            assert np.array_equal(f["exported_data"][()], clf.predict_proba(image))
        with h5py.File(out / f"{png.stem}_Simple Segmentation.h5", "r") as f:
            assert np.array_equal(f["exported_data"][..., 0], clf.predict(image))

    built = []

    def builder() -> PixelClassifier:
        built.append(1)
        return clf

    (out / "sec_s002_Probabilities.h5").unlink()
    again = predict_files(builder, pngs, spec)  # one output missing: only it is made
    assert again.written == [out / "sec_s002_Probabilities.h5"] and len(again.skipped) == 3
    assert built == [1]
    stamp = (out / "sec_s001_Probabilities.h5").stat().st_mtime_ns
    idle = predict_files(builder, pngs, spec)
    assert idle.written == [] and len(idle.skipped) == 4 and built == [1]  # never built
    assert (out / "sec_s001_Probabilities.h5").stat().st_mtime_ns == stamp
    redo = predict_files(clf, pngs, ExportSpec(sources=spec.sources, output_dir=out,
                                               overwrite=True))
    assert len(redo.written) == 4 and redo.skipped == []


def test_failures_are_reported_or_raised(clf, pngs, tmp_path: Path) -> None:
    rgb = pngs[0].parent / "rgb.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(rgb)
    spec = ExportSpec(format="png", output_dir=tmp_path / "out")
    result = predict_files(clf, [pngs[0].parent], spec, keep_going=True)
    assert len(result.written) == 2 and len(result.failed) == 1
    assert "rgb.png" in result.failed[0] and "3 channel" in result.failed[0]
    with pytest.raises(InputError, match=r"rgb\.png.*3 channel"):
        predict_files(clf, [rgb], spec)
    assert not (tmp_path / "out" / "rgb_Probabilities.png").exists()


def test_plan_skips_earlier_outputs_and_refuses_collisions(clf, pngs, tmp_path: Path) -> None:
    folder = pngs[0].parent
    # an earlier run wrote PNG segmentations next to the inputs: not inputs of this run
    predict_files(clf, [folder], ExportSpec(sources=["Simple Segmentation"], format="png"))
    assert (folder / "sec_s001_Simple Segmentation.png").exists()
    plan = plan_outputs([folder], ExportSpec(format="hdf5"))
    assert sorted(p.name for p in plan) == ["sec_s001.png", "sec_s002.png"]
    named = folder / "sec_s001_Simple Segmentation.png"
    assert named in plan_outputs([folder, named], ExportSpec(format="hdf5"))  # named: kept
    Image.fromarray(_scene(3)[0]).save(folder / "sec_s001.tif")
    with pytest.raises(InputError, match="would both be written to"):
        predict_files(clf, [folder / "sec_s001.png", folder / "sec_s001.tif"],
                      ExportSpec(output_dir=tmp_path / "out"))
    with pytest.raises(InputError, match="overwrite an input"):
        predict_files(clf, [pngs[0]], ExportSpec(format="png", filename_format="{dataset_dir}/sec_s001"))
    with pytest.raises(InputError, match="work function"):
        predict_files(clf, pngs, ExportSpec(), outputs=lambda p: {"x": tmp_path / "x.h5"})


def test_train_files_round_trip(pngs, tmp_path: Path) -> None:
    labels = []
    for png in pngs:
        labels.append(png.with_name(png.stem + "_labels.png"))
        Image.fromarray(_scene(int(png.stem[-1]))[1]).save(labels[-1])
    model = tmp_path / "model.h5"
    clf = train_files(PixelClassifier(SMALL, n_trees=5, seed=1), pngs, labels, model)
    loaded = PixelClassifier.load(model)
    image = np.asarray(Image.open(pngs[0]))
    assert np.array_equal(loaded.predict_proba(image), clf.predict_proba(image))
    assert clf.training_info_["n_images"] == 2
    assert clf.training_info_["n_samples"] == sum(int((_scene(i)[1] > 0).sum()) for i in (1, 2))
    with pytest.raises(InputError, match="exists"):
        train_files(PixelClassifier(SMALL, n_trees=5), pngs, labels, model)
    with pytest.raises(InputError, match="2 image"):
        train_files(PixelClassifier(SMALL, n_trees=5), pngs, labels[:1], model, overwrite=True)
    with pytest.raises(InputError, match="overwrite an input"):
        train_files(PixelClassifier(SMALL, n_trees=5), pngs, labels, labels[0], overwrite=True)


def test_tiled_batch_makes_only_missing_outputs(clf, pngs, tmp_path: Path) -> None:
    from pyquint.tiles import predict_tiled_files

    out = tmp_path / "big"
    lines: list[str] = []
    result = predict_tiled_files(clf, pngs, out, sources=["Simple Segmentation"],
                                 formats=["png", "tiff"], tile=16, n_workers=1, report=lines.append)
    assert sorted(p.name for p in result.written) == sorted(
        f"sec_s00{i}_Simple Segmentation.{e}" for i in (1, 2) for e in ("png", "tiff"))
    assert len(lines) == 2 and "sec_s001.png" in lines[0]
    for png in pngs:
        seg = np.asarray(Image.open(out / f"{png.stem}_Simple Segmentation.png"))
        assert np.array_equal(seg, clf.predict(np.asarray(Image.open(png))))
    keep = out / "sec_s001_Simple Segmentation.png"
    stamp = keep.stat().st_mtime_ns
    (out / "sec_s001_Simple Segmentation.tiff").unlink()
    again = predict_tiled_files(clf, pngs, out, sources=["Simple Segmentation"],
                                formats=["png", "tiff"], tile=16, n_workers=1)
    assert again.written == [out / "sec_s001_Simple Segmentation.tiff"] and len(again.skipped) == 3
    assert keep.stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="either hdf5 or compressed"):
        predict_tiled_files(clf, pngs, out, formats=["hdf5", "compressed hdf5"])
    with pytest.raises(InputError, match="tile by tile"):
        predict_tiled_files(clf, pngs, out, formats=["npy"])
