"""OME-Zarr inputs and outputs: round trips through ome-zarr's own reader, scale levels, the
ilastik and large CLIs, tile-by-tile writing."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
ome_reader = pytest.importorskip("ome_zarr.reader")
ome_io = pytest.importorskip("ome_zarr.io")

from pyquint.errors import InputError, PyquintError  # noqa: E402
from pyquint.features import FeatureSelection  # noqa: E402
from pyquint.ilastik import ProjectPredictor, read_project, write_project  # noqa: E402
from pyquint.pixel import PixelClassifier  # noqa: E402
from pyquint.tiles import open_lazy, predict_tiled  # noqa: E402
from pyquint.zarrio import read_zarr, write_ome_zarr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _ome(path: Path):
    """(arrays per level, axis names, scale transformations) as ome-zarr's reader sees them."""
    node = list(ome_reader.Reader(ome_io.parse_url(str(path)))())[0]
    return ([np.asarray(level) for level in node.data], [a["name"] for a in node.metadata["axes"]],
            [t[0]["scale"] for t in node.metadata["coordinateTransformations"]])


def _image(h: int = 90, w: int = 110, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    image = 30 + 150 * (np.sin(yy / 7.0) * np.cos(xx / 9.0) > 0.3) + rng.normal(0, 8, (h, w))
    image = np.clip(image, 0, 255).astype(np.uint8)
    labels = np.zeros((h, w), np.uint8)
    labels[(image < 60) & (rng.random((h, w)) < 0.05)] = 1
    labels[(image > 150) & (rng.random((h, w)) < 0.05)] = 2
    return image, labels


def _selection() -> FeatureSelection:
    matrix = np.zeros((6, 3), bool)
    matrix[0, :] = matrix[2, 1] = True
    return FeatureSelection(matrix, (0.7, 1.0, 1.6))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PYQUINT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pyquint", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_write_read_round_trip_multiscale(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((2, 37, 45, 3)).astype(np.float32)
    path = write_ome_zarr(tmp_path / "p.zarr", data, "tyxc", n_levels=3)
    levels, names, scales = _ome(path)
    assert names == ["t", "c", "y", "x"]
    assert scales == [[1, 1, 1, 1], [1, 1, 2, 2], [1, 1, 4, 4]]
    assert np.array_equal(levels[0], data.transpose(0, 3, 1, 2))
    assert np.array_equal(levels[1], data.transpose(0, 3, 1, 2)[..., ::2, ::2])
    assert levels[2].shape == (2, 3, 10, 12)
    # pyquint's own reader, at each level, tells the axes
    back, axes = read_zarr(path)
    assert axes == "tcyx" and np.array_equal(back, levels[0])
    back, _ = read_zarr(path, scale_level=2)
    assert np.array_equal(back, levels[2])
    with pytest.raises(InputError, match="scale level 3 does not exist"):
        read_zarr(path, scale_level=3)
    # chunks hold one time point and channel
    assert zarr.open(str(path), mode="r")["0"].chunks == (1, 1, 37, 45)


def test_plain_zarr_array_and_lazy_windows(tmp_path: Path) -> None:
    data = np.arange(3 * 64 * 80, dtype=np.uint16).reshape(3, 64, 80)
    arr = zarr.create_array(str(tmp_path / "plain.zarr"), shape=data.shape, chunks=(1, 16, 16),
                            dtype=data.dtype, zarr_format=2)
    arr[...] = data
    arr.attrs["_ARRAY_DIMENSIONS"] = ["c", "y", "x"]
    reader = open_lazy(tmp_path / "plain.zarr")
    assert reader.shape == (64, 80, 3)
    assert np.array_equal(reader.read(10, 30, 5, 70), data[:, 10:30, 5:70].transpose(1, 2, 0))
    clone = pickle.loads(pickle.dumps(reader))  # Dask workers get the path, not the pixels
    assert len(pickle.dumps(reader)) < 2000
    assert np.array_equal(clone.read(0, 4, 0, 4), reader.read(0, 4, 0, 4))
    with pytest.raises(InputError, match="axes 'yx' do not fit"):
        open_lazy(tmp_path / "plain.zarr", axes="yx")


def test_ilastik_predict_ome_zarr_in_and_out(tmp_path: Path) -> None:
    image, labels = _image()
    ilp = write_project(tmp_path / "p.ilp", [image], [labels], _selection(),
                        label_names=["bg", "fg"])
    big = np.kron(image, np.ones((2, 2), np.uint8))  # level 1 of this is the image itself
    src = write_ome_zarr(tmp_path / "section.zarr", big[..., None], "yxc", n_levels=2)
    res = _cli("ilastik", "predict", str(ilp), str(src), "--scale-level", "1", "--seed", "0",
               "--output_format", "ome-zarr", "--export_source", "Probabilities",
               "--export_source", "Simple Segmentation", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    predictor = ProjectPredictor(read_project(ilp), seed=0).fit()
    expected = predictor.predict_proba(image[..., None], "yxc")
    levels, names, _ = _ome(tmp_path / "section_Probabilities.zarr")
    assert names == ["c", "y", "x"]
    assert np.array_equal(levels[0], expected.transpose(2, 0, 1))
    attrs = zarr.open(str(tmp_path / "section_Probabilities.zarr"), mode="r").attrs.asdict()
    assert attrs["drange"] == [0.0, 1.0]
    seg, _, _ = _ome(tmp_path / "section_Simple Segmentation.zarr")
    assert seg[0].dtype == np.uint8
    assert np.array_equal(seg[0][0], np.argmax(expected, -1) + 1)
    bad = _cli("ilastik", "predict", str(ilp), str(src), "--scale-level", "5", cwd=tmp_path)
    assert bad.returncode == 1 and "scale level 5 does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_large_predict_writes_ome_zarr_tile_by_tile(tmp_path: Path) -> None:
    image, labels = _image(150, 170, seed=3)
    clf = PixelClassifier(features=_selection(), n_trees=8, seed=0).fit(image, labels)
    model = clf.save(tmp_path / "model.h5")
    src = write_ome_zarr(tmp_path / "big.zarr", image[..., None], "yxc")
    res = _cli("large", "predict", str(model), str(src), "-o", str(tmp_path / "out"),
               "--export-source", "Probabilities", "--export-source", "Simple Segmentation",
               "--output-format", "ome-zarr", "--tile", "48", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    proba, names, scales = _ome(tmp_path / "out" / "big_Probabilities.zarr")
    assert names == ["c", "y", "x"] and scales == [[1, 1, 1]]
    assert np.array_equal(proba[0], clf.predict_proba(image).transpose(2, 0, 1))
    seg, _, _ = _ome(tmp_path / "out" / "big_Simple Segmentation.zarr")
    assert np.array_equal(seg[0][0], clf.predict(image))
    # the Python API: a multiscale output written while tiles arrive
    from pyquint.tiles._zarr import OmeZarrTileWriter

    bands = [(0, 100), (100, 150)]
    with OmeZarrTileWriter(tmp_path / "w.zarr", (150, 170, 1), np.uint8, bands, n_levels=2) as w:
        for y0, y1 in bands:
            for x0, x1 in ((0, 90), (90, 170)):
                w.write(y0, x0, image[y0:y1, x0:x1, None])
    levels, _, _ = _ome(tmp_path / "w.zarr")
    assert np.array_equal(levels[0][0], image) and np.array_equal(levels[1][0], image[::2, ::2])
    # an incomplete image leaves nothing behind
    with pytest.raises(PyquintError, match="incomplete"):
        with OmeZarrTileWriter(tmp_path / "x.zarr", (150, 170, 1), np.uint8, bands) as w:
            w.write(0, 0, image[:100, :, None])
    assert not (tmp_path / "x.zarr").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    out = predict_tiled(clf, src, {"Uncertainty": tmp_path / "u.zarr"}, tile=64,
                        show_progress=False)
    assert read_zarr(out["Uncertainty"])[0].shape == (1, 150, 170)


def test_ngff_05_group_and_pixel_cli(tmp_path: Path) -> None:
    """An NGFF 0.5 image (zarr format 3, metadata under ``ome``) as ``pixel predict`` input."""
    image, labels = _image(60, 70, seed=5)
    group = zarr.open_group(str(tmp_path / "v05.zarr"), mode="w", zarr_format=3)
    arr = group.create_array("s0", shape=(1, 60, 70), chunks=(1, 32, 32), dtype=np.uint8)
    arr[...] = image[None]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 0.5, 0.5]}]}]}]}
    data, axes = read_zarr(tmp_path / "v05.zarr")
    assert axes == "cyx" and np.array_equal(data[0], image)
    clf = PixelClassifier(features=_selection(), n_trees=6, seed=0).fit(image, labels)
    model = clf.save(tmp_path / "m.h5")
    res = _cli("pixel", "predict", str(model), str(tmp_path / "v05.zarr"), "--output-format",
               "ome-zarr", "--export-source", "Simple Segmentation", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    seg, names, _ = _ome(tmp_path / "v05_Simple Segmentation.zarr")
    assert names == ["c", "y", "x"] and np.array_equal(seg[0][0], clf.predict(image))
