"""Time series on Dask: frame by frame (no chunk spans two time points), equal to per-frame
``PixelClassifier.predict``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

da = pytest.importorskip("dask.array")

from pyquint.distributed import predict_dask  # noqa: E402
from pyquint.features import FeatureSelection  # noqa: E402
from pyquint.io import axistags_json  # noqa: E402
from pyquint.pixel import PixelClassifier  # noqa: E402


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    """``tyx`` frames that differ, so that filtering across t would change the results."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:60, :70]
    frames = [np.sin(yy / (3 + k)) * np.cos(xx / (4 + 3 * k)) for k in range(3)]
    return np.clip(120 + 90 * np.stack(frames) + rng.normal(0, 6, (3, 60, 70)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clf(series: np.ndarray) -> PixelClassifier:
    matrix = np.zeros((6, 3), bool)
    matrix[0, :] = matrix[2, 1] = matrix[4, 2] = True
    labels = np.zeros(series.shape[1:], np.uint8)
    labels[series[0] < 90] = 1
    labels[series[0] > 160] = 2
    labels[1::2] = 0
    return PixelClassifier(features=FeatureSelection(matrix, (0.7, 1.0, 1.6)), n_trees=8,
                           seed=0).fit(series[0], labels)


def test_dask_array_time_series(series, clf) -> None:
    expected = np.stack([clf.predict(f) for f in series])
    # t anywhere, channels given or not; chunks smaller than a frame
    got = predict_dask(clf, series, axes="tyx", source="Simple Segmentation", chunks=24,
                       scheduler="sync")
    assert got.shape == series.shape and np.array_equal(got, expected)
    moved = np.ascontiguousarray(np.moveaxis(series, 0, -1))[..., None]  # y x t c
    lazy = predict_dask(clf, da.from_array(moved, chunks=(30, 35, 3, 1)), axes="yxtc",
                        source="Probabilities", chunks=32, compute=False)
    assert lazy.shape == (3, 60, 70, 2) and lazy.chunks[0] == (1, 1, 1)  # one frame a chunk
    proba = lazy.compute(scheduler="sync")
    assert np.array_equal(proba, np.stack([clf.predict_proba(f) for f in series]))


def test_dask_file_time_series(series, clf, tmp_path) -> None:
    h5 = tmp_path / "movie.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("data", data=series[..., None], chunks=(1, 20, 20, 1)).attrs["axistags"] = \
            axistags_json("tyxc")
    tif = tmp_path / "movie.tif"
    tifffile.imwrite(tif, series, imagej=True, metadata={"axes": "TYX"})
    expected = np.stack([clf.predict_proba(f) for f in series])
    for path in (f"{h5}/data", tif):
        got = predict_dask(clf, path, source="Probabilities", chunks=40, scheduler="threads")
        assert np.array_equal(got, expected), path
