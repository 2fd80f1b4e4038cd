"""Macro generation without ImageJ: parameters, flavours, the CLI, imagej_macros/ currency.

The macros' behaviour in a real ImageJ is tested in test_imagej_macros.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pyquint.cli import main
from pyquint.errors import InputError
from pyquint.imagej.params import (
    bind_script_parameters,
    has_script_parameters,
    ijm_string,
    pack_args,
    parse_script_parameters,
)
from pyquint.macros import FLAVOURS, MACROS, generate_macro, macro_filename, regenerate_macros
from pyquint.macros.run_cli import STATUS_PREFIX, build_argv

ROOT = Path(__file__).resolve().parents[1]


def _has_lut_module() -> bool:
    try:
        import pyquint.lut  # noqa: F401
    except ImportError:
        return False
    return True




@pytest.fixture()
def raw_lut(tmp_path: Path) -> tuple[Path, np.ndarray]:
    table = np.random.default_rng(3).integers(0, 256, (256, 3), dtype=np.uint8)
    path = tmp_path / "custom.lut"
    path.write_bytes(np.ascontiguousarray(table.T).tobytes())
    return path, table


def _generate(name: str, flavour: str, raw_lut_path: Path, **params) -> str:
    if name == "lut-inline-batch" and not _has_lut_module():
        params.setdefault("lut", str(raw_lut_path))
    return generate_macro(name, flavour, **params)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", list(MACROS))
def test_every_macro_renders_its_parameters(name, flavour, raw_lut):
    text = _generate(name, flavour, raw_lut[0])
    spec = MACROS[name]
    assert text.endswith("\n") and "\t" in text  # IJ1 macro code, tab-indented
    has_params = has_script_parameters(text)
    assert has_params == (flavour == "fiji")
    if flavour == "fiji":
        declared = [p.name for p in parse_script_parameters(text)]
        assert declared == [p.name for p in spec.runtime_params]
        assert "getArgument()" not in text
    else:
        assert "#@" not in text
        assert "getArgument()" in text
        for p in spec.runtime_params:
            assert re.search(rf"^{p.name} = ", text, re.M), p.name
    # Brackets balance (a cheap syntax sanity check; real parsing happens in ImageJ tests).
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith(("//", "#@"))
    ))
    for a, b in ("()", "{}", "[]"):
        assert code.count(a) == code.count(b), (name, a)


def test_values_are_templated_and_escaped(raw_lut):
    text = generate_macro("glasbey-batch", "ij1", inDir='C:\\data "seg"', out_dir="/o", overwrite=True)
    assert 'inDir = "C:\\\\data \\"seg\\"";' in text
    assert 'outDir = "/o";' in text
    assert "overwrite = true;" in text
    fiji = generate_macro("glasbey-batch", "fiji", lut="glasbey on dark")
    assert '#@ String (label="LUT", choices={"glasbey","glasbey on dark","glasbey inverted"}, value="glasbey on dark"' in fiji


def test_inline_lut_embeds_the_table(raw_lut):
    path, table = raw_lut
    text = generate_macro("lut-inline-batch", "ij1", lut=str(path))
    arrays = {}
    for name in ("pyquintReds", "pyquintGreens", "pyquintBlues"):
        m = re.search(rf"{name} = newArray\(([^)]*)\);", text)
        arrays[name] = [int(v) for v in m.group(1).replace("\n", " ").replace("\t", " ").split(",")]
    got = np.array([arrays["pyquintReds"], arrays["pyquintGreens"], arrays["pyquintBlues"]]).T
    np.testing.assert_array_equal(got, table)
    assert "setLut(pyquintReds, pyquintGreens, pyquintBlues);" in text


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("no-such-macro", {}, "unknown macro"),
        ("glasbey-batch", {"colour": "red"}, "no parameter 'colour'"),
        ("glasbey-batch", {"lut": "fire"}, "not one of"),
        ("downscale-batch", {"factor": 1.5}, "outside"),
        ("downscale-batch", {"factor": "big"}, "not a number"),
        ("glasbey-batch", {"overwrite": "maybe"}, "not true/false"),
        ("glasbey-batch", {"inDir": "a\nb"}, "line breaks"),
        ("lut-inline-batch", {"lut": "/no/such/file.lut"}, "file.lut"),
    ],
)
def test_bad_generator_input(name, params, match):
    with pytest.raises(InputError, match=match):
        generate_macro(name, "ij1", **params)


def test_unknown_flavour():
    with pytest.raises(InputError, match="flavour"):
        generate_macro("glasbey-batch", "jython")


def test_bind_script_parameters_turns_fiji_into_ij1():
    text = generate_macro("downscale-batch", "fiji", factor=0.15)
    bound = bind_script_parameters(text, {"inDir": "/in", "outDir": "/out", "average": False})
    assert not has_script_parameters(bound)
    assert 'inDir = "/in";' in bound and 'outDir = "/out";' in bound
    assert "factor = 0.15;" in bound  # from value=
    assert "average = false;" in bound
    assert 'interpolation = "Bilinear";' in bound
    with pytest.raises(InputError, match="inDir"):
        bind_script_parameters(text, {"outDir": "/out"})  # required File without a value
    with pytest.raises(InputError, match="unknown script parameter"):
        bind_script_parameters(text, {"inDir": "/i", "outDir": "/o", "bogus": 1})
    with pytest.raises(InputError, match="not a number"):
        bind_script_parameters(text, {"inDir": "/i", "outDir": "/o", "factor": "x"})
    with pytest.raises(InputError, match="ImageJ2/Fiji"):
        bind_script_parameters("#@ ImageJ ij\nprint(1);\n", {})


def test_pack_args():
    assert pack_args(None) == ""
    assert pack_args("a|b") == "a|b"
    assert pack_args(["x", 2, True]) == "x|2|true"
    assert pack_args({"inDir": "/a", "overwrite": False}) == "inDir=/a|overwrite=false"
    with pytest.raises(InputError, match=r"'\|'"):
        pack_args(["a|b"])
    assert ijm_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", list(MACROS))
def test_imagej_macros_folder_is_current(name, flavour):
    if name == "lut-inline-batch" and not _has_lut_module():
        pytest.skip("lut-inline-batch embeds pyquint's glasbey table: needs pyquint.lut")
    path = ROOT / "imagej_macros" / macro_filename(name, flavour)
    assert path.is_file(), f"{path} missing: run `pyquint macro regenerate --out imagej_macros`"
    assert path.read_text(encoding="utf-8") == generate_macro(name, flavour), (
        f"{path} is outdated: run `pyquint macro regenerate --out imagej_macros`"
    )


def test_regenerate_writes_every_file(tmp_path, raw_lut):
    if not _has_lut_module():
        pytest.skip("lut-inline-batch's default (glasbey) needs pyquint.lut")
    files = regenerate_macros(tmp_path / "m")
    assert len(files) == len(MACROS) * len(FLAVOURS)
    assert {f.parent.name for f in files} == set(FLAVOURS)
    result = CliRunner().invoke(main, ["macro", "regenerate", "--out", str(tmp_path / "m"), "--check"])
    assert result.exit_code == 0, result.output
    (tmp_path / "m" / "ij1" / "glasbey_batch.ijm").write_text("// edited\n")
    result = CliRunner().invoke(main, ["macro", "regenerate", "--out", str(tmp_path / "m"), "--check"])
    assert result.exit_code == 1 and "glasbey_batch.ijm" in result.output


def test_cli_prints_the_same_text_as_the_api(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["macro", "downscale-batch", "--flavour", "fiji", "--factor", "0.1",
                                  "--in-dir", "/data/in", "--no-average"])
    assert result.exit_code == 0, result.output
    assert result.output == generate_macro("downscale-batch", "fiji", factor=0.1, inDir="/data/in", average=False)
    out = tmp_path / "g.ijm"
    result = runner.invoke(main, ["macro", "glasbey-batch", "-o", str(out), "--lut", "glasbey inverted"])
    assert result.exit_code == 0, result.output
    assert out.read_text() == generate_macro("glasbey-batch", "ij1", lut="glasbey inverted")
    # pyquint-classify defaults to the Python that runs this pyquint.
    result = runner.invoke(main, ["macro", "pyquint-classify"])
    assert f"python = {ijm_string(sys.executable)};" in result.output
    result = runner.invoke(main, ["macro", "downscale-batch", "--factor", "3"])
    assert result.exit_code != 0 and "outside" in result.output
    result = runner.invoke(main, ["macro", "list"])
    assert all(name in result.output for name in MACROS)


def test_run_cli_argv_and_status_line():
    assert build_argv("pixel predict", '--export-source "Simple Segmentation"', ["m.h5", "", "in", "--output-dir="]) == [
        "pixel", "predict", "m.h5", "in", "--export-source", "Simple Segmentation",
    ]
    ok = subprocess.run([sys.executable, "-m", "pyquint.macros.run_cli", "--version", ""],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0
    assert "version" in ok.stdout and ok.stdout.strip().endswith(f"{STATUS_PREFIX}0]")
    bad = subprocess.run([sys.executable, "-m", "pyquint.macros.run_cli", "no-such-command", ""],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    last = bad.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{STATUS_PREFIX}2] Error") and "no-such-command" in last
    assert bad.stderr == ""  # everything went to stdout, the only stream ImageJ's exec() reads
