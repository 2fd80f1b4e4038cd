"""Palette and RGB PNGs: chunks parsed from the bytes, decoded by Pillow and OpenCV."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pyquint.errors import InputError
from pyquint.lut import (
    PYQUINT_LUT_DIR,
    LabelConversionWarning,
    Lut,
    apply_lut,
    as_labels,
    lut_ramp,
    read_labels,
    read_lut,
    write_palette_png,
    write_rgb_png,
)


def png_chunks(path) -> list[tuple[bytes, bytes]]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


@pytest.fixture(scope="module")
def glasbey() -> Lut:
    """pyquint's Glasbey table (the palette's origin is not what these tests are about)."""
    return read_lut(PYQUINT_LUT_DIR / "glasbey.lut")


@pytest.fixture()
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 5, (37, 53)).astype(np.uint8)
    lab[0, :3] = [0, 255, 17]
    return lab


def test_palette_png_chunks_and_decode(tmp_path, glasbey, labels):
    path = write_palette_png(tmp_path / "seg_s001.png", labels, glasbey)
    chunks = dict(png_chunks(path))
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (53, 37, 8, 3)
    assert len(chunks[b"PLTE"]) == 768
    assert chunks[b"PLTE"] == glasbey.table.tobytes()  # r,g,b interleaved = the LUT
    assert b"tRNS" not in chunks
    with Image.open(path) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im), labels)
        assert np.array_equal(np.array(im.getpalette()).reshape(-1, 3), glasbey.table)
        rgb = np.asarray(im.convert("RGB"))
    assert rgb[0, 0].tolist() == [255, 255, 255] and tuple(rgb[labels == 2][0]) == (255, 0, 0)
    assert np.array_equal(rgb, glasbey.table[labels])


def test_palette_png_read_by_opencv_as_bgr(tmp_path, glasbey, labels):
    cv2 = pytest.importorskip("cv2")
    path = write_palette_png(tmp_path / "x.png", labels, glasbey)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    # PyNutil's view (spec A1b): glasbey index 2 (red) reads [0, 0, 255]
    assert bgr[labels == 2][0].tolist() == [0, 0, 255]
    assert np.array_equal(bgr[..., ::-1], glasbey.table[labels])


def test_rgb_png(tmp_path, glasbey, labels):
    path = write_rgb_png(tmp_path / "rgb.png", labels, glasbey)
    chunks = dict(png_chunks(path))
    assert struct.unpack(">IIBB", chunks[b"IHDR"][:10]) == (53, 37, 8, 2)
    assert b"PLTE" not in chunks
    with Image.open(path) as im:
        assert im.mode == "RGB"
        rgb = np.asarray(im)
    for y, x in [(0, 0), (0, 1), (0, 2), (10, 10), (36, 52)]:
        assert tuple(rgb[y, x]) == glasbey.color(labels[y, x])
    assert np.array_equal(rgb, apply_lut(labels, glasbey))


def test_palette_round_trip_through_reader(tmp_path, glasbey, labels):
    path = write_palette_png(tmp_path / "p.png", labels, glasbey)
    assert np.array_equal(read_labels(path), labels)  # indices kept, as ImageJ/ilastik read it


def test_uint16_labels_converted_exactly_with_warning(tmp_path, glasbey, labels):
    with pytest.warns(LabelConversionWarning, match="rescale"):
        out = as_labels(labels.astype(np.uint16))
    assert out.dtype == np.uint8 and np.array_equal(out, labels)
    # a real 16-bit PNG file on disk
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "l16.png")
    with pytest.warns(LabelConversionWarning):
        path = write_palette_png(tmp_path / "o.png", read_labels(tmp_path / "l16.png"), glasbey)
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), labels)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.full((4, 4), 256, np.uint16), "0..255"),
        (np.full((4, 4), -1, np.int16), "0..255"),
        (np.zeros((4, 4), np.float32), "float32"),
        (np.zeros((4, 4, 3), np.uint8), "3 channels"),
        (np.zeros((4, 4, 4), np.uint8), "4 channels"),
        (np.zeros((2, 4, 4, 1), np.uint8), "2-D"),
        (np.zeros(4, np.uint8), "2-D"),
    ],
)
def test_bad_label_images(data, message, glasbey, tmp_path):
    with pytest.raises(InputError, match=message):
        as_labels(data)
    with pytest.raises(InputError, match=message):
        write_palette_png(tmp_path / "bad.png", data, glasbey)
    assert not (tmp_path / "bad.png").exists()


def test_rgb_file_rejected(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="rgb.png"):
        read_labels(tmp_path / "rgb.png")


def test_single_channel_and_bool_accepted():
    assert as_labels(np.ones((3, 3, 1), np.uint8)).shape == (3, 3)
    assert as_labels(np.ones((3, 3), bool)).dtype == np.uint8


def test_ramp_like_imagej():
    ramp = lut_ramp()
    assert ramp.shape == (32, 256) and ramp.dtype == np.uint8
    assert all(np.array_equal(row, np.arange(256)) for row in ramp)
    with pytest.raises(InputError):
        lut_ramp(0, 5)
