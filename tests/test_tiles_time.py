"""Time series on the tile path: windows of one time point, ``large predict`` frame by frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.features import FeatureSelection
from pyquint.io import axistags_json
from pyquint.pixel import PixelClassifier
from pyquint.tiles import frame_count, open_lazy

ROOT = Path(__file__).resolve().parents[1]


def _series() -> np.ndarray:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:70, :90]
    frames = [np.sin(yy / (4 + k)) * np.cos(xx / (6 + 2 * k)) for k in range(3)]
    return np.clip(100 + 80 * np.stack(frames) + rng.normal(0, 5, (3, 70, 90)), 0, 255).astype(np.uint8)


def test_frame_windows_and_large_predict(tmp_path: Path) -> None:
    series = _series()
    path = tmp_path / "movie.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=series[..., None], chunks=(1, 32, 32, 1)).attrs["axistags"] = \
            axistags_json("tyxc")
    src = f"{path}/data"
    assert frame_count(src) == 3
    reader = open_lazy(src, frame=2)
    assert reader.shape == (70, 90, 1) and reader.n_frames == 3
    assert np.array_equal(reader.read(5, 40, 10, 80)[..., 0], series[2, 5:40, 10:80])
    with pytest.raises(InputError, match="time point 3 does not exist"):
        open_lazy(src, frame=3)
    with pytest.raises(InputError, match="t=3"):
        open_lazy(src)  # without a frame a series is refused, as before

    matrix = np.zeros((6, 3), bool)
    matrix[0, :] = matrix[2, 1] = True
    labels = np.zeros((70, 90), np.uint8)
    labels[series[0] < 80] = 1
    labels[series[0] > 160] = 2
    labels[::2] = 0
    clf = PixelClassifier(features=FeatureSelection(matrix, (0.7, 1.0, 1.6)), n_trees=6, seed=0)
    clf.fit(series[0], labels)
    model = clf.save(tmp_path / "m.h5")
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "pyquint", "large", "predict", str(model), src,
                          "-o", str(tmp_path / "out"), "--export-source", "Probabilities",
                          "--output-format", "hdf5", "--tile", "32"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for t in range(3):
        with h5py.File(tmp_path / "out" / f"movie-data_Probabilities_t{t:04d}.h5", "r") as f:
            assert np.array_equal(f["exported_data"][()], clf.predict_proba(series[t]))
