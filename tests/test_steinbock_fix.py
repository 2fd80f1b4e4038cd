"""`pyquint steinbock fix`: steinbock's legacy fix reproduced, and safe where steinbock fails."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import runpy
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from synth import make_legacy_case, write_imc_inputs

from pyquint.cli import main
from pyquint.errors import InputError
from pyquint.steinbock import fix, prepare
from pyquint.steinbock.fix import fix_crop_array

# values that differ by design: a new uuid1, the creation time, and the template's pickle
IGNORED = ("Raw Data/datasetId ", "D /time ", "ClassifierFactory")


@pytest.fixture(scope="module")
def sb_ref(reference_dir: Path) -> Path:
    return reference_dir / "steinbock"


@pytest.fixture(scope="module")
def dump_tool(sb_ref: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sb_dump_outputs_fix", sb_ref / "dump_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepare(folder: Path, sb_ref: Path | None = None) -> Path:
    """`prepare` on steinbock's reference inputs (``sb_ref``) or on inputs made here."""
    if sb_ref is not None:
        shutil.copytree(sb_ref / "inputs", folder, dirs_exist_ok=True)
    else:
        write_imc_inputs(folder)
    prepare(folder / "img", folder / "panel.csv", folder / "pixel_classifier.ilp", crop_size=50, seed=123,
            img_out=folder / "ilastik_img", crop_out=folder / "ilastik_crops")
    return folder


@pytest.fixture
def native(tmp_path: Path) -> Path:
    return _prepare(tmp_path / "native")


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A legacy (pre-`fix`) training set built by the tests' own generator."""
    folder = _prepare(tmp_path / "legacy")
    make_legacy_case(folder)
    return folder


@pytest.fixture
def legacy_ref(tmp_path: Path, sb_ref: Path) -> Path:
    """steinbock's legacy case, rebuilt with the reference generator script."""
    folder = _prepare(tmp_path / "legacy", sb_ref)
    argv = sys.argv
    sys.argv = ["make_legacy_fix_case.py", str(folder)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(sb_ref / "make_legacy_fix_case.py"), run_name="__main__")
    finally:
        sys.argv = argv
    return folder


def _sections(listing_text: str) -> dict[str, list[str]]:
    """Listing text (dump_outputs.py format) -> file -> lines; header keeps only the sha prefix."""
    out: dict[str, list[str]] = {}
    current = None
    for line in listing_text.splitlines():
        if line.startswith("== "):
            current = line[3:].split("  (")[0]
            sha = line.split("sha256 ")[1].rstrip(".)") if "sha256 " in line else ""
            out[current] = [f"sha256 {sha}"]
        elif current is not None and not any(k in line for k in IGNORED):
            out[current].append(line)
    return out


def _listing(dump_tool, folder: Path) -> dict[str, list[str]]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dump_tool.main(folder)
    return _sections(buf.getvalue())


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- legacy case
def test_legacy_fix_matches_steinbock_after_fix_listing(legacy_ref: Path, sb_ref: Path, dump_tool) -> None:
    legacy = legacy_ref
    before = _listing(dump_tool, legacy)
    ref_before = _sections((sb_ref / "fix_legacy" / "before_fix_listing.txt").read_text())
    for name in ("pixel_classifier.ilp",):
        assert before[name][1:] == ref_before[name][1:]  # the rebuilt legacy case is steinbock's

    result = fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    assert result.changed and result.transpose == (2, 0, 1)
    assert len(result.fixed_crops) == 3 and result.native_crops == []
    assert result.fixed_lanes == ["lane0000", "lane0001", "lane0002"]
    assert len(result.fixed_label_blocks) == 3 and result.local_data_cleared and result.export_rewritten

    ours = _listing(dump_tool, legacy)
    ref = _sections((sb_ref / "fix_legacy" / "after_fix_listing.txt").read_text())
    compared = [n for n in ref if n.startswith(("ilastik_crops", "pixel_classifier.ilp"))]
    assert sorted(compared) == sorted(n for n in ours if n.startswith(("ilastik_crops", "pixel_classifier.ilp")))
    for name in compared:
        if name.endswith((".ilp", ".bak")):
            assert ours[name][1:] == ref[name][1:], name  # project: every dataset/attr/dtype/value
        else:
            assert ours[name] == ref[name], name  # crops and their backups: same sha256 too


def test_legacy_fix_label_blocks_and_lanes(legacy: Path) -> None:
    with h5py.File(legacy / "pixel_classifier.ilp", "r") as f:
        old = f["PixelClassification/LabelSets/labels000/block0000"][()]
    fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    with h5py.File(legacy / "pixel_classifier.ilp", "r") as f:
        block = f["PixelClassification/LabelSets/labels000/block0000"]
        np.testing.assert_array_equal(block[()], np.transpose(old, (2, 0, 1)))
        assert block.attrs["blockSlice"] == "[0:1,5:15,7:27]"
        raw = f["Input Data/infos/lane0001/Raw Data"]
        assert raw["filePath"][()] == b"ilastik_crops/synth_b_x112_y8_w50_h50.h5/crop"
        assert raw["shape"][()].tolist() == [3, 50, 50]
        assert len(f["Input Data/local_data"]) == 0
    with h5py.File(legacy / "ilastik_crops" / "synth_a_x2_y102_w50_h50.h5", "r") as f:
        assert f["crop"].dtype == np.float32 and f["crop"].shape == (3, 50, 50)
        assert bool(f["crop"].attrs["steinbock"])


def test_second_fix_changes_nothing(legacy: Path) -> None:
    fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    shutil.rmtree(legacy / "ilastik_crops.bak")
    (legacy / "pixel_classifier.ilp.bak").unlink()
    before = _hashes(legacy)
    result = fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    assert not result.changed and result.backups == []
    assert _hashes(legacy) == before


# --------------------------------------------------------------------------- native case
def test_fix_on_native_output_succeeds_and_changes_nothing(native: Path, sb_ref: Path) -> None:
    assert "KeyError: 'synth_a_x2_y102_w50_h50'" in (sb_ref / "fix_native" / "fix.log").read_text()
    before = _hashes(native)
    runner = CliRunner()
    result = runner.invoke(main, ["steinbock", "fix", "--ilp", str(native / "pixel_classifier.ilp"),
                                  "--crop", str(native / "ilastik_crops"),
                                  "--probabs", str(native / "ilastik_probabilities")])
    assert result.exit_code == 0, result.output
    assert "nothing to fix (3 steinbock crops)" in result.output
    assert _hashes(native) == before  # no backups either


def test_fix_native_crops_with_stale_lanes(native: Path) -> None:
    """Native crops whose lanes point elsewhere: fixed from the crops' own shapes."""
    with h5py.File(native / "pixel_classifier.ilp", "a") as f:
        raw = f["Input Data/infos/lane0002/Raw Data"]
        del raw["filePath"]
        raw["filePath"] = b"/somewhere/else/synth_c_x172_y33_w50_h50.h5/crop"
    crops_before = {k: v for k, v in _hashes(native).items() if k.startswith("ilastik_crops/")}
    result = fix(native / "pixel_classifier.ilp", native / "ilastik_crops", native / "ilastik_probabilities")
    assert result.changed and result.fixed_crops == [] and result.fixed_lanes == ["lane0002"]
    with h5py.File(native / "pixel_classifier.ilp", "r") as f:
        raw = f["Input Data/infos/lane0002/Raw Data"]
        assert raw["filePath"][()] == b"ilastik_crops/synth_c_x172_y33_w50_h50.h5/crop"
        assert raw["shape"][()].tolist() == [3, 50, 50]
    assert (native / "pixel_classifier.ilp.bak").is_file()
    assert {k: v for k, v in _hashes(native).items() if k.startswith("ilastik_crops/")} == crops_before


# --------------------------------------------------------------------------- failures change nothing
def test_missing_crop_fails_and_changes_nothing(legacy: Path) -> None:
    (legacy / "ilastik_crops" / "synth_c_x172_y33_w50_h50.h5").unlink()
    before = _hashes(legacy)
    with pytest.raises(InputError, match="lane0002.*synth_c_x172_y33_w50_h50.h5.*not in the crop folder"):
        fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    assert _hashes(legacy) == before
    assert not (legacy / "pixel_classifier.ilp.bak").exists() and not (legacy / "ilastik_crops.bak").exists()


def test_existing_backup_fails_and_changes_nothing(legacy: Path) -> None:
    (legacy / "pixel_classifier.ilp.bak").write_bytes(b"old backup")
    before = _hashes(legacy)
    runner = CliRunner()
    result = runner.invoke(main, ["steinbock", "fix", "--ilp", str(legacy / "pixel_classifier.ilp"),
                                  "--crop", str(legacy / "ilastik_crops"),
                                  "--probabs", str(legacy / "ilastik_probabilities")])
    assert result.exit_code == 1 and "backup exists" in result.output
    assert _hashes(legacy) == before
    # --no-backup proceeds
    result = runner.invoke(main, ["steinbock", "fix", "--no-backup", "--ilp", str(legacy / "pixel_classifier.ilp"),
                                  "--crop", str(legacy / "ilastik_crops"),
                                  "--probabs", str(legacy / "ilastik_probabilities")])
    assert result.exit_code == 0, result.output
    assert (legacy / "pixel_classifier.ilp.bak").read_bytes() == b"old backup"


def test_inconsistent_axis_orders_fail(legacy: Path) -> None:
    crop = legacy / "ilastik_crops" / "synth_b_x112_y8_w50_h50.h5"
    with h5py.File(crop, "r") as f:
        data = f["synth_b_x112_y8_w50_h50"][()]
    with h5py.File(crop, "w") as f:
        ds = f.create_dataset("synth_b_x112_y8_w50_h50", data=np.transpose(data, (2, 0, 1)))
        ds.attrs["axistags"] = json.dumps({"axes": [{"key": k} for k in "cyx"]})
    before = _hashes(legacy)
    with pytest.raises(InputError, match="inconsistent axis orders"):
        fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    assert _hashes(legacy) == before


def test_crops_outside_project_folder(legacy: Path, tmp_path_factory) -> None:
    project_dir = tmp_path_factory.mktemp("project")
    shutil.copy(legacy / "pixel_classifier.ilp", project_dir / "pixel_classifier.ilp")
    with pytest.raises(InputError, match="not inside the project's folder"):
        fix(project_dir / "pixel_classifier.ilp", legacy / "ilastik_crops", project_dir / "ilastik_probabilities")


def test_crop_without_axis_information(legacy: Path) -> None:
    crop = legacy / "ilastik_crops" / "synth_a_x2_y102_w50_h50.h5"
    with h5py.File(crop, "a") as f:
        del f["synth_a_x2_y102_w50_h50"].attrs["axistags"]
    before = _hashes(legacy)
    with pytest.raises(InputError, match="no axistags.*--axisorder"):
        fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities")
    assert _hashes(legacy) == before
    result = fix(legacy / "pixel_classifier.ilp", legacy / "ilastik_crops", legacy / "ilastik_probabilities",
                 axis_order="yxc")
    assert len(result.fixed_crops) == 3


def test_fix_crop_array_finds_channel_axis() -> None:
    rng = np.random.default_rng(0)
    tzyxc = rng.integers(0, 100, (1, 1, 6, 7, 3)).astype(np.uint16)  # Fiji export, issue #120
    out = fix_crop_array(tzyxc, "tzyxc")
    assert out.dtype == np.float32 and out.shape == (3, 6, 7)
    np.testing.assert_array_equal(out, np.transpose(tzyxc[0, 0], (2, 0, 1)))
    # the declared c axis has size 1: steinbock looks for another non-spatial axis of size C
    swapped = np.transpose(tzyxc, (4, 1, 2, 3, 0))  # (3, 1, 6, 7, 1) labelled "tzyxc"
    np.testing.assert_array_equal(fix_crop_array(swapped, "tzyxc"), out)
