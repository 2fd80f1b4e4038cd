"""The import graph of pyquint, read from the source with ``ast``: no circles, no import that
goes up the documented layers (docs/architecture.md), own-module imports at the top of files.

Every ``import`` counts, also those inside functions: a function-local import is still a
dependency, it only hides it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyquint"

# Lowest first; a module may import from its own layer and the layers before it.
LAYERS: list[tuple[str, ...]] = [
    ("pyquint", "pyquint.errors", "pyquint._outputs", "pyquint.axes", "pyquint.io", "pyquint.zarrio",
     "pyquint.parallel", "pyquint.naming", "pyquint.batch", "pyquint.tiling", "pyquint.sequences", "pyquint.data",
     "pyquint.sample_sections"),
    ("pyquint.features",),
    ("pyquint.forest",),
    ("pyquint.pixel", "pyquint.pixel_sources", "pyquint.frames", "pyquint.export", "pyquint.pixel_batch"),
    ("pyquint.tiles", "pyquint.distributed", "pyquint._dask_frames"),
    ("pyquint.objects",),
    ("pyquint.lut",),
    ("pyquint.interactive", "pyquint.interactive_server"),
    ("pyquint.imagej", "pyquint.macros"),
    ("pyquint.ilastik", "pyquint.steinbock", "pyquint.workflows"),
    ("pyquint.cli", "pyquint.__main__"),
]

# Imports that stay inside a function on purpose: (importer, imported module, why).
LAZY_OK: frozenset[tuple[str, str]] = frozenset({
    # `lut apply --engine imagej` reports a missing ImageJ bridge as one line, never at import
    ("pyquint.cli.lut", "pyquint.imagej"),
})

# Modules not cleaned up yet (none at the moment): exempt from the checks below.
KNOWN_EXCEPTIONS: frozenset[str] = frozenset()


# Deprecated shims that forward to the one implementation higher up, until they are removed.
DEPRECATED_SHIMS: frozenset[tuple[str, str]] = frozenset({
    ("pyquint.features._selection", "pyquint.ilastik._selection"),  # FeatureSelection.from_ilp
})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, node: ast.AST) -> list[str]:
    """The pyquint modules an import statement loads (``from pkg import sub`` -> ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "pyquint"]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "pyquint":
        return []
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(target, line, at top of the file) for every import of a pyquint module."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    # ``if TYPE_CHECKING:`` blocks never run
    skipped = {id(n) for stmt in tree.body if isinstance(stmt, ast.If)
               and "TYPE_CHECKING" in ast.unparse(stmt.test) for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
            out.extend((t, node.lineno, id(node) in top) for t in _targets(module, node))
    return out


GRAPH = {m: [e for e in _imports(m) if (m, e[0]) not in DEPRECATED_SHIMS] for m in MODULES}


def _layer(module: str) -> int:
    best, index = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, index = len(name), i
    assert index is not None, f"{module} is in no layer of LAYERS; add it (and to docs/architecture.md)"
    return index


def _exempt(module: str) -> bool:
    return any(module == k or module.startswith(k + ".") for k in KNOWN_EXCEPTIONS)


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_import_goes_up_the_layers():
    upward = [f"{m}:{line} imports {t} (layer {_layer(t)} > {_layer(m)})"
              for m, edges in GRAPH.items() if not _exempt(m)
              for t, line, _ in edges if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_of(module: str) -> str | None:
    parent = module.rsplit(".", 1)[0]
    return parent if "." in module and MODULES.get(parent, Path()).name == "__init__.py" else None


def test_no_import_circles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, edges in GRAPH.items():
        for t, _, _ in edges:
            # a package's __init__ importing its submodules counts: a submodule that imports
            # its own package back closes a circle
            if t in MODULES and t != m:
                graph[m].add(t)
    circles = [c for c in _cycles(graph) if not all(_exempt(m) for m in c)]
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_own_module_imports_at_the_top():
    local = [f"{m}:{line} imports {t} inside a function" for m, edges in GRAPH.items()
             if not _exempt(m) for t, line, top in edges
             if not top and (m, t) not in LAZY_OK]
    assert not local, "\n".join(local)


def test_the_checks_see_a_violation():
    """The graph reader finds an upward, a local and a circular import in a made-up module."""
    source = "from ..cli import main\n\ndef f():\n    from . import features\n"
    tree = ast.parse(source)
    MODULES["pyquint.objects.probe"] = PACKAGE / "objects" / "probe.py"
    try:
        edges = [(t, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 for t in _targets("pyquint.objects.probe", n)]
    finally:
        del MODULES["pyquint.objects.probe"]
    assert ("pyquint.cli", 1) in edges and ("pyquint.objects.features", 4) in edges
    assert _layer("pyquint.cli") > _layer("pyquint.objects")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", ["pyquint.io", "pyquint.features", "pyquint.lut.glasbey"])
def test_graph_reads_real_imports(name):
    assert GRAPH[name], f"{name}: no pyquint import found; the reader is broken"
