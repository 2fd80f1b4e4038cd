"""TIFF time series (ImageJ hyperstacks with frames, OME-TIFF with T): the time axis comes from
the file's metadata (or ``--input_axes``), every command predicts frame by frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from pyquint.errors import InputError
from pyquint.features import FeatureSelection
from pyquint.ilastik import write_project
from pyquint.io import parse_axistags, read_image
from pyquint.pixel import PixelClassifier
from pyquint.tiles import frame_count, open_lazy

ROOT = Path(__file__).resolve().parents[1]


def _series(n_channels: int = 1) -> np.ndarray:
    """``tyxc`` frames that differ (filtering across t would change every result)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:44, :52]
    frames = [[np.sin(yy / (3 + k + c)) * np.cos(xx / (5 + 2 * k)) for c in range(n_channels)]
              for k in range(3)]
    data = 110 + 90 * np.moveaxis(np.array(frames), 1, -1) + rng.normal(0, 6, (3, 44, 52, n_channels))
    return np.clip(data, 0, 255).astype(np.uint8)


def _classifier(series: np.ndarray) -> PixelClassifier:
    matrix = np.zeros((6, 3), bool)
    matrix[0, :] = matrix[2, 1] = matrix[5, 2] = True
    labels = np.zeros(series.shape[1:3], np.uint8)
    labels[series[0, ..., 0] < 80] = 1
    labels[series[0, ..., 0] > 150] = 2
    labels[::2] = 0
    clf = PixelClassifier(features=FeatureSelection(matrix, (0.7, 1.0, 1.6)), n_trees=8, seed=0)
    return clf.fit(series[0], labels)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pyquint", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _write(path: Path, series: np.ndarray, kind: str) -> None:
    if kind == "imagej":  # a hyperstack with frames (and channels): pages in t, c order
        tifffile.imwrite(path, np.moveaxis(series, -1, 1), imagej=True, metadata={"axes": "TCYX"})
    elif kind == "ome":
        tifffile.imwrite(path, series[..., 0], ome=True, metadata={"axes": "TYX"})
    elif kind == "deflate":  # compressed: not memory-mappable, pages decoded per frame
        tifffile.imwrite(path, np.moveaxis(series, -1, 1), imagej=True, metadata={"axes": "TCYX"},
                         compression="zlib")
    else:  # no axes in the file: tifffile calls the pages I (read as z)
        tifffile.imwrite(path, series[..., 0], metadata=None, photometric="minisblack")


@pytest.mark.parametrize("kind, n_channels", [("imagej", 2), ("ome", 1), ("deflate", 3)])
def test_tiff_frames_read_lazily(tmp_path: Path, kind: str, n_channels: int) -> None:
    series = _series(n_channels)
    path = tmp_path / ("movie.ome.tif" if kind == "ome" else "movie.tif")
    _write(path, series, kind)
    data, axes = read_image(path)
    assert axes in ("tcyx", "tyx", "tyxc")
    assert frame_count(path) == 3
    for t in range(3):
        reader = open_lazy(path, frame=t)
        assert reader.shape == (44, 52, n_channels) and reader.n_frames == 3
        assert np.array_equal(reader.read(3, 40, 5, 50), series[t, 3:40, 5:50])
    with pytest.raises(InputError, match="time point 3 does not exist"):
        open_lazy(path, frame=3)


def test_large_predict_tiff_series(tmp_path: Path) -> None:
    series = _series(2)
    _write(tmp_path / "movie.tif", series, "imagej")
    clf = _classifier(series)
    model = clf.save(tmp_path / "m.h5")
    res = _run("large", "predict", str(model), "movie.tif", "-o", "out", "--tile", "32",
               "--export-source", "Probabilities", "--output-format", "hdf5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for t in range(3):
        with h5py.File(tmp_path / "out" / f"movie_Probabilities_t{t:04d}.h5", "r") as f:
            assert np.array_equal(f["exported_data"][()], clf.predict_proba(series[t]))


def test_pixel_predict_tiff_series_and_input_axes(tmp_path: Path) -> None:
    series = _series(1)
    _write(tmp_path / "movie.ome.tif", series, "ome")
    _write(tmp_path / "plain.tif", series, "plain")
    assert read_image(tmp_path / "plain.tif")[1] == "zyx"  # no metadata: the pages look like z
    clf = _classifier(series)
    model = clf.save(tmp_path / "m.h5")
    expected = np.stack([clf.predict_proba(series[t]) for t in range(3)])
    res = _run("pixel", "predict", str(model), "movie.ome.tif", "-o", "out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "movie.ome_Probabilities.h5", "r") as f:
        assert parse_axistags(f["exported_data"].attrs["axistags"]) == "tyxc"
        assert np.array_equal(f["exported_data"][()], expected)
    res = _run("pixel", "predict", str(model), "plain.tif", "-o", "out2", "--axes", "tyx", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out2" / "plain_Probabilities.h5", "r") as f:
        assert parse_axistags(f["exported_data"].attrs["axistags"]) == "tyxc"
        assert np.array_equal(f["exported_data"][()], expected)


def test_ilastik_predict_tiff_series(tmp_path: Path) -> None:
    series = _series(1)
    labels = np.zeros(series.shape[:3], np.uint8)
    labels[0][series[0, ..., 0] < 80] = 1
    labels[2][series[2, ..., 0] > 150] = 2
    labels[:, ::2] = 0
    matrix = np.zeros((6, 2), bool)
    matrix[0, :] = matrix[3, 1] = True
    sel = FeatureSelection(matrix, (0.7, 1.6))
    ilp = write_project(tmp_path / "t.ilp", [series], [labels], sel, label_names=["a", "b"],
                        axes="tyxc")
    _write(tmp_path / "plain.tif", series, "plain")
    _write(tmp_path / "movie.tif", series, "imagej")
    ref = PixelClassifier(features=sel, n_trees=100, seed=0, class_names=["a", "b"])
    ref.fit([series[0], series[2]], [labels[0], labels[2]])
    expected = np.stack([ref.predict_proba(series[t]) for t in range(3)])
    for name, extra in (("movie", ()), ("plain", ("--input_axes", "tyx"))):
        res = _run("ilastik", "predict", str(ilp), f"{name}.tif", "--seed", "0",
                   "--output_format", "tiff", *extra, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        with tifffile.TiffFile(tmp_path / f"{name}_Probabilities.tiff") as tif:
            assert tif.series[0].axes == "TYXS"  # the time axis is kept, frames first
            assert np.array_equal(tif.series[0].asarray(), expected)
