"""ImageJ discovery and the in-process Java API backend (one JVM for the whole pytest run).

Real-ImageJ tests use the ``require_imagej`` fixture (loud skip without ImageJ, failure under
PYQUINT_REQUIRE_IMAGEJ=1). Macro runs in subprocesses are in test_imagej_macros.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import pyquint.imagej.discovery as discovery
from pyquint.cli import main
from pyquint.errors import ImageJError, InputError
from pyquint.imagej import find_imagej, find_java, imagej_info
from pyquint.io import write_image

FIJI_LUTS = ("glasbey.lut", "glasbey_on_dark.lut", "glasbey_inverted.lut")


# --------------------------------------------------------------------------- helpers
def parse_lut_independently(path: Path) -> np.ndarray:
    """(256, 3) table of a raw 768-byte or a 3/4-column text LUT, written for the tests only."""
    data = path.read_bytes()
    if len(data) == 768:
        return np.frombuffer(data, dtype=np.uint8).reshape(3, 256).T.copy()
    rows = []
    for line in data.decode("ascii").splitlines():
        numbers = re.findall(r"-?\d+", line)
        if len(numbers) in (3, 4) and not re.search(r"[A-Za-z]", line):
            rows.append([int(v) for v in numbers[-3:]])
    table = np.array(rows, dtype=np.uint8)
    assert table.shape == (256, 3), (path, table.shape)
    return table


def python_palette_png(path: Path, labels: np.ndarray, table: np.ndarray) -> Path:
    """pyquint's pure-Python path: pyquint.lut's writer when present, else pyquint.io."""
    try:
        from pyquint.lut import Lut, write_palette_png
    except ImportError:
        write_image(path, labels, "yx", palette=table)
        return path
    try:
        lut = Lut(table=table, name="t")
    except TypeError:
        lut = Lut(table, "t")
    write_palette_png(path, labels, lut)
    return path


def png_colour_type(path: Path) -> int:
    return path.read_bytes()[25]  # IHDR: 8 signature + 8 chunk head + 9 bytes in


def assert_same_palette_png(a: Path, b: Path) -> None:
    with Image.open(a) as ia, Image.open(b) as ib:
        assert ia.mode == ib.mode == "P"
        np.testing.assert_array_equal(np.asarray(ia), np.asarray(ib))
        pa, pb = ia.getpalette(), ib.getpalette()
        assert len(pa) == len(pb) == 768
        assert pa == pb
        np.testing.assert_array_equal(np.asarray(ia.convert("RGB")), np.asarray(ib.convert("RGB")))
    assert png_colour_type(a) == png_colour_type(b) == 3


def label_image(seed: int = 0, shape=(37, 53), n: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n, shape, dtype=np.uint8)
    labels[0, :4] = [0, 1, 2, 255]  # always include both ends of the table
    return labels


@pytest.fixture(scope="session")
def ij(require_imagej):
    """The process-wide JVM with ImageJ (started once for all tests)."""
    from pyquint.imagej import start_jvm

    start_jvm()
    return True


# --------------------------------------------------------------------------- discovery
@pytest.fixture()
def no_imagej(monkeypatch, tmp_path):
    """An environment where no ImageJ can be found (nothing set, no system jar, no Fiji)."""
    for var in ("PYQUINT_FIJI", "FIJI_HOME", "PYQUINT_IJ_JAR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(discovery, "SYSTEM_JARS", (str(tmp_path / "none" / "ij.jar"),))
    monkeypatch.setattr(discovery, "FIJI_LOCATIONS", (str(tmp_path / "none" / "Fiji.app"),))


def fake_jar(path: Path, version: str = "1.54f") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ij/ImageJ.class", b"\xca\xfe\xba\xbe..." + version.encode() + b"...")
    return path


def test_no_imagej_says_what_to_install(no_imagej):
    with pytest.raises(ImageJError) as err:
        find_imagej()
    msg = str(err.value)
    assert "libij-java" in msg and "PYQUINT_FIJI" in msg and "default-jre-headless" in msg


def test_discovery_order(no_imagej, monkeypatch, tmp_path):
    jar = fake_jar(tmp_path / "lib" / "ij.jar", "1.53k")
    fiji = tmp_path / "Fiji.app"
    fake_jar(fiji / "jars" / "ij-1.54f.jar", "1.54f")
    (fiji / "luts").mkdir()
    (fiji / "plugins").mkdir()
    monkeypatch.setattr(discovery, "SYSTEM_JARS", (str(jar),))
    found = find_imagej()
    assert (found.kind, found.source, found.version, found.root) == ("ij1", "system", "1.53k", None)
    monkeypatch.setattr(discovery, "FIJI_LOCATIONS", (str(fiji),))
    found = find_imagej()
    assert found.kind == "fiji" and found.root == fiji.resolve() and found.version == "1.54f"
    assert found.luts_dir == fiji.resolve() / "luts"
    other = fake_jar(tmp_path / "other" / "ij.jar", "1.52a")
    monkeypatch.setenv("PYQUINT_IJ_JAR", str(other))
    assert find_imagej().source == "PYQUINT_IJ_JAR" and find_imagej().version == "1.52a"
    monkeypatch.setenv("FIJI_HOME", str(fiji))
    assert find_imagej().source == "FIJI_HOME"
    monkeypatch.setenv("PYQUINT_FIJI", str(fiji))
    assert find_imagej().source == "PYQUINT_FIJI"
    assert find_imagej(jar).source == "argument" and find_imagej(jar).ij_jar == jar.resolve()


def test_bad_explicit_locations_are_errors(no_imagej, monkeypatch, tmp_path):
    monkeypatch.setenv("PYQUINT_FIJI", str(tmp_path / "missing.app"))
    with pytest.raises(ImageJError, match="PYQUINT_FIJI"):
        find_imagej()
    monkeypatch.delenv("PYQUINT_FIJI")
    (tmp_path / "empty.app").mkdir()
    with pytest.raises(ImageJError, match="not a Fiji.app"):
        find_imagej(tmp_path / "empty.app")
    not_jar = tmp_path / "x.jar"
    not_jar.write_bytes(b"not a zip")
    with pytest.raises(ImageJError, match="not an ImageJ jar"):
        find_imagej(not_jar)


def test_no_java_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("PYQUINT_JAVA", raising=False)
    monkeypatch.setattr(discovery, "JAVA_CANDIDATES", ("no-such-java-pyquint",))
    with pytest.raises(ImageJError, match="default-jre-headless"):
        find_java()
    with pytest.raises(ImageJError, match="no such Java"):
        find_java(tmp_path / "java")
    monkeypatch.setenv("PYQUINT_JAVA", str(tmp_path / "nojava"))
    with pytest.raises(ImageJError, match="PYQUINT_JAVA"):
        find_java()


def test_info_cli_without_imagej(no_imagej):
    result = CliRunner().invoke(main, ["imagej", "info"])
    assert result.exit_code == 1
    assert "ImageJ:        not found" in result.output and "libij-java" in result.output
    info = imagej_info()
    assert "error" in info["imagej"] and info["problems"]


def test_without_imagej_the_python_path_still_works(tmp_path):
    """A fresh process with no ImageJ anywhere: ImageJ calls fail clearly, Python LUTs work."""
    script = textwrap.dedent(f"""
        import numpy as np, os
        import pyquint.imagej.discovery as d
        d.SYSTEM_JARS = (); d.FIJI_LOCATIONS = ()
        for v in ("PYQUINT_FIJI", "FIJI_HOME", "PYQUINT_IJ_JAR"):
            os.environ.pop(v, None)
        from pyquint.errors import ImageJError
        from pyquint.imagej import apply_lut_imagej, run_macro
        from pyquint.io import write_image
        labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
        table = np.stack([np.arange(256)] * 3, 1).astype(np.uint8)[::-1]
        for call in (lambda: apply_lut_imagej(labels, table, {str(tmp_path / 'ij.png')!r}),
                     lambda: run_macro('print(1);\\n')):
            try:
                call()
            except ImageJError as exc:
                assert "libij-java" in str(exc), exc
                print("ImageJError ok")
        write_image({str(tmp_path / 'py.png')!r}, labels, "yx", palette=table)
        print("python ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ImageJError", "ok", "ImageJError", "ok", "python", "ok"]
    with Image.open(tmp_path / "py.png") as im:
        assert im.mode == "P" and np.asarray(im)[2, 3] == 11 and im.getpalette()[33:36] == [244] * 3
    assert not (tmp_path / "ij.png").exists()


def test_info_with_real_imagej(require_imagej):
    info = imagej_info()
    assert info["imagej"]["version"] and info["imagej"]["version"].startswith("1.")
    assert info["java"] is not None
    result = CliRunner().invoke(main, ["imagej", "info"])
    assert result.exit_code == 0, result.output
    assert info["imagej"]["version"] in result.output


# --------------------------------------------------------------------------- in-process ImageJ
def test_numpy_imageplus_round_trip(ij):
    from pyquint.imagej import array_to_imageplus, imageplus_to_array

    rng = np.random.default_rng(1)
    cases = [
        rng.integers(0, 256, (7, 11), dtype=np.uint8),
        rng.integers(0, 65536, (5, 9), dtype=np.uint16),
        rng.normal(size=(4, 6)).astype(np.float32),
        rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
    ]
    for arr in cases:
        imp = array_to_imageplus(arr)
        assert (imp.getWidth(), imp.getHeight()) == (arr.shape[1], arr.shape[0])
        back = imageplus_to_array(imp)
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(back, arr)
    with pytest.raises(InputError):
        array_to_imageplus(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(InputError, match="int64"):
        array_to_imageplus(np.zeros((2, 3), np.int64))


def test_imagej_reads_fiji_luts_like_the_independent_parser(ij, reference_dir):
    from pyquint.imagej import open_lut_imagej

    for name in FIJI_LUTS:
        path = reference_dir / "fiji-luts" / name
        np.testing.assert_array_equal(open_lut_imagej(path), parse_lut_independently(path))
    # Spot values from the spec (glasbey index 1 blue, 2 red, 3 green; index 0 white).
    table = open_lut_imagej(reference_dir / "fiji-luts" / "glasbey.lut")
    assert table[:4].tolist() == [[255, 255, 255], [0, 0, 255], [255, 0, 0], [0, 255, 0]]


@pytest.mark.parametrize("name", FIJI_LUTS)
def test_imagej_png_identical_to_python_png_fiji_luts(ij, reference_dir, tmp_path, name):
    from pyquint.imagej import apply_lut_imagej

    lut_path = reference_dir / "fiji-luts" / name
    labels = label_image(seed=len(name))
    ij_png = apply_lut_imagej(labels, lut_path, tmp_path / "ij.png")
    py_png = python_palette_png(tmp_path / "py.png", labels, parse_lut_independently(lut_path))
    assert_same_palette_png(ij_png, py_png)
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_imagej_png_identical_custom_lut(ij, tmp_path):
    from pyquint.imagej import apply_lut_imagej

    table = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)
    raw = tmp_path / "custom.lut"
    raw.write_bytes(np.ascontiguousarray(table.T).tobytes())
    labels = label_image(seed=2)
    py_png = python_palette_png(tmp_path / "py.png", labels, table)
    # a LUT file, a (256, 3) array (handed to ImageJ as a temporary raw file), and a path
    assert_same_palette_png(apply_lut_imagej(labels, raw, tmp_path / "a.png"), py_png)
    assert_same_palette_png(apply_lut_imagej(labels, table, tmp_path / "b.png"), py_png)
    src = tmp_path / "labels.png"
    Image.fromarray(labels).save(src)
    assert_same_palette_png(apply_lut_imagej(src, raw, tmp_path / "c.png"), py_png)


def test_imagej_png_identical_pyquint_glasbey(ij, tmp_path):
    lut_module = pytest.importorskip("pyquint.lut", reason="pyquint.lut (the LUT helper's module) not present yet")
    from pyquint.imagej import apply_lut_imagej, open_lut_imagej

    labels = label_image(seed=5)
    for variant in ("glasbey", "glasbey_on_dark", "glasbey_inverted"):
        lut = lut_module.glasbey_lut(variant)
        path = tmp_path / f"{variant}.lut"
        lut_module.write_lut(lut, path, fmt="binary")
        np.testing.assert_array_equal(open_lut_imagej(path), np.asarray(lut.table))
        ij_png = apply_lut_imagej(labels, path, tmp_path / f"ij_{variant}.png")
        py_png = tmp_path / f"py_{variant}.png"
        lut_module.write_palette_png(py_png, labels, lut)
        assert_same_palette_png(ij_png, py_png)


def test_wider_integer_labels_in_range_are_not_scaled(ij, lut_files, tmp_path):
    from pyquint.imagej import apply_lut_imagej

    labels16 = np.array([[0, 1, 2], [3, 255, 7]], dtype=np.uint16)
    src = tmp_path / "l16.tif"
    write_image(src, labels16, "yx")
    out = apply_lut_imagej(src, lut_files / "glasbey.lut", tmp_path / "o.png")
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), labels16.astype(np.uint8))


def test_bad_inputs_are_clear_errors(ij, lut_files, tmp_path):
    from pyquint.imagej import apply_lut_imagej, open_lut_imagej

    lut = lut_files / "glasbey.lut"
    with pytest.raises(InputError, match=r"0\.\.300"):
        apply_lut_imagej(np.array([[0, 300]], np.uint16), lut, tmp_path / "a.png")
    with pytest.raises(InputError, match="2-D"):
        apply_lut_imagej(np.zeros((2, 3, 3), np.uint8), lut, tmp_path / "a.png")
    with pytest.raises(InputError, match="integers"):
        apply_lut_imagej(np.zeros((2, 3), np.float32), lut, tmp_path / "a.png")
    with pytest.raises(InputError, match="no such LUT"):
        apply_lut_imagej(np.zeros((2, 3), np.uint8), tmp_path / "none.lut", tmp_path / "a.png")
    big = tmp_path / "big.lut"
    big.write_bytes(b"0" * 10001)
    with pytest.raises(InputError, match="10000"):
        open_lut_imagej(big)
    odd = tmp_path / "odd.lut"
    odd.write_bytes(b"\x01" * 500)
    with pytest.raises(ImageJError, match="LutLoader"):
        open_lut_imagej(odd)
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(src)
    with pytest.raises(InputError, match="overwrite an input"):
        apply_lut_imagej(src, lut, src)
    with pytest.raises(InputError, match="no such file"):
        apply_lut_imagej(tmp_path / "missing.png", lut, tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


def test_batch_in_one_jvm_resumes(ij, lut_files, tmp_path):
    from pyquint.imagej import apply_lut_imagej_batch

    lut = lut_files / "glasbey_on_dark.lut"
    table = parse_lut_independently(lut)
    inputs = []
    for k in range(3):
        inputs.append(tmp_path / "in" / f"sec_s00{k}.png")
        inputs[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(label_image(seed=k, n=9)).save(inputs[-1])
    outputs = [tmp_path / "out" / p.name for p in inputs]
    assert apply_lut_imagej_batch(inputs[:1], outputs[:1], lut) == outputs[:1]
    mtime = outputs[0].stat().st_mtime_ns
    assert apply_lut_imagej_batch(inputs, outputs, lut) == outputs[1:]  # the first is skipped
    assert outputs[0].stat().st_mtime_ns == mtime
    assert len(apply_lut_imagej_batch(inputs, outputs, lut, overwrite=True)) == 3
    for src, dst in zip(inputs, outputs):
        ref = python_palette_png(tmp_path / "ref.png", np.asarray(Image.open(src)), table)
        assert_same_palette_png(dst, ref)
    with pytest.raises(InputError, match="overwrite an input"):
        apply_lut_imagej_batch(inputs, inputs, lut)


def test_apply_lut_cli(ij, lut_files, tmp_path):
    folder = tmp_path / "seg"
    folder.mkdir()
    labels = label_image(seed=9, n=4)
    Image.fromarray(labels).save(folder / "a_s001.png")
    lut = lut_files / "glasbey.lut"
    result = CliRunner().invoke(main, ["imagej", "apply-lut", str(lut), str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1 written" in result.output
    ref = python_palette_png(tmp_path / "ref.png", labels, parse_lut_independently(lut))
    assert_same_palette_png(tmp_path / "out" / "a_s001.png", ref)
    result = CliRunner().invoke(main, ["imagej", "apply-lut", str(lut), str(tmp_path / "nothing"), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0 and "nothing" in result.output


def test_read_image_imagej_matches_pillow(ij, tmp_path):
    from pyquint.data import make_section
    from pyquint.imagej import read_image_imagej

    cells_png = tmp_path / "section_s001.png"
    Image.fromarray(make_section(3, (120, 150)).image).save(cells_png)

    with Image.open(cells_png) as im:
        assert im.mode == "L"
        ref = np.asarray(im)
    got = read_image_imagej(cells_png)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, ref)
