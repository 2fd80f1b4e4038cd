"""Tile-by-tile prediction (pyquint.tiles): lazy readers, halo scheduling, streaming writers.

The reference for every prediction is the plain whole-image path, computed here directly with
``compute_features`` on the whole image and ``FlatForest.predict_proba`` (not through
``predict_tiled``); files are read back with h5py, tifffile and Pillow.
"""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from pyquint.data import make_section
from pyquint.errors import InputError, PyquintError
from pyquint.features import FeatureSelection, compute_features, feature_halo
from pyquint.pixel import PixelClassifier, uncertainty_from_proba
from pyquint.tiles import (
    PNG_SIGNATURE,
    LazyImage,
    PNGStreamWriter,
    TiffTileWriter,
    make_test_image,
    mosaic_tile,
    open_lazy,
    open_writer,
    png_chunks,
    predict_tiled,
    tile_grid,
)
from pyquint.tiles import _png as png_module

SHAPE = (128, 192)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def section():
    return make_section(3, SHAPE)


@pytest.fixture(scope="module")
def clf_exact(section):
    """49-channel ilastik feature set (halo 38), exact fastfilters arithmetic."""
    return PixelClassifier(n_trees=10, seed=0, rounding="exact").fit(section.image, section.labels)


@pytest.fixture(scope="module")
def reference(clf_exact, section):
    """Whole-image features and probabilities, computed without any tiling."""
    feats = compute_features(section.image[..., None], clf_exact._selection(), rounding="exact")
    flat = feats.reshape(-1, feats.shape[-1])
    proba = clf_exact.forest_.predict_proba(flat, n_classes=clf_exact.n_classes_)
    return feats, proba.reshape(SHAPE + (-1,))


def _h5(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


# --------------------------------------------------------------------------- grid
@pytest.mark.parametrize("tile", [64, 50, 7, (40, 100), 500])
def test_tile_grid_partitions_image_and_clips_windows(tile):
    h, w, halo = 128, 192, 38
    bands = tile_grid((h, w), tile, halo)
    cover = np.zeros((h, w), int)
    for band in bands:
        assert len({(t.y0, t.y1) for t in band}) == 1  # a band is one row of tiles
        for t in band:
            cover[t.y0:t.y1, t.x0:t.x1] += 1
            assert (t.wy0, t.wx0) == (max(0, t.y0 - halo), max(0, t.x0 - halo))
            assert (t.wy1, t.wx1) == (min(h, t.y1 + halo), min(w, t.x1 + halo))
    assert (cover == 1).all()
    with pytest.raises(InputError):
        tile_grid((h, w), 0, halo)
    with pytest.raises(InputError):
        tile_grid((h, w), 10, -1)


# --------------------------------------------------------------------------- equality
@pytest.mark.parametrize("tile", [64, 50, 20])  # divides both sides / does not / < halo (38)
def test_tiled_equals_whole_image(tmp_path, section, clf_exact, reference, tile):
    feats, proba = reference
    assert feature_halo(clf_exact._selection()) == 38 and feats.shape[-1] == 49
    outputs = {
        "Features": tmp_path / "f.h5",
        "Probabilities": tmp_path / "p.tif",
        "Simple Segmentation": tmp_path / "s.png",
        "Uncertainty": tmp_path / "u.h5",
    }
    written = predict_tiled(clf_exact, section.image, outputs, tile=tile, n_workers=2)
    assert written == outputs
    # exact arithmetic: bit-identical features, hence identical forest answers
    np.testing.assert_array_equal(_h5(outputs["Features"]), feats)
    np.testing.assert_array_equal(tifffile.imread(outputs["Probabilities"]), proba)
    seg = np.asarray(Image.open(outputs["Simple Segmentation"]))
    np.testing.assert_array_equal(seg, np.argmax(proba, -1) + 1)
    top = np.sort(proba, -1)
    np.testing.assert_allclose(_h5(outputs["Uncertainty"])[..., 0], 1 - (top[..., -1] - top[..., -2]),
                               atol=1e-7)
    assert _no_temp_files(tmp_path)


def test_tiled_fast_rounding_within_float_rounding(tmp_path, section, clf_exact):
    clf = PixelClassifier(n_trees=10, seed=0, rounding="fast").fit(section.image, section.labels)
    feats = compute_features(section.image[..., None], clf._selection(), rounding="fast")
    proba = clf.forest_.predict_proba(feats.reshape(-1, 49), n_classes=2).reshape(SHAPE + (2,))
    out = {"Features": tmp_path / "f.h5", "Probabilities": tmp_path / "p.h5"}
    predict_tiled(clf, section.image, out, tile=(40, 70), n_workers=1)
    tiled = _h5(out["Features"])
    # OpenCV's row filters round a pixel differently depending on its column inside the
    # window (SIMD body vs scalar tail): a few float32 ulps of the pre-smoothed image.
    # Features are (1-Lipschitz functions of) linear filters of the image, so the tolerance
    # is relative to the image's intensity scale.
    diff = np.abs(tiled - feats).max()
    assert diff <= 1e-5 * float(section.image.max())
    exact = compute_features(section.image[..., None], clf._selection(), rounding="exact")
    assert diff <= np.abs(feats - exact).max()  # tiling adds less than "fast" itself differs
    np.testing.assert_array_equal(_h5(out["Probabilities"]), proba)


def test_tiled_fast_bands_equal_the_whole_image_path(tmp_path, section):
    """Without a Features export, fast features go band by band through the forest."""
    clf = PixelClassifier(n_trees=10, seed=0, rounding="fast").fit(section.image, section.labels)
    proba = clf.predict_proba(section.image)
    out = {"Simple Segmentation": tmp_path / "s.h5", "Probabilities": tmp_path / "p.h5",
           "Uncertainty": tmp_path / "u.h5"}
    predict_tiled(clf, section.image, out, tile=(40, 70), n_workers=1)
    np.testing.assert_array_equal(_h5(out["Probabilities"]), proba)
    np.testing.assert_array_equal(_h5(out["Simple Segmentation"])[..., 0], proba.argmax(-1) + 1)
    np.testing.assert_array_equal(_h5(out["Uncertainty"])[..., 0],
                                  uncertainty_from_proba(proba))
    only = {"Simple Segmentation": tmp_path / "s2.h5"}  # the early-stopping labels path
    predict_tiled(clf, section.image, only, tile=(50, 64), n_workers=2)
    np.testing.assert_array_equal(_h5(only["Simple Segmentation"])[..., 0], clf.predict(section.image))
    assert _no_temp_files(tmp_path)


def test_tiled_on_real_ilastik_project(tmp_path, pc_ilp, cells_png):
    """pc.ilp's stored vigra forest and feature selection on a crop of its own image."""
    from pyquint.ilastik import ProjectPredictor

    clf = ProjectPredictor(pc_ilp, rounding="exact").fit().classifier_
    image = np.asarray(Image.open(cells_png))[300:556, 200:520]
    feats = compute_features(image[..., None], clf._selection(), rounding="exact")
    proba = clf.forest_.predict_proba(feats.reshape(-1, feats.shape[-1]), n_classes=clf.n_classes_)
    proba = proba.reshape(image.shape + (-1,))
    np.save(tmp_path / "crop.npy", image)
    out = {"Probabilities": tmp_path / "p.h5", "Simple Segmentation": tmp_path / "s.tif"}
    predict_tiled(clf, tmp_path / "crop.npy", out, tile=100)
    np.testing.assert_array_equal(_h5(out["Probabilities"]), proba)
    seg = tifffile.imread(out["Simple Segmentation"])
    np.testing.assert_array_equal(seg, np.argmax(proba, -1) + 1)
    assert 0.01 < (seg == 2).mean() < 0.99  # both classes present: a real prediction


# --------------------------------------------------------------------------- readers
@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(1).integers(0, 255, (300, 500, 3), dtype=np.uint8)


WINDOWS = [(0, 300, 0, 500), (13, 77, 250, 499), (299, 300, 0, 1), (31, 97, 63, 129)]


@pytest.mark.parametrize("kind", ["tiled-zlib", "strips-zlib", "contiguous", "planar", "grey-tiled",
                                  "h5-cyx", "h5-yx-nochunks", "npy", "png"])
def test_lazy_readers_return_exact_windows(tmp_path, rgb, kind):
    data, path = rgb, tmp_path / "img.tif"
    if kind == "tiled-zlib":
        tifffile.imwrite(path, rgb, tile=(64, 64), compression="zlib")
    elif kind == "strips-zlib":
        tifffile.imwrite(path, rgb, rowsperstrip=7, compression="zlib")
    elif kind == "contiguous":
        tifffile.imwrite(path, rgb)
    elif kind == "planar":
        tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), planarconfig="separate", rowsperstrip=9,
                         compression="zlib", photometric="rgb")
    elif kind == "grey-tiled":
        data = rgb[..., :1]
        tifffile.imwrite(path, data[..., 0], tile=(32, 48))
    elif kind == "h5-cyx":
        path = tmp_path / "img.h5"
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("raw/data", data=np.moveaxis(rgb, -1, 0), chunks=(1, 64, 64))
            ds.attrs["axistags"] = '{"axes": [{"key": "c"}, {"key": "y"}, {"key": "x"}]}'
        path = f"{path}/raw/data"
    elif kind == "h5-yx-nochunks":
        data, path = rgb[..., :1], tmp_path / "img.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("d", data=rgb[..., 0])
    elif kind == "npy":
        path = tmp_path / "img.npy"
        np.save(path, rgb)
    elif kind == "png":
        path = tmp_path / "img.png"
        Image.fromarray(rgb).save(path)
    reader = open_lazy(path)
    assert reader.shape == data.shape and reader.dtype == np.uint8
    if kind == "contiguous":
        assert reader._memmap is not None  # uncompressed contiguous TIFF: memory-mapped
    for clone in (reader, pickle.loads(pickle.dumps(reader))):  # pickles as the path, reopens
        for y0, y1, x0, x1 in WINDOWS:
            np.testing.assert_array_equal(clone.read(y0, y1, x0, x1), data[y0:y1, x0:x1])
    assert len(pickle.dumps(reader)) < 10_000 or kind == "png"  # never the pixels
    with pytest.raises(InputError, match="outside"):
        reader.read(0, 301, 0, 10)
    reader.close()


def test_lazy_reader_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_lazy(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="folder"):
        open_lazy(tmp_path)
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="not a readable TIFF"):
        open_lazy(tmp_path / "bad.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 40, 50), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match="5 pages"):
        open_lazy(tmp_path / "stack.tif")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((10, 10), np.uint8)
        f["b"] = np.zeros((10, 10), np.uint8)
        f["vol"] = np.zeros((5, 10, 10), np.uint8)
        f["vol"].attrs["axistags"] = '{"axes": [{"key": "z"}, {"key": "y"}, {"key": "x"}]}'
        f["text"] = np.array([b"x", b"y"])
    with pytest.raises(InputError, match="2 datasets|4 datasets"):
        open_lazy(tmp_path / "two.h5")
    with pytest.raises(InputError, match="no dataset"):
        open_lazy(f"{tmp_path / 'two.h5'}/nope")
    with pytest.raises(InputError, match="2-D images"):
        open_lazy(f"{tmp_path / 'two.h5'}/vol")
    with pytest.raises(InputError, match="unsupported pixel type"):
        open_lazy(np.zeros((10, 10), dtype="U1"))
    (tmp_path / "x.xyz").write_bytes(b"1")
    with pytest.raises(InputError, match="unsupported file type"):
        open_lazy(tmp_path / "x.xyz")


# --------------------------------------------------------------------------- PNG stream
def _stream_png(rows: np.ndarray, bands=(7, 1, 30), **kwargs) -> bytes:
    buf = io.BytesIO()
    height, width = rows.shape[:2]
    channels = 1 if rows.ndim == 2 else rows.shape[2]
    bit_depth = 16 if rows.dtype == np.uint16 else 8
    with PNGStreamWriter(buf, width, height, channels=channels, bit_depth=bit_depth, **kwargs) as w:
        y, i = 0, 0
        while y < height:
            n = bands[i % len(bands)]
            w.write_rows(rows[y:y + n])
            y, i = y + n, i + 1
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "I;16", "LA", "RGB", "RGBA"])
def test_png_stream_decodes_like_pillow(mode):
    rng = np.random.default_rng(0)
    shape = {"L": (53, 71), "I;16": (53, 71), "LA": (53, 71, 2), "RGB": (53, 71, 3), "RGBA": (53, 71, 4)}[mode]
    dtype = np.uint16 if mode == "I;16" else np.uint8
    data = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    im = Image.open(io.BytesIO(_stream_png(data)))
    im.load()
    expected_mode = {"I;16": ("I;16", "I;16B", "I")}.get(mode, (mode,))
    assert im.mode in expected_mode
    np.testing.assert_array_equal(np.asarray(im).astype(dtype), data)


def test_png_palette_matches_pillow_and_chunks_are_valid(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    data = rng.integers(0, 256, (300, 257), dtype=np.uint8)
    monkeypatch.setattr(png_module, "_IDAT_TARGET", 4096)  # force many IDAT chunks
    ours = tmp_path / "ours.png"
    ours.write_bytes(_stream_png(data, palette=palette))
    theirs = tmp_path / "pillow.png"
    pil = Image.frombytes("P", (257, 300), data.tobytes())
    pil.putpalette(palette.reshape(-1).tolist())
    pil.save(theirs)
    a, b = Image.open(ours), Image.open(theirs)
    assert a.mode == b.mode == "P"
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.getpalette() == b.getpalette()
    # byte level: signature, chunk order, CRCs, IHDR fields, one zlib stream over the IDATs
    assert ours.read_bytes()[:8] == PNG_SIGNATURE
    chunks = png_chunks(ours)
    kinds = [k for k, _, _ in chunks]
    assert kinds[:2] == [b"IHDR", b"PLTE"] and kinds[-1] == b"IEND"
    assert set(kinds[2:-1]) == {b"IDAT"} and len(kinds) - 3 >= 3
    assert all(ok for _, _, ok in chunks)
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (257, 300, 8, 3, 0, 0, 0)
    assert chunks[1][1] == palette.tobytes()
    raw = zlib.decompress(b"".join(d for k, d, _ in chunks if k == b"IDAT"))
    lines = np.frombuffer(raw, np.uint8).reshape(300, 258)
    assert (lines[:, 0] == 0).all()  # filter type None on every scanline
    np.testing.assert_array_equal(lines[:, 1:], data)


def test_png_palette_alpha_writes_trns():
    palette = np.array([[0, 0, 0, 0], [255, 0, 0, 128], [0, 255, 0, 255]], np.uint8)
    data = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    raw = _stream_png(data, bands=(1,), palette=palette)
    im = Image.open(io.BytesIO(raw))
    np.testing.assert_array_equal(np.asarray(im), data)
    assert im.info["transparency"] == bytes([0, 128])
    np.testing.assert_array_equal(np.asarray(im.convert("RGBA"))[0, 1], [255, 0, 0, 128])


def test_png_stream_bad_inputs(tmp_path):
    buf = io.BytesIO()
    w = PNGStreamWriter(buf, 10, 4)
    with pytest.raises(InputError, match="width"):
        w.write_rows(np.zeros((2, 9), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        w.write_rows(np.zeros((2, 10), np.uint16))
    with pytest.raises(InputError, match="too many rows"):
        w.write_rows(np.zeros((5, 10), np.uint8))
    w.write_rows(np.zeros((2, 10), np.uint8))
    with pytest.raises(InputError, match="incomplete"):
        w.close()
    with pytest.raises(InputError, match="palette entry"):
        PNGStreamWriter(io.BytesIO(), 3, 1, palette=np.zeros((2, 3), np.uint8)).write_rows(
            np.array([[0, 1, 2]], np.uint8))
    for kwargs in ({"channels": 5}, {"bit_depth": 4}, {"palette": np.zeros((257, 3), np.uint8)},
                   {"palette": np.zeros((4, 3), np.uint8), "channels": 3}, {"compress_level": 11}):
        with pytest.raises(InputError):
            PNGStreamWriter(io.BytesIO(), 3, 1, **kwargs)
    with pytest.raises(InputError):
        PNGStreamWriter(io.BytesIO(), 0, 1)


# --------------------------------------------------------------------------- writers
def test_tiff_writer_out_of_order_tiles_and_partial_tile_rows(tmp_path):
    """Bands of 300 rows against 512-row TIFF tiles: rows carry over between bands."""
    data = np.random.default_rng(3).random((700, 1100, 2)).astype(np.float32)
    bands = [(0, 300), (300, 600), (600, 700)]
    tiles = [(y0, x0) for y0, _ in bands for x0 in range(0, 1100, 400)]
    path = tmp_path / "out.tif"
    with open_writer(path, data.shape, np.float32, bands) as w:
        assert isinstance(w, TiffTileWriter)
        for y0, x0 in reversed(tiles):  # worst order: everything waits for the first band
            y1 = next(b for a, b in bands if a == y0)
            w.write(y0, x0, data[y0:y1, x0:x0 + 400])
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (512, 512)
        assert page.compression == 8  # deflate
        np.testing.assert_array_equal(page.asarray(), data)


def test_palette_tiff_and_h5_layout(tmp_path):
    seg = np.random.default_rng(4).integers(1, 4, (90, 130), dtype=np.uint8)
    palette = np.zeros((256, 3), np.uint8)
    palette[1:4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    bands = [(0, 40), (40, 80), (80, 90)]
    for path, kw in ((tmp_path / "s.tif", {"palette": palette}),
                     (tmp_path / "s.h5", {"attrs": {"drange": np.array([1, 3], np.uint8)},
                                          "compression": "gzip"})):
        with open_writer(path, (90, 130, 1), np.uint8, bands, **kw) as w:
            for y0, y1 in bands:
                for x0, x1 in ((0, 64), (64, 130)):
                    w.write(y0, x0, seg[y0:y1, x0:x1])
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        page = tif.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.PALETTE
        np.testing.assert_array_equal(page.colormap[:, 1:4].T // 257, palette[1:4])
        np.testing.assert_array_equal(page.asarray(), seg)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        ds = f["exported_data"]
        assert ds.shape == (90, 130, 1) and ds.chunks[-1] == 1 and ds.compression == "gzip"
        assert '"key": "y"' in ds.attrs["axistags"] and list(ds.attrs["drange"]) == [1, 3]
        np.testing.assert_array_equal(ds[..., 0], seg)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".h5"])
def test_incomplete_or_aborted_writes_leave_nothing(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    bands = [(0, 10), (10, 20)]
    with pytest.raises(PyquintError, match="incomplete"):
        with open_writer(path, (20, 30, 1), np.uint8, bands) as w:
            w.write(0, 0, np.zeros((10, 30), np.uint8))
    assert not path.exists() and _no_temp_files(tmp_path) and not list(tmp_path.iterdir())
    with pytest.raises(RuntimeError):
        with open_writer(path, (20, 30, 1), np.uint8, bands) as w:
            w.write(0, 0, np.zeros((10, 30), np.uint8))
            raise RuntimeError("boom")
    assert not list(tmp_path.iterdir())
    with pytest.raises(InputError):
        open_writer(tmp_path / "x.jpg", (20, 30, 1), np.uint8, bands)


# --------------------------------------------------------------------------- bad inputs
def test_predict_tiled_bad_inputs(tmp_path, section, clf_exact):
    img = section.image
    cases = [
        ({"Labels": tmp_path / "l.h5"}, {}, "not available tile by tile"),
        ({"Nonsense": tmp_path / "n.h5"}, {}, "not available"),
        ({"Features": tmp_path / "f.png"}, {}, "Features"),
        ({"Probabilities": tmp_path / "p.jpg"}, {}, "cannot stream"),
        ({"Probabilities": tmp_path / "p.h5"}, {"n_workers": 0}, "n_workers"),
        ({"Probabilities": tmp_path / "p.h5"}, {"tile": 0}, "tile size"),
        ({"Probabilities": tmp_path / "p.h5"}, {"halo": -2}, "halo"),
        ({}, {}, "no outputs"),
    ]
    for outputs, kwargs, match in cases:
        with pytest.raises(InputError, match=match):
            predict_tiled(clf_exact, img, outputs, **kwargs)
    with pytest.raises(InputError, match="channel"):
        predict_tiled(clf_exact, np.stack([img] * 3, -1), {"Probabilities": tmp_path / "p.h5"})
    with pytest.raises(InputError, match="not trained"):
        predict_tiled(PixelClassifier(), img, {"Probabilities": tmp_path / "p.h5"})
    np.save(tmp_path / "in.npy", img)
    with pytest.raises(InputError, match="overwrite an input"):
        predict_tiled(clf_exact, tmp_path / "in.npy", {"Probabilities": tmp_path / "in.npy"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_failure_mid_run_leaves_no_output(tmp_path, section, clf_exact):
    class Failing(LazyImage):
        def __init__(self, data):
            self._inner = open_lazy(data)
            self.shape, self.dtype, self.axes, self.calls = self._inner.shape, self._inner.dtype, "yxc", 0

        def read(self, *window):
            self.calls += 1
            if self.calls == 4:
                raise OSError("disk went away")
            return self._inner.read(*window)

    out = {"Simple Segmentation": tmp_path / "s.png", "Probabilities": tmp_path / "p.tif",
           "Uncertainty": tmp_path / "u.h5"}
    with pytest.raises(OSError, match="disk went away"):
        predict_tiled(clf_exact, Failing(section.image), out, tile=64, n_workers=1)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- memory
def test_memory_bounded_by_tile_not_image(tmp_path):
    """A 4096² run with tiles of 512 never holds a full-size float32 feature stack."""
    matrix = np.zeros((6, 3), bool)
    matrix[0, 0] = matrix[2, 2] = matrix[1, 1] = True  # GS 0.3, LoG 0.7, GGM 1.0
    sel = FeatureSelection(matrix, (0.3, 0.7, 1.0))
    small = make_section(5, (128, 128))
    clf = PixelClassifier(features=sel, n_trees=5, seed=0).fit(small.image, small.labels)
    size = 4096
    make_test_image(tmp_path / "big.npy", (size, size), tile=128, n_patterns=2)
    full_stack = size * size * 3 * 4  # 201 MB of float32 features for the whole image
    clf.predict(small.image)  # load the compiled forest kernel before measuring
    tracemalloc.start()
    try:
        predict_tiled(clf, tmp_path / "big.npy", {"Simple Segmentation": tmp_path / "s.png"},
                      tile=512, n_workers=2, show_progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # measured about 27 MB: less than one full-size float32 channel (67 MB)
    assert peak < min(size * size * 4, full_stack / 3), f"peak {peak / 2**20:.0f} MB"
    seg = np.asarray(Image.open(tmp_path / "s.png"))
    assert seg.shape == (size, size) and set(np.unique(seg)) <= {1, 2}
    # spot check: one interior window equals a whole-array prediction of that region + halo
    image = np.load(tmp_path / "big.npy")
    halo = feature_halo(sel)
    region = image[1000 - halo:1300 + halo, 2000 - halo:2300 + halo]
    expect = clf.predict(region)[halo:-halo, halo:-halo]
    np.testing.assert_array_equal(seg[1000:1300, 2000:2300], expect)


# --------------------------------------------------------------------------- test image, CLI
def test_make_test_image_deterministic_and_formats_agree(tmp_path):
    make_test_image(tmp_path / "a.tif", (300, 450), tile=128, n_patterns=2, seed=7, compression="zlib")
    make_test_image(tmp_path / "b.h5", (300, 450), tile=128, n_patterns=2, seed=7)
    make_test_image(tmp_path / "c.npy", (300, 450), tile=128, n_patterns=2, seed=7)
    make_test_image(tmp_path / "d.npy", (300, 450), tile=128, n_patterns=2, seed=8)
    a = tifffile.imread(tmp_path / "a.tif")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        b = f["data"][..., 0]
    c, d = np.load(tmp_path / "c.npy"), np.load(tmp_path / "d.npy")
    assert a.shape == (300, 450) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert (a != d).mean() > 0.5
    from pyquint.tiles._synth import _patterns

    tile = mosaic_tile(_patterns(7, 2, 128), 7, 1, 2)  # any tile can be made on its own
    np.testing.assert_array_equal(a[128:256, 256:384], tile)
    with pytest.raises(InputError):
        make_test_image(tmp_path / "e.png", (300, 300))
    with pytest.raises(InputError):
        make_test_image(tmp_path / "e.npy", (0, 300))


def test_cli_end_to_end(tmp_path, section, clf_exact, reference):
    from pyquint.cli import main

    _, proba = reference
    model = tmp_path / "model.h5"
    clf_exact.save(model)
    np.save(tmp_path / "sec.npy", section.image)
    runner = CliRunner()
    args = ["large", "predict", str(model), str(tmp_path / "sec.npy"), "-o", str(tmp_path / "out"),
            "--export-source", "simple segmentation", "--export-source", "Probabilities",
            "--output-format", "png", "--lut", "classes", "--tile", "48", "--workers", "2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    seg_png = tmp_path / "out" / "sec_Simple Segmentation.png"
    im = Image.open(seg_png)
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), np.argmax(proba, -1) + 1)
    colours = np.asarray(im.getpalette()[:9]).reshape(3, 3)
    np.testing.assert_array_equal(colours[1:], clf_exact.class_colors_)
    p_png = np.asarray(Image.open(tmp_path / "out" / "sec_Probabilities.png"))
    np.testing.assert_array_equal(p_png, np.rint(proba * 255).astype(np.uint8))
    # resume: existing outputs are skipped unless --overwrite
    mtime = seg_png.stat().st_mtime_ns
    result = runner.invoke(main, args)
    assert result.exit_code == 0 and "skip" in result.output and seg_png.stat().st_mtime_ns == mtime
    result = runner.invoke(main, args[:-4] + ["--output-format", "tiff", "--overwrite"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "sec_Simple Segmentation.tif"),
                                  np.argmax(proba, -1) + 1)
    bad = runner.invoke(main, args[:6] + ["--export-source", "Labelz"])
    assert bad.exit_code != 0 and "unknown export source" in bad.output
    result = runner.invoke(main, ["large", "make-test-image", str(tmp_path / "t.h5"),
                                  "--size", "200", "300", "--tile", "100"])
    assert result.exit_code == 0, result.output
    assert open_lazy(tmp_path / "t.h5").shape == (200, 300, 1)
    again = runner.invoke(main, ["large", "make-test-image", str(tmp_path / "t.h5"), "--size", "9", "9"])
    assert again.exit_code != 0 and "exists" in again.output


def test_cli_glasbey_lut_from_fiji_file(tmp_path, section, clf_exact, reference, lut_files):
    """--lut with a glasbey.lut text file as Fiji ships it: an indexed PNG whose palette is that table."""
    lut = pytest.importorskip("pyquint.lut")
    if not hasattr(lut, "load_lut"):
        pytest.skip("pyquint.lut.load_lut is not available yet")
    from pyquint.cli import main

    _, proba = reference
    lut_file = lut_files / "glasbey.lut"
    table = np.asarray(lut.load_lut(str(lut_file)).table)
    clf_exact.save(tmp_path / "m.h5")
    np.save(tmp_path / "sec.npy", section.image)
    result = CliRunner().invoke(main, ["large", "predict", str(tmp_path / "m.h5"),
                                       str(tmp_path / "sec.npy"), "-o", str(tmp_path / "out"),
                                       "--lut", str(lut_file), "--tile", "64"])
    assert result.exit_code == 0, result.output
    im = Image.open(tmp_path / "out" / "sec_Simple Segmentation.png")
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), np.argmax(proba, -1) + 1)
    np.testing.assert_array_equal(np.asarray(im.getpalette()).reshape(-1, 3)[:256], table)
