"""Generated ImageJ macros (.ijm) for the Fiji script editor and headless ImageJ batch runs.

Two flavours of every macro:

``ij1``
    Plain ImageJ 1.x macro language (also runs in Fiji). Values are templated in as variables
    at the top and can be overridden by the ``-batch`` argument: ``key=value`` pairs separated
    by ``|`` (or the values in parameter order), read with ``getArgument()``.
``fiji``
    ImageJ2/Fiji script parameters (``#@ File (style="directory") inDir`` ...): Fiji shows a
    dialog in the script editor and accepts ``--headless --run script.ijm 'inDir="..."'``.
    ``#@`` lines are a syntax error in plain ImageJ 1.x; :func:`pyquint.imagej.run_macro`
    binds them from a dict when it runs such a script on plain ImageJ.

Example::

    from pyquint.macros import generate_macro
    text = generate_macro("glasbey-batch", "ij1", inDir="/data/seg", outDir="/data/nutil")
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..errors import InputError
from ..io import atomic_output
from ._render import FLAVOURS, MacroSpec, Param, check_value, render
from .library import SPECS
from .training import FIJI_TRAIN

__all__ = [
    "FLAVOURS",
    "MACROS",
    "MacroSpec",
    "Param",
    "generate_macro",
    "macro_filename",
    "macro_names",
    "regenerate_macros",
]

MACROS: dict[str, MacroSpec] = {spec.name: spec for spec in (*SPECS, FIJI_TRAIN)}


def macro_names() -> list[str]:
    """Names of the macros pyquint can generate."""
    return list(MACROS)


def _canonical(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _resolve_params(spec: MacroSpec, params: dict) -> dict:
    by_key = {_canonical(p.name): p for p in spec.params}
    values = {p.name: p.default for p in spec.params}
    for key, value in params.items():
        p = by_key.get(_canonical(key))
        if p is None:
            raise InputError(
                f"macro {spec.name!r} has no parameter {key!r}; "
                f"parameters: {', '.join(p.name for p in spec.params)}"
            )
        if value is None:
            continue
        values[p.name] = check_value(spec, p, value)
    for p in spec.params:
        values[p.name] = check_value(spec, p, values[p.name])
    return values


def generate_macro(name: str, flavour: str = "ij1", **params: object) -> str:
    """The text of a pyquint macro.

    Parameters
    ----------
    name : str
        One of :func:`macro_names` (``glasbey-batch``, ``lut-batch``, ``lut-inline-batch``,
        ``downscale-batch``, ``pyquint-classify``, ``roi-labels``, ``fiji-train``).
    flavour : {"ij1", "fiji"}
        Plain ImageJ 1.x (values templated in + ``getArgument()``) or Fiji ``#@`` parameters.
    **params
        Parameter values (``inDir="/data/seg"``; ``in_dir`` works too); the rest keep their
        defaults. See ``MACROS[name].params``.

    Returns
    -------
    str
        Macro text, ready to save as ``.ijm``.
    """
    spec = MACROS.get(name) or MACROS.get(name.replace("_", "-"))
    if spec is None:
        raise InputError(f"unknown macro {name!r}; choose one of {', '.join(MACROS)}")
    if flavour not in FLAVOURS:
        raise InputError(f"unknown flavour {flavour!r}; use ij1 (plain ImageJ 1.x) or fiji (#@ parameters)")
    values = _resolve_params(spec, params)
    changed = [p for p in spec.params if values[p.name] != p.default]
    cmd = f"pyquint macro {spec.name} --flavour {flavour}"
    for p in changed:
        option = "--" + "".join("-" + c.lower() if c.isupper() else c for c in p.name)
        cmd += f" {option} {shlex.quote(str(values[p.name]))}" if p.kind != "bool" else f" {option if values[p.name] else '--no-' + option[2:]}"
    return render(spec, flavour, values, spec.body(values), cmd)  # type: ignore[operator]


def macro_filename(name: str, flavour: str) -> str:
    """File name used in ``imagej_macros/``: ``<flavour>/<name with underscores>.ijm``."""
    return f"{flavour}/{name.replace('-', '_')}.ijm"


def regenerate_macros(out_dir: str | os.PathLike = "imagej_macros") -> list[Path]:
    """Write every macro in both flavours (default parameters) into ``out_dir``.

    Returns the files written (all of them, whether their content changed or not).
    """
    out = Path(out_dir)
    written = []
    for name in MACROS:
        for flavour in FLAVOURS:
            path = out / macro_filename(name, flavour)
            text = generate_macro(name, flavour)
            if not (path.is_file() and path.read_text(encoding="utf-8") == text):
                with atomic_output(path) as tmp:
                    tmp.write_text(text, encoding="utf-8", newline="\n")
            written.append(path)
    return written
