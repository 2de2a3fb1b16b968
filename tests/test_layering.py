"""Imports flow one way: core <- specs <- workload <- perf <- engine <- cluster <- metrics
<- planner/report <- api <- cli (see docs: DESIGN.md, STYLE.md). A lower layer never imports a
higher one, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "servesim"

LAYER_OF = {
    "core": 0,
    # the compiled build's two guards import nothing of servesim: the package root loads _pure,
    # the compiled scheduler bases take their decorator from _mypyc
    "_mypyc": 0,
    "_pure": 0,
    "specs": 1,
    "workload": 2,
    "perf": 3,
    "engine": 4,
    "cluster": 5,
    "metrics": 6,
    "planner": 7,
    "report": 7,
    "config": 8,
    "api": 8,
    "result": 8,
    "validate": 8,
    "lab": 8,
    "cli": 9,
}


FACADE_LAYER = max(LAYER_OF.values()) + 1


def _layer(module_parts: list[str]) -> int | None:
    """Layer of ``servesim.<parts>``; the package root (``servesim/__init__``) is layer 0."""
    if not module_parts or module_parts[0] == "__init__":
        return 0
    return LAYER_OF.get(module_parts[0])


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _imported_servesim_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("servesim")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("servesim")
        ):
            found.append((node.lineno, str(node.module)))
    return found


def test_every_top_level_package_has_a_layer() -> None:
    for entry in SRC.iterdir():
        name = entry.stem
        if name.startswith("__") or entry.suffix not in ("", ".py") or name == "py":
            continue
        if entry.is_dir() and not (entry / "__init__.py").exists():
            continue
        assert name in LAYER_OF, f"servesim.{name} has no layer in LAYER_OF; add it"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    # The package root is the public facade (servesim.simulate, ...): it sits above everything
    # and may re-export the API, while others import from it only ``__version__`` (layer 0).
    own = FACADE_LAYER if parts == ["__init__"] else _layer(parts)
    assert own is not None, f"{path} is outside every layer"
    for lineno, module in _imported_servesim_modules(path):
        target = _layer(module.split(".")[1:])
        assert target is not None, f"{path}:{lineno} imports unknown servesim module {module}"
        assert target <= own, (
            f"{path.relative_to(SRC)}:{lineno} imports {module} (layer {target}) "
            f"from layer {own}: imports must flow downward only"
        )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["servesim", *parts])


def _top_level_imports(path: Path) -> set[str]:
    """servesim modules ``path`` imports when it is imported: module-level statements only
    (imports inside functions run later; ``if TYPE_CHECKING:`` blocks never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = {_module_name(p) for p in _modules()}
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in known else node.module)

    visit(tree.body)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    graph = {_module_name(p): _top_level_imports(p) for p in _modules()}
    # a package's own __init__ re-exporting its submodules is not a cycle of theirs
    for name, targets in graph.items():
        targets.discard(name)
    assert _cycles(graph) == [], "import cycles (module-level imports)"


# The engine's parts are handed narrow pieces by their owner (engine/links.py), never the
# owner itself: none of them may import the replica or the simulation, not even for types.
_ENGINE_PARTS = (
    "vengine",
    "handoff",
    "state",
    "view",
    "features",
    "timeline",
    "links",
    "preemption",
    "skip",
    "group",
    "batch",
    "sequence",
    "state_kv",
    "outbox",
    "replica_features",
)
_ENGINE_OWNERS = {"servesim.engine.replica", "servesim.engine.simulation"}


@pytest.mark.parametrize("part", _ENGINE_PARTS)
def test_engine_parts_never_import_their_owners(part: str) -> None:
    path = SRC / "engine" / f"{part}.py"
    imported = {module for _, module in _imported_servesim_modules(path)}
    assert not imported & _ENGINE_OWNERS, f"engine/{part}.py imports {imported & _ENGINE_OWNERS}"
