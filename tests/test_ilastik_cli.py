"""`pyquint ilastik predict` and `pyquint ilastik info` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pyquint.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_predict_simple_segmentation_png(runner: CliRunner, pc_ilp: Path, cells_png: Path,
                                         tmp_path: Path, monkeypatch) -> None:
    image = tmp_path / cells_png.name
    shutil.copyfile(cells_png, image)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["ilastik", "predict", str(pc_ilp), image.name,
                                  '--export_source=Simple Segmentation', "--output_format=png"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "2d_cells_apoptotic_1channel_Simple Segmentation.png"
    assert out.is_file()
    with Image.open(out) as im:
        assert im.mode == "L"
        seg = np.asarray(im)
    assert seg.shape == (1024, 1344) and set(np.unique(seg).tolist()) == {1, 2}
    # the stored forest calls every labelled pixel of the project right
    from pyquint.ilastik import read_project

    labels = read_project(pc_ilp).label_image(0)[..., 0]
    assert np.array_equal(seg[labels > 0], labels[labels > 0])
    # resumed: nothing to do, the file is kept
    mtime = out.stat().st_mtime_ns
    result = runner.invoke(main, ["ilastik", "predict", str(pc_ilp), image.name,
                                  "--export_source", "Simple Segmentation", "--output_format", "png"])
    assert result.exit_code == 0 and out.stat().st_mtime_ns == mtime


def test_predict_ilastik_style_flags(runner: CliRunner, forested_ilp: Path, tmp_path: Path) -> None:
    piece = tmp_path / "piece.png"
    from pyquint.data import make_section

    Image.fromarray(make_section(4, (96, 120)).image[8:88, 10:110]).save(piece)
    result = runner.invoke(main, [
        "ilastik", "predict", "--headless", f"--project={forested_ilp}", "--readonly",
        "--export_source", "Simple Segmentation", "--export-source=probabilities",
        "--output_format=compressed hdf5", "--output_internal_path=data/result", str(piece),
    ])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == [
        "piece_Probabilities.h5", "piece_Simple Segmentation.h5"]
    with h5py.File(tmp_path / "piece_Probabilities.h5", "r") as f:
        ds = f["data/result"]
        assert ds.dtype == np.float32 and ds.shape == (80, 100, 2) and ds.compression == "gzip"
    with h5py.File(tmp_path / "piece_Simple Segmentation.h5", "r") as f:
        assert f["data/result"].dtype == np.uint8


def test_predict_errors_are_messages(runner: CliRunner, forested_ilp: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ilp"
    bad.write_bytes(b"\x00" * 100)
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(img)
    result = runner.invoke(main, ["ilastik", "predict", str(bad), str(img)])
    assert result.exit_code == 1 and "not a readable HDF5 file" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["ilastik", "predict", str(forested_ilp), str(img), "--export_source=Nope"])
    assert result.exit_code == 1 and "unknown export source 'Nope'" in result.output
    result = runner.invoke(main, ["ilastik", "predict", str(forested_ilp)])
    assert result.exit_code == 2 and "no images" in result.output


def test_info(runner: CliRunner, pc_ilp: Path) -> None:
    result = runner.invoke(main, ["ilastik", "info", str(pc_ilp)])
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in ("ilastik 1.4.0b11", "'Pixel Classification'", "'Label 1' colour [255, 225, 25] - 294 pixels",
                     "'Label 2' colour [0, 130, 200] - 838 pixels", "features (49 channels)",
                     "4 vigra forests, 100 trees, 49 features", "OutputFormat: hdf5", "ProjectInternal"):
        assert expected in text
    result = runner.invoke(main, ["ilastik", "info", "--json", str(pc_ilp)])
    info = json.loads(result.output)
    assert info["label_blocks"] == 5 and info["features"]["channels"] == 49
    assert [lab["pixels"] for lab in info["labels"]] == [294, 838]


def test_info_lists_missing_files(runner: CliRunner, tmp_path: Path) -> None:
    from synth import steinbock_project_without_crops

    ilp = steinbock_project_without_crops(tmp_path)
    result = runner.invoke(main, ["ilastik", "info", str(ilp)])
    assert result.exit_code == 0, result.output
    assert "missing files: ilastik_crops/synth_a_x2_y102_w50_h50.h5/crop" in result.output
    assert "features: none selected" in result.output and "[MISSING]" in result.output


def test_help_explains(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ilastik", "predict", "--help"])
    assert result.exit_code == 0
    for flag in ("--export_source", "--output_format", "--output_filename_format", "--export_dtype",
                 "--pipeline_result_drange", "--export_drange", "--input_axes", "--output_axis_order",
                 "--retrain", "--overwrite", "--readonly"):
        assert flag in result.output
