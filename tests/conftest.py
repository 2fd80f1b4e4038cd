"""Shared fixtures: the reference files in ../shared and the ImageJ requirement."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
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
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


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
