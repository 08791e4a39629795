"""The package's layers: imports run downward only (README.md, "Architecture").

Every module's imports are read with ``ast`` (those inside functions too), resolved to the module they name, and
compared by floor: a module may import its own floor or a lower one, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import preimage

SRC = Path(preimage.__file__).resolve().parent

#: Floors from the ground up; the package's own ``__init__`` (the public API) sits on top of them all.
FLOORS: dict[str, int] = {
    "images": 0, "errors": 0, "result": 0,
    "representations": 1,
    "report": 2,
    "engine": 3,
    "measures": 4,
    "tasks": 5,
    "sweep": 6,
    "experiments": 7,
    "cli": 8,
}
API_FLOOR = 9


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int | None:
    """The floor of ``preimage.ROOM...``; None for modules outside the package."""
    parts = module.split(".")
    if parts[0] != "preimage":
        return None
    if len(parts) == 1:
        return API_FLOOR
    if parts[1] not in FLOORS:
        raise AssertionError(f"{module} is in no room of the layout: add it to the README's architecture and to FLOORS")
    return FLOORS[parts[1]]


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``source`` (relative ones resolved; ``from . import x`` gives
    ``package.x``, which may be a module or a name of the package: both sit on the package's floor or below)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of ``module`` that run upward, as readable lines."""
    own = floor_of(module)
    bad = []
    for line, target in imported_modules(source, module, is_package):
        floor = floor_of(target)
        if floor is not None and own is not None and floor > own and target != "preimage":
            bad.append(f"{module}:{line} imports {target} (floor {floor} > {own})")
        elif target == "preimage" and own != API_FLOOR:
            bad.append(f"{module}:{line} imports the package's API (import the module itself)")
    return bad


def test_every_module_imports_only_downward() -> None:
    bad = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        bad += upward_imports(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, "imports that run upward:\n" + "\n".join(bad)


def test_every_module_sits_in_a_room() -> None:
    for path in SRC.rglob("*.py"):
        floor_of(module_name(path))  # raises for a module outside the rooms


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("preimage.engine.optimize", "from ..tasks.inversion import invert\n", "preimage.tasks.inversion"),
    ("preimage.representations.base", "def f():\n    from ..engine import runtime\n", "preimage.engine "),
    ("preimage.measures.metrics", "import preimage.cli\n", "preimage.cli"),
    ("preimage.tasks.inversion", "from .. import experiments\n", "preimage.experiments"),
    ("preimage.images", "from .report import save_grid\n", "preimage.report"),
])
def test_the_check_catches_upward_imports(module: str, source: str, expected: str) -> None:
    bad = upward_imports(source, module)
    assert len(bad) == 1 and expected in bad[0]


def test_the_check_allows_downward_and_level_imports() -> None:
    src = ("from ..engine.optimize import optimize\nfrom ..representations import load\nfrom ..errors import "
           "PreimageError\nfrom .activation import maximize\nimport torch\n")
    assert upward_imports(src, "preimage.tasks.inversion") == []
    assert upward_imports("from ...tasks.inversion import invert\n", "preimage.experiments.reproduce.figures") == []
    assert upward_imports("from . import x\n", "preimage.cli", is_package=True) == []


def _module_graph() -> dict[str, set[str]]:
    """Every module of the package → the package's modules it imports (those inside functions too)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for _, target in imported_modules(path.read_text(), name, path.name == "__init__.py"):
            # ``from pkg import name`` names a module or something the package defines: keep what is a module.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_two_modules_import_each_other() -> None:
    # A package's __init__ re-exports its modules (it imports them, they never import it back): not a cycle.
    graph = {m: {d for d in deps if not (m.startswith(d + ".") or d == m.rpartition(".")[0])}
             for m, deps in _module_graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
