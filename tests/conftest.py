"""Shared fixtures: third-party reference files, LUT files pyquint writes itself, ImageJ.

Only tests whose subject is a third-party file (Fiji's LUTs, the real ilastik project,
steinbock's outputs) use ``reference_dir``: it is ``$PYQUINT_REFERENCE_DIR``, by default
``../shared/reference`` beside the checkout, and those tests skip (fail in CI) without it.
Everything else builds its own data, so a clone anywhere runs almost the whole suite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REFERENCE = Path(os.environ.get("PYQUINT_REFERENCE_DIR") or SHARED / "reference")
IN_CI = bool(os.environ.get("CI"))

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("PYQUINT_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout: specs and real reference files (never in the repo)."""
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED} is missing: CI must run with shared/ beside the clone")
        pytest.skip(f"reference files not available: {SHARED} does not exist")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Third-party reference files (``$PYQUINT_REFERENCE_DIR``, default ``../shared/reference``)."""
    if not REFERENCE.is_dir():
        if IN_CI:
            pytest.fail(f"{REFERENCE} is missing: CI must set PYQUINT_REFERENCE_DIR or have ../shared")
        pytest.skip(f"third-party reference files not available: {REFERENCE} does not exist "
                    "(set PYQUINT_REFERENCE_DIR)")
    return REFERENCE


@pytest.fixture(scope="session")
def lut_files(tmp_path_factory) -> Path:
    """A ``luts/``-like folder of pyquint's own Glasbey tables in the formats Fiji ships them.

    ``glasbey.lut`` and ``glasbey_on_dark.lut`` as text tables with a header, ``glasbey_inverted.lut``
    as the raw 768-byte form: for tests whose subject is pyquint (or ImageJ) reading and applying
    LUT files, not Fiji's particular tables.
    """
    from pyquint.lut import PYQUINT_LUT_DIR, read_lut, write_lut  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("luts")
    for stem, fmt in (("glasbey", "text"), ("glasbey_on_dark", "text"), ("glasbey_inverted", "binary")):
        write_lut(read_lut(PYQUINT_LUT_DIR / f"{stem}.lut"), folder / f"{stem}.lut", fmt)
    return folder


@pytest.fixture(scope="session")
def pc_ilp(reference_dir: Path) -> Path:
    return reference_dir / "ilastik" / "pc.ilp"


@pytest.fixture(scope="session")
def cells_png(reference_dir: Path) -> Path:
    return reference_dir / "ilastik" / "2d_cells_apoptotic_1channel.png"


def imagej_missing_reason() -> str | None:
    """Why a real ImageJ cannot be used here, or None when Java, ij.jar and Xvfb exist."""
    try:
        from pyquint.imagej import find_imagej  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - module under construction
        return f"pyquint.imagej cannot be imported: {exc}"
    if shutil.which("java") is None:
        return "no java on PATH (apt-get install default-jre-headless)"
    try:
        find_imagej()
    except Exception as exc:  # noqa: BLE001
        return f"no ImageJ found: {exc}"
    return None


@pytest.fixture(scope="session")
def require_imagej() -> None:
    reason = imagej_missing_reason()
    if reason is None:
        return
    if os.environ.get("PYQUINT_REQUIRE_IMAGEJ") == "1":
        pytest.fail(f"PYQUINT_REQUIRE_IMAGEJ=1 but ImageJ is unusable: {reason}")
    pytest.skip(f"ImageJ tests SKIPPED: {reason}")


@pytest.fixture(scope="session")
def made_ilp(tmp_path_factory) -> Path:
    """A Pixel Classification project written by pyquint (no stored forest): one 120 × 150 grey
    section inside, sparse labels of two classes, ilastik's full feature selection.

    For tests whose subject is how pyquint reads or rejects projects, not the real ``pc.ilp``.
    """
    from pyquint.data import make_section  # noqa: PLC0415
    from pyquint.features import FeatureSelection  # noqa: PLC0415
    from pyquint.ilastik.writer import write_project  # noqa: PLC0415

    section = make_section(5, (120, 150))
    path = tmp_path_factory.mktemp("made_ilp") / "made.ilp"
    write_project(path, [section.image], [section.labels], FeatureSelection.all(),
                  ["Background", "Stain"], axes="yx", nicknames=["made_s001"])
    return path


@pytest.fixture(scope="session")
def forested_ilp(tmp_path_factory) -> Path:
    """A pyquint-written project (240 × 300 grey section, sparse labels, ilastik's full feature
    selection) holding a 100-tree forest in vigra's stored layout, as a trained ilastik project.

    For tests of pyquint's handling of projects with a stored forest (batch exports, errors);
    the fidelity to a real ilastik forest is the subject of the ``pc_ilp`` tests.
    """
    from synth import write_forested_ilp  # noqa: PLC0415

    from pyquint.data import make_section  # noqa: PLC0415
    from pyquint.features import FeatureSelection  # noqa: PLC0415

    section = make_section(11, (240, 300))
    path = tmp_path_factory.mktemp("forested") / "forested.ilp"
    return write_forested_ilp(path, section.image, section.labels, FeatureSelection.all(),
                              label_names=["Background", "Stain"], axes="yx", nicknames=["forested_s001"])
