"""ilastik version strings ("1.4.0b11", "1.3.3post1", "1.2.0rc10") and the workflows pyquint knows."""

from __future__ import annotations

import re

from ..errors import InputError

__all__ = [
    "OBJECT_WORKFLOWS",
    "PIXEL_WORKFLOWS",
    "check_version",
    "parse_version",
    "workflow_kind",
]

# Pre-releases sort before the release, post-releases after it (PEP 440 order).
_STAGES = {"dev": -4, "a": -3, "b": -2, "rc": -1, "": 0, "post": 1}
_VERSION_RE = re.compile(
    r"^\s*(\d+)\.(\d+)(?:\.(\d+))?\.?(dev|a|b|rc|post|)(\d*)(?:[.+-].*)?\s*$", re.IGNORECASE
)

# workflowName as ilastik saves it (display name) and the class names it also accepts.
PIXEL_WORKFLOWS = frozenset({"Pixel Classification", "PixelClassificationWorkflow"})
OBJECT_WORKFLOWS = frozenset({
    "Object Classification (from pixel classification)",
    "Object Classification (from prediction image)",
    "Object Classification (from binary image)",
    "ObjectClassificationWorkflowPixel",
    "ObjectClassificationWorkflowPrediction",
    "ObjectClassificationWorkflowBinary",
})


def parse_version(text: str) -> tuple[int, int, int, int, int]:
    """A sortable tuple ``(major, minor, patch, stage, n)`` for an ilastik version string.

    ``stage`` is -4 dev, -3 alpha, -2 beta, -1 rc, 0 release, 1 post, so
    ``parse_version("1.3.3post2") > parse_version("1.3.3") > parse_version("1.3.3rc1")``.
    """
    m = _VERSION_RE.match(text)
    if m is None:
        raise InputError(f"unreadable ilastik version {text!r}")
    major, minor, patch, stage, n = m.groups()
    return (int(major), int(minor), int(patch or 0), _STAGES[stage.lower()], int(n or 0))


def check_version(text: str, source: object) -> tuple[int, int, int, int, int]:
    """Parse ``text`` and refuse versions outside ilastik 1.0–1.5 (the layouts pyquint knows)."""
    try:
        version = parse_version(text)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    if not (1, 0) <= version[:2] <= (1, 5):
        raise InputError(
            f"{source}: ilastik version {text!r} is not supported; pyquint reads projects of "
            "ilastik 1.0 to 1.5"
        )
    return version


def workflow_kind(name: str, source: object) -> str:
    """``"pixel"`` or ``"object"`` for a saved ``workflowName``; other workflows are refused."""
    if name in PIXEL_WORKFLOWS:
        return "pixel"
    if name in OBJECT_WORKFLOWS:
        return "object"
    known = sorted(PIXEL_WORKFLOWS | OBJECT_WORKFLOWS)
    raise InputError(
        f"{source}: unknown or unsupported ilastik workflow {name!r}; pyquint reads "
        f"{', '.join(repr(k) for k in known[:4])} and the other Object Classification variants"
    )
