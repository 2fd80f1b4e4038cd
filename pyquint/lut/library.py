"""Finding LUTs by name, as ImageJ does, and pyquint's own LUT files.

Search order of :func:`find_lut`: an explicit path; a Fiji/ImageJ installation's ``luts/``
(``fiji_dir`` argument, else the ``FIJI_HOME`` or ``PYQUINT_FIJI`` environment variable);
pyquint's own files (``pyquint/lut/tables/``, package data: they are in the wheel). Names follow
ImageJ's menu rules: ``.lut`` stripped, spaces and underscores equivalent, case-insensitive
("glasbey on dark" finds ``glasbey_on_dark.lut``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .formats import LUT_SUFFIX, PYQUINT_LUT_DIR, Lut, read_lut
from .glasbey import GLASBEY_VARIANTS, glasbey_lut

__all__ = ["BUILTIN_LUTS", "PYQUINT_LUT_DIR", "builtin_lut", "find_lut", "fiji_lut_dirs", "load_lut"]

_ENV_VARS = ("FIJI_HOME", "PYQUINT_FIJI")


def _normalise(name: str) -> str:
    name = name.strip()
    if name.lower().endswith(LUT_SUFFIX):
        name = name[: -len(LUT_SUFFIX)]
    return name.replace(" ", "_").lower()


def _builtin_table(key: str) -> np.ndarray | None:
    """ImageJ's generated LUTs that are pure formulas (LutLoader.getBuiltInLut)."""
    ramp = np.arange(256, dtype=np.uint8)
    zero = np.zeros(256, np.uint8)
    primaries = {"red": 4, "green": 2, "blue": 1, "cyan": 3, "magenta": 5, "yellow": 6, "grays": 7}
    if key in primaries:
        bits = primaries[key]
        return np.stack([ramp if bits & m else zero for m in (4, 2, 1)], axis=1)
    if key == "3-3-2_rgb":
        return np.stack([ramp & 0xE0, (ramp << 3) & 0xE0, (ramp << 6) & 0xC0], axis=1).astype(np.uint8)
    if key in ("red/green", "redgreen"):
        i = np.arange(256)
        red = np.where(i < 128, (i * 2) & 255, 0)
        green = np.where(i < 128, 0, (i * 2) & 255)
        return np.stack([red, green, zero], axis=1).astype(np.uint8)
    return None


BUILTIN_LUTS = ("grays", "red", "green", "blue", "cyan", "magenta", "yellow", "3-3-2 RGB", "red/green")


def builtin_lut(name: str) -> Lut | None:
    """One of ImageJ's formula LUTs (``grays``, primaries, ``3-3-2 RGB``, ``red/green``), or None."""
    table = _builtin_table(_normalise(name))
    return None if table is None else Lut(name.strip(), table)


def fiji_lut_dirs(fiji_dir: str | os.PathLike | None = None) -> list[Path]:
    """``luts/`` folders of the Fiji/ImageJ given (or named by ``FIJI_HOME``/``PYQUINT_FIJI``).

    A folder that itself holds ``.lut`` files (a ``luts`` folder) is accepted as is.
    """
    roots = [Path(fiji_dir)] if fiji_dir is not None else [
        Path(os.environ[v]) for v in _ENV_VARS if os.environ.get(v)
    ]
    if fiji_dir is not None and not Path(fiji_dir).is_dir():
        raise InputError(f"{fiji_dir}: the Fiji/ImageJ folder does not exist")
    dirs = []
    for root in roots:
        if (root / "luts").is_dir():
            dirs.append(root / "luts")
        elif root.is_dir() and any(root.glob("*" + LUT_SUFFIX)):
            dirs.append(root)
        elif fiji_dir is not None:
            raise InputError(f"{root}: has no luts/ folder (is it a Fiji.app or ImageJ folder?)")
    return dirs


def _match_in(folder: Path, name: str) -> Path | None:
    # ImageJ's Executer.loadLut candidates first, then any case
    raw = name.strip()
    for candidate in (raw.replace(" ", "_"), raw, raw.lower().replace(" ", "_"), raw.capitalize()):
        file = folder / (candidate if candidate.lower().endswith(LUT_SUFFIX) else candidate + LUT_SUFFIX)
        if file.is_file():
            return file
    key = _normalise(raw)
    matches = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() == LUT_SUFFIX and _normalise(p.name) == key)
    return matches[0] if matches else None


def find_lut(name_or_path: str | os.PathLike, fiji_dir: str | os.PathLike | None = None) -> Path:
    """Locate a LUT file by path or by name.

    Parameters
    ----------
    name_or_path : str or path-like
        A ``.lut`` file path, or a name such as ``"glasbey"``, ``"glasbey on dark"``,
        ``"Glasbey_Inverted.lut"``.
    fiji_dir : str or path-like, optional
        Fiji.app (or ImageJ) folder whose ``luts/`` is searched first; default the
        ``FIJI_HOME`` or ``PYQUINT_FIJI`` environment variable.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        Nothing found; the message lists the folders searched.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    if os.sep in text or (os.altsep and os.altsep in text) or path.is_absolute():
        raise InputError(f"{text}: no such LUT file")
    searched = [*fiji_lut_dirs(fiji_dir), PYQUINT_LUT_DIR]
    for folder in searched:
        if folder.is_dir():
            found = _match_in(folder, text)
            if found is not None:
                return found
    where = ", ".join(str(d) for d in searched)
    raise InputError(f"LUT {text!r} not found (searched {where}); give a path to a .lut file")


def load_lut(name_or_path: str | os.PathLike, fiji_dir: str | os.PathLike | None = None) -> Lut:
    """Find (see :func:`find_lut`) and read a LUT.

    Besides files, ImageJ's formula LUTs (``grays``, ``red``, ..., ``3-3-2 RGB``) are
    known, and the three Glasbey variants are generated with pyquint's generator when no
    file is found (a few seconds; ``pyquint lut make-glasbey`` writes them once).
    """
    text = os.fspath(name_or_path)
    if not Path(text).is_file():
        builtin = builtin_lut(text)  # ImageJ checks its built-in LUTs before files
        if builtin is not None:
            return builtin
    try:
        return read_lut(find_lut(name_or_path, fiji_dir))
    except InputError:
        if _normalise(text) in GLASBEY_VARIANTS and os.sep not in text:
            return glasbey_lut(_normalise(text), cached=False)
        raise
