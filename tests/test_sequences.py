"""Image sequences named as ilastik's stack writer names them: ``{slice_index}`` zero-padded to
ceil(log10(n + 1)) digits, the first non-singleton axis iterated; files read back with Pillow
and tifffile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pyquint.errors import InputError
from pyquint.export import export_array, export_filename
from pyquint.features import FeatureSelection
from pyquint.ilastik import write_project
from pyquint.pixel import PixelClassifier
from pyquint.sequences import sequence_slices, slice_digits, slice_path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pyquint", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_slice_names_as_ilastik_pads_them() -> None:
    # ilastik: digits = ceil(log10(n + 1)) for n slices
    assert [slice_digits(n) for n in (1, 9, 10, 99, 100, 999, 1000)] == [1, 1, 2, 2, 3, 3, 4]
    assert slice_path("a_{slice_index}.png", 7, 12).name == "a_07.png"
    assert slice_path("a_{slice_index}.png", 7, 9).name == "a_7.png"
    assert slice_path("a_z{slice_index:04d}.tif", 7, 9).name == "a_z0007.tif"
    with pytest.raises(InputError, match="slice_index"):
        slice_path("a.png", 0, 3)
    # the other placeholders are filled, {slice_index} is kept for the writer
    name = export_filename("in/movie.h5/data", "Probabilities", "png sequence",
                           "{dataset_dir}/{nickname}_{result_type}_{slice_index:03d}.png")
    assert name == Path("in/movie-data_Probabilities_{slice_index:03d}.png")
    with pytest.raises(InputError, match="unknown placeholder"):  # only for sequences
        export_filename("in/a.png", "Probabilities", "png", "{nickname}_{slice_index}")


def test_sequence_axis_is_the_first_non_singleton_one(tmp_path: Path) -> None:
    data = np.arange(2 * 1 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 1, 5, 6, 3)  # t z y x c
    parts = list(sequence_slices(tmp_path / "s_{slice_index}.tif", data, "tzyxc"))
    assert [p.name for p, _, _ in parts] == ["s_0.tif", "s_1.tif"]
    assert all(a == "yxc" for _, _, a in parts)
    assert np.array_equal(parts[1][1], data[1, 0])
    # x before y in the export: still written as upright yx images
    parts = list(sequence_slices(tmp_path / "s_{slice_index}.tif", data[:, 0].transpose(0, 2, 1, 3),
                                 "txyc"))
    assert np.array_equal(parts[0][1], data[0, 0])
    # a z stack with t = 1 is cut along z
    vol = np.zeros((1, 11, 5, 6, 1), np.uint8)
    assert [p.name for p, _, _ in sequence_slices("v_{slice_index}.png", vol, "tzyxc")][-1] == "v_10.png"
    with pytest.raises(InputError, match="3-D data"):
        list(sequence_slices("x_{slice_index}.png", data[0, 0], "yxc"))
    with pytest.raises(InputError, match="3-D data"):
        list(sequence_slices("x_{slice_index}.png", np.zeros((2, 3, 5, 6, 1)), "tzyxc"))
    written = export_array(tmp_path / "e_{slice_index}.png", data[:, 0], "tyxc", "png sequence")
    assert written.name == "e_{slice_index}.png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "e_1.png")), data[1, 0])


def test_ilastik_predict_png_and_tif_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:36, :40]
    series = np.stack([np.sin(yy / (3 + k)) * np.cos(xx / (4 + k)) for k in range(11)])
    series = np.clip(120 + 90 * series + rng.normal(0, 5, series.shape), 0, 255).astype(np.uint8)
    labels = np.zeros(series.shape, np.uint8)
    labels[0][series[0] < 80] = 1
    labels[0][series[0] > 160] = 2
    labels[:, 1::2] = 0
    matrix = np.zeros((6, 2), bool)
    matrix[0, :] = matrix[2, 1] = True
    sel = FeatureSelection(matrix, (0.7, 1.6))
    ilp = write_project(tmp_path / "t.ilp", [series[..., None]], [labels], sel,
                        label_names=["a", "b"], axes="tyxc")
    tifffile.imwrite(tmp_path / "movie.tif", series, imagej=True, metadata={"axes": "TYX"})
    ref = PixelClassifier(features=sel, n_trees=100, seed=0, class_names=["a", "b"])
    ref.fit(series[0], labels[0])

    res = _run("ilastik", "predict", str(ilp), "movie.tif", "--seed", "0", "--export_source",
               "Simple Segmentation", "--export_source", "Probabilities",
               "--output_format", "png sequence", "--output_filename_format",
               "{dataset_dir}/seq/{nickname}_{result_type}_{slice_index}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    files = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert files[:3] == ["movie_Probabilities_00.png", "movie_Probabilities_01.png",
                         "movie_Probabilities_02.png"] and len(files) == 22  # 11 frames: 2 digits
    for t in (0, 10):
        seg = np.asarray(Image.open(tmp_path / "seq" / f"movie_Simple Segmentation_{t:02d}.png"))
        assert np.array_equal(seg, ref.predict(series[t]))
    res = _run("ilastik", "predict", str(ilp), "movie.tif", "--seed", "0", "--output_format",
               "tif sequence", "--output_filename_format", "out/{nickname}_z{slice_index:03d}.tif",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for t in (0, 7):
        got = tifffile.imread(tmp_path / "out" / f"movie_z{t:03d}.tif")
        assert np.array_equal(got, ref.predict_proba(series[t]))
    res = _run("ilastik", "predict", str(ilp), "movie.tif", "--output_format", "png sequence",
               cwd=tmp_path)
    assert res.returncode == 1 and "{slice_index}" in res.stderr and "Traceback" not in res.stderr


def test_large_predict_names_frames_by_slice_index(tmp_path: Path) -> None:
    series = np.random.default_rng(2).integers(0, 255, (3, 30, 34), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "movie.tif", series, imagej=True, metadata={"axes": "TYX"})
    labels = (series[0] > 128).astype(np.uint8) + 1
    labels[::2] = 0
    matrix = np.zeros((6, 1), bool)
    matrix[0, 0] = True
    clf = PixelClassifier(features=FeatureSelection(matrix, (1.0,)), n_trees=4, seed=0)
    model = clf.fit(series[0], labels).save(tmp_path / "m.h5")
    res = _run("large", "predict", str(model), "movie.tif", "-o", "out", "--output-format", "tiff",
               "--output-filename-format", "{dataset_dir}/{nickname}_{result_type}_{slice_index}",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for t in range(3):
        got = tifffile.imread(tmp_path / "out" / f"movie_Simple Segmentation_{t}.tif")
        assert np.array_equal(got, clf.predict(series[t]))
    res = _run("large", "predict", str(model), "movie.tif", "-o", "out2",
               "--output-filename-format", "{dataset_dir}/{nickname}", cwd=tmp_path)
    assert res.returncode == 1 and "{slice_index}" in res.stderr
