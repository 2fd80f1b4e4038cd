"""The inputs of a QUINT run: section files, their label images, matching them by name."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..io import IMAGE_SUFFIXES, read_image, to_canonical
from ..lut import check_nutil_names, section_id
from ..naming import pair_by_name
from .config import QuintConfig

__all__ = ["SEGMENTATION_DIR", "check_section_names", "list_sections", "load_labels", "load_section",
           "match_by_name"]

SEGMENTATION_DIR = "segmentations"


def list_sections(config: QuintConfig) -> list[Path]:
    """The section files of a configuration (a folder or a glob), sorted."""
    spec = config.input.sections
    root = config.resolve(spec)
    if root is not None and root.is_dir():
        files = sorted(p for p in root.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"folder {root}"
    else:
        pattern = str(root) if root is not None else spec
        files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        where = f"pattern {pattern}"
        if not files and not any(ch in spec for ch in "*?["):
            raise InputError(f"input.sections: {pattern} is neither a folder nor a glob that matches files")
    if not files:
        raise InputError(f"input.sections: no section images in {where}")
    return files


def check_section_names(files: list[Path]) -> None:
    problems = check_nutil_names(files)
    if problems:
        raise InputError(
            "these section names break Nutil's/PyNutil's naming rules (one '_s<digits>' id, no '.' "
            "or spaces, unique section numbers); rename them before running:\n  " + "\n  ".join(problems)
        )


def match_by_name(sections: list[Path], folder: Path, what: str) -> dict[Path, Path]:
    """Map each section to the file of the same name (or same stem / section id) in ``folder``."""
    if not folder.is_dir():
        raise InputError(f"{what}: {folder} is not a folder")
    candidates = [p for p in sorted(folder.iterdir())
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES]
    if not candidates:
        raise InputError(f"{what}: no images in {folder}")
    found = pair_by_name(candidates, sections, names=_section_names, candidate_names=_section_names,
                         duplicates="first", what="section")
    unmatched = [c.name for c, s in zip(candidates, found) if s is None]
    if unmatched:
        raise InputError(f"{what}: these files match no section (by name or _sXXX id): {', '.join(unmatched)}")
    return {s: c for c, s in zip(candidates, found)}


def _section_names(path: Path) -> list[tuple[str, str]]:
    """A section file answers to its stem, then to its ``_sXXX`` id."""
    sid = section_id(path.name)
    return [("stem", path.stem)] + ([("id", str(sid))] if sid is not None else [])


def load_section(path: Path, config: QuintConfig) -> np.ndarray:
    data, axes = read_image(path, axes=config.input.axes)
    image, canonical = to_canonical(data, axes)
    if canonical != "yxc":
        raise InputError(f"{path}: QUINT sections must be 2-D images, got axes {canonical!r}")
    if config.input.resize is not None and config.input.resize != 1:
        image = _resize(image, config.input.resize, nearest=False)
    return image


def _resize(image: np.ndarray, factor: float, *, nearest: bool) -> np.ndarray:
    """Downscale ``yxc`` (or ``yx``) by ``factor``: area averaging for images, nearest for labels."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    src = image if image.dtype != np.bool_ else image.astype(np.uint8)
    channels = [cv2.resize(np.ascontiguousarray(src[..., c]), size, interpolation=interp)
                for c in range(src.shape[-1])] if src.ndim == 3 else [cv2.resize(src, size, interpolation=interp)]
    out = np.stack(channels, axis=-1) if src.ndim == 3 else channels[0]
    return out.astype(image.dtype, copy=False)


def load_labels(path: Path, shape: tuple[int, int], config: QuintConfig) -> np.ndarray:
    data, axes = read_image(path)
    labels, canonical = to_canonical(data, axes)
    if canonical != "yxc" or labels.shape[-1] != 1:
        raise InputError(f"{path}: a label image must be single-channel 2-D, got {canonical} {labels.shape}")
    labels = labels[..., 0]
    if labels.shape != shape and config.input.resize is not None:
        original = _resize(labels[..., None], config.input.resize, nearest=True)[..., 0]
        if original.shape == shape:
            labels = original
    if labels.shape != shape:
        raise InputError(f"{path}: label image shape {labels.shape} differs from its section's {shape}")
    return labels
