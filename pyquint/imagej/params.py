"""Script parameters (``#@``) and macro arguments.

Fiji's ``#@ Type (attrs) name`` lines are a syntax error in plain ImageJ 1.x, and ``-batch``
passes exactly one argument string. :func:`bind_script_parameters` turns a Fiji-flavour macro
into plain IJ1 by replacing each ``#@`` line with an assignment; :func:`pack_args` builds the
single ``-batch`` argument (``key=value`` pairs joined by ``|``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InputError

__all__ = [
    "FIJI_GUARD_MARK",
    "ScriptParameter",
    "bind_script_parameters",
    "has_script_parameters",
    "ijm_string",
    "pack_args",
    "parse_script_parameters",
]

_PARAM_RE = re.compile(r"^\s*#@\s*(?P<output>output\s+)?(?P<type>\w+)\s*(?P<attrs>\(.*\))?\s*(?P<name>\w+)\s*$")
_ATTR_RE = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|\{[^}]*\}|[^,)]+)')
_TEXT_TYPES = {"string", "file", "directory", "colorrgb", "char", "character"}
_NUMBER_TYPES = {"int", "integer", "long", "short", "byte", "float", "double", "number", "bigdecimal", "biginteger"}
_BOOL_TYPES = {"boolean", "bool"}
# Ends the guard line of pyquint's Fiji-flavour macros (pyquint.macros._render).
FIJI_GUARD_MARK = "// pyquint: Fiji-flavour guard"


@dataclass(frozen=True)
class ScriptParameter:
    """One ``#@`` line: its type, variable name, attributes (``label``, ``value``, ...)."""

    line_no: int
    type: str
    name: str
    attrs: dict
    output: bool = False


def ijm_string(text: str) -> str:
    """``text`` as an ImageJ macro string literal (double quotes, backslash escapes)."""
    escaped = (
        str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def has_script_parameters(text: str) -> bool:
    """True when the macro declares Fiji ``#@`` script parameters."""
    return any(_PARAM_RE.match(line) for line in text.splitlines())


def parse_script_parameters(text: str) -> list[ScriptParameter]:
    """The ``#@`` parameter declarations of a script, in order."""
    params = []
    for i, line in enumerate(text.splitlines()):
        m = _PARAM_RE.match(line)
        if not m:
            continue
        attrs = {}
        for key, value in _ATTR_RE.findall((m["attrs"] or "")[1:-1]):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            attrs[key.lower()] = value
        params.append(ScriptParameter(i, m["type"], m["name"], attrs, bool(m["output"])))
    return params


def _literal(param: ScriptParameter, value: object) -> str:
    kind = param.type.lower()
    if kind in _BOOL_TYPES:
        if isinstance(value, str):
            if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"script parameter {param.name!r}: {value!r} is not a boolean")
            value = value.strip().lower() in ("true", "1", "yes")
        return "true" if value else "false"
    if kind in _NUMBER_TYPES:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise InputError(f"script parameter {param.name!r}: {value!r} is not a number") from exc
        return repr(int(number)) if number == int(number) else repr(number)
    return ijm_string(str(value))


def bind_script_parameters(text: str, values: Mapping[str, object] | None = None) -> str:
    """Replace the ``#@`` lines of a Fiji script by IJ1 assignments (``name = value;``).

    Values come from ``values``, else the parameter's ``value=`` attribute, else ``""`` for
    ``required=false``; a required parameter without a value is an :class:`InputError`.
    ``#@output`` lines are dropped; service parameters (``#@ ImageJ ij``) are refused since
    plain ImageJ 1.x has no such services. The guard line of pyquint's Fiji-flavour macros
    (which stops plain ImageJ before the first ``#@`` line) is dropped too: once bound, the
    macro is plain IJ1.
    """
    values = dict(values or {})
    lines = text.splitlines()
    params = parse_script_parameters(text)
    known = {p.name for p in params}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(
            f"unknown script parameter(s) {', '.join(unknown)}; the script declares "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    for p in params:
        kind = p.type.lower()
        if p.output:
            lines[p.line_no] = f"// (output {p.name})"
            continue
        if kind not in _TEXT_TYPES | _NUMBER_TYPES | _BOOL_TYPES:
            raise InputError(
                f"script parameter '#@ {p.type} {p.name}' needs ImageJ2/Fiji; plain ImageJ 1.x cannot bind it"
            )
        if p.name in values:
            value = values[p.name]
        elif "value" in p.attrs:
            value = p.attrs["value"]
        elif p.attrs.get("required", "true").strip().lower() == "false":
            value = "" if kind not in _NUMBER_TYPES | _BOOL_TYPES else 0
        else:
            raise InputError(f"script parameter {p.name!r} ({p.type}) needs a value")
        lines[p.line_no] = f"{p.name} = {_literal(p, value)};"
    lines = ["// (pyquint: parameters bound for plain ImageJ)" if line.endswith(FIJI_GUARD_MARK) else line
             for line in lines]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def pack_args(args: str | Sequence[object] | Mapping[str, object] | None) -> str:
    """The single ``-batch`` argument: a string as is, a sequence joined with ``|``, a
    mapping as ``key=value|key=value``. Items containing ``|`` are refused."""
    if args is None:
        return ""
    if isinstance(args, str):
        return args
    if isinstance(args, Mapping):
        items = [f"{k}={_arg_value(v)}" for k, v in args.items()]
    else:
        items = [_arg_value(v) for v in args]
    for item in items:
        if "|" in item:
            raise InputError(f"macro argument {item!r} contains '|', the argument separator")
    return "|".join(items)


def _arg_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fiji_args(args: Mapping[str, object]) -> str:
    """Fiji ``--run`` parameter string: ``key="value",key2=3``."""
    parts = []
    for key, value in args.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={ijm_string(str(value))}")
    return ",".join(parts)
