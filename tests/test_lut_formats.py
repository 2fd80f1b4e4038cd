"""LUT file formats: the three Fiji reference files and hand-made files of every kind."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pyquint.errors import InputError
from pyquint.lut import Lut, interpolate_colors, lut_from_bytes, read_lut, write_lut

# Entries decoded in ../shared/specs/imagej-quint-nutil.md (Part A2)
SPEC = {
    "glasbey": {0: (255, 255, 255), 1: (0, 0, 255), 2: (255, 0, 0), 3: (0, 255, 0), 15: (241, 8, 92)},
    "glasbey_on_dark": {0: (0, 0, 0), 1: (255, 255, 0), 2: (255, 25, 255), 15: (0, 73, 96)},
    "glasbey_inverted": {0: (0, 0, 0), 1: (0, 48, 136), 2: (16, 136, 0), 15: (184, 176, 216)},
}


def _table(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (256, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def fiji_luts(reference_dir):
    return reference_dir / "fiji-luts"


@pytest.mark.parametrize("name", sorted(SPEC))
def test_reference_files(fiji_luts, name):
    lut = read_lut(fiji_luts / f"{name}.lut")
    assert lut.name == name
    assert lut.table.shape == (256, 3) and lut.table.dtype == np.uint8
    for index, rgb in SPEC[name].items():
        assert lut.color(index) == rgb
    assert len({tuple(c) for c in lut.table.tolist()}) == 256  # all distinct (spec)


def test_reference_text_parsed_like_numpy(fiji_luts):
    # independent parse of the two text files
    g = np.loadtxt(fiji_luts / "glasbey.lut", skiprows=1)[:, 1:]
    d = np.loadtxt(fiji_luts / "glasbey_on_dark.lut")
    assert np.array_equal(read_lut(fiji_luts / "glasbey.lut").table, g)
    assert np.array_equal(read_lut(fiji_luts / "glasbey_on_dark.lut").table, d)
    raw = np.fromfile(fiji_luts / "glasbey_inverted.lut", np.uint8)
    lut = read_lut(fiji_luts / "glasbey_inverted.lut")
    assert np.array_equal(lut.reds, raw[:256]) and np.array_equal(lut.blues, raw[512:])


def test_reference_round_trips(fiji_luts, tmp_path):
    for name in SPEC:
        lut = read_lut(fiji_luts / f"{name}.lut")
        for fmt in ("binary", "text"):
            out = write_lut(lut, tmp_path / f"{name}_{fmt}.lut", fmt)
            assert read_lut(out) == Lut(f"{name}_{fmt}", lut.table)
        assert (tmp_path / f"{name}_binary.lut").read_bytes() == lut.to_bytes()
    assert (tmp_path / "glasbey_inverted_binary.lut").read_bytes() == (fiji_luts / "glasbey_inverted.lut").read_bytes()


def test_raw_768_and_970(tmp_path):
    t = _table(1)
    raw = t.T.tobytes()
    (tmp_path / "a.lut").write_bytes(raw)
    assert np.array_equal(read_lut(tmp_path / "a.lut").table, t)
    (tmp_path / "b.lut").write_bytes(raw + bytes(range(202)))  # 970: trailing bytes ignored
    assert np.array_equal(read_lut(tmp_path / "b.lut").table, t)


def _nih(colors: np.ndarray, declared: int | None = None) -> bytes:
    n = len(colors) if declared is None else declared
    header = struct.pack(">ihhhh", 0x49434F4C, 1, n, 0, n - 1) + bytes(20)
    assert len(header) == 32
    return header + np.ascontiguousarray(colors.T).tobytes()


def test_nih_image_full(tmp_path):
    t = _table(2)
    (tmp_path / "nih.lut").write_bytes(_nih(t))  # 800 bytes
    assert np.array_equal(read_lut(tmp_path / "nih.lut").table, t)


def test_nih_image_interpolated_like_imagej(tmp_path):
    colors = np.array([[0, 255, 10], [255, 0, 200]], np.uint8)
    data = _nih(colors) + bytes(800 - 32 - 6)  # pad above 768 bytes, as NIH files are
    (tmp_path / "two.lut").write_bytes(data)
    lut = read_lut(tmp_path / "two.lut")
    # ImageJ: i1 = int(i*n/256), i2 = min(i1+1, n-1), value = (byte)((1-f)*c[i1] + f*c[i2])
    for i in range(256):
        pos = i * 2 / 256
        i1 = int(pos)
        i2 = min(i1 + 1, 1)
        f = pos - i1
        expected = [int((1 - f) * colors[i1, a] + f * colors[i2, a]) for a in range(3)]
        assert list(lut.table[i]) == expected, i
    assert np.array_equal(interpolate_colors(colors), lut.table)


def test_nih_32_colours_matches_repeat():
    # 32 colours -> each repeated/mixed over 8 entries; entry 8*k is colour k exactly
    colors = _table(3)[:32]
    table = interpolate_colors(colors)
    assert np.array_equal(table[::8], colors)


@pytest.mark.parametrize("sep", ["\t", " ", ",", ", ", "  "])
@pytest.mark.parametrize("index_col", [False, True])
@pytest.mark.parametrize("header", [False, True])
def test_text_tables(tmp_path, sep, index_col, header):
    t = _table(4)
    lines = []
    if header:
        lines.append(sep.join((["Index"] if index_col else []) + ["Red", "Green", "Blue"]))
    for i, row in enumerate(t.tolist()):
        lines.append(sep.join(str(v) for v in ([i] if index_col else []) + row))
    (tmp_path / "t.lut").write_text("\n".join(lines) + "\n")
    assert np.array_equal(read_lut(tmp_path / "t.lut").table, t)


def test_text_257_and_258_rows_drop_first_row(tmp_path):
    t = _table(5)
    extra = "1 2 3\n"
    body = "".join(f"{r} {g} {b}\n" for r, g, b in t.tolist())
    (tmp_path / "n257.lut").write_text(extra + body)  # numeric first row dropped (LutLoader)
    assert np.array_equal(read_lut(tmp_path / "n257.lut").table, t)
    (tmp_path / "n258.lut").write_text(extra + body + extra)  # first dropped, last ignored
    assert np.array_equal(read_lut(tmp_path / "n258.lut").table, t)
    # header row removed by TextReader, then 257 rows: the first data row goes too
    (tmp_path / "h258.lut").write_text("R G B\n" + extra + body)
    assert np.array_equal(read_lut(tmp_path / "h258.lut").table, t)


def test_text_blank_lines_and_crlf(tmp_path):
    t = _table(6)
    text = "\r\n".join(f"{r}\t{g}\t{b}" for r, g, b in t.tolist())
    (tmp_path / "crlf.lut").write_bytes(("\r\n" + text + "\r\n\r\n").encode())
    assert np.array_equal(read_lut(tmp_path / "crlf.lut").table, t)


# --------------------------------------------------------------------------- bad input
def _text(rows: int, cols: int, value: str = "7") -> str:
    return "".join(" ".join([value] * cols) + "\n" for _ in range(rows))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (bytes(10001), "too large"),
        (bytes(500), "not a LUT"),
        (bytes(767), "not a LUT"),
        (_text(255, 3).encode(), "255 data rows"),
        (_text(259, 3).encode(), "259 data rows"),
        (_text(256, 2).encode(), "2 columns"),
        (_text(256, 5).encode(), "5 columns"),
        (_text(256, 3, "1.5").encode(), "not an integer"),
        (_text(256, 3, "256").encode(), "outside 0..255"),
        (_text(256, 3, "-1").encode(), "outside 0..255"),
        (("1 2 3\n" * 100 + "1 2 x\n" + "1 2 3\n" * 155).encode(), "line 101"),
        (("1 2 3\n" * 100 + "1 2\n" + "1 2 3\n" * 155).encode(), "line 101 has 2 values"),
        (bytes(range(256)) * 4, "text LUT"),  # binary junk of 1024 bytes: not a text table
    ],
    ids=lambda v: str(v)[:20] if isinstance(v, str) else None,
)
def test_bad_lut_files(tmp_path, content, message):
    path = tmp_path / "bad.lut"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_lut(path)
    assert str(path) in str(info.value)


def test_bad_nih(tmp_path):
    t = _table(7)
    for declared, message in ((0, "0 colours"), (300, "300 colours")):
        (tmp_path / "n.lut").write_bytes(_nih(t, declared))
        with pytest.raises(InputError, match=message):
            read_lut(tmp_path / "n.lut")
    (tmp_path / "short.lut").write_bytes(_nih(t)[:790])
    with pytest.raises(InputError, match="truncated"):
        read_lut(tmp_path / "short.lut")


def test_missing_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such LUT file"):
        read_lut(tmp_path / "nope.lut")
    with pytest.raises(InputError, match="folder"):
        read_lut(tmp_path)


def test_lut_type_validation_and_custom_colours():
    t = _table(8)
    lut = Lut("x", t)
    assert not lut.table.flags.writeable
    with pytest.raises(InputError):
        Lut("x", t[:255])
    with pytest.raises(InputError):
        Lut("x", t.astype(float) + 0.5)
    with pytest.raises(InputError):
        Lut("x", t.astype(int) + 256)
    custom = lut.with_colors({2: (255, 0, 0), 1: (0, 0, 0)})
    assert custom.color(2) == (255, 0, 0) and custom.color(1) == (0, 0, 0)
    assert np.array_equal(custom.table[3:], t[3:]) and lut.color(2) == tuple(t[2])
    for bad in ({256: (0, 0, 0)}, {1: (0, 0, 256)}, {1: (0, 0)}, {1: (0.5, 0, 0)}, {"a": (0, 0, 0)}):
        with pytest.raises(InputError):
            lut.with_colors(bad)
    assert np.array_equal(Lut.from_planes("p", t[:, 0], t[:, 1], t[:, 2]).table, t)


def test_write_lut_atomic_and_formats(tmp_path):
    lut = Lut("x", _table(9))
    path = write_lut(lut, tmp_path / "x.lut")
    assert path.stat().st_size == 768
    text = write_lut(lut, tmp_path / "y.lut", "text")
    assert text.read_text().splitlines()[0] == "Index\tRed\tGreen\tBlue"
    assert text.stat().st_size > 970  # never mistaken for a raw LUT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lut", "y.lut"]  # no temp files left
    with pytest.raises(InputError, match="format"):
        write_lut(lut, tmp_path / "z.lut", "json")
    assert lut_from_bytes(lut.to_bytes()) == Lut("lut", lut.table)
