"""Import-graph checks for kadapt: no import cycles, and ``kadapt.core`` stays the bottom layer.

The graph is built statically with ``ast``; kadapt itself is never imported. Nodes are kadapt modules by
dotted name (a package's ``__init__.py`` is the package, e.g. ``kadapt.plugins.jaket``). Every explicit
import is an edge, wherever it sits: module top level, inside functions, methods and classes, and inside
``if TYPE_CHECKING:`` blocks too (a type-only cycle still couples the modules). Forms handled:
``import a.b.c``; ``from a.b import c`` (edge to ``a.b.c`` when that is a kadapt module, else to ``a.b``);
relative imports, resolved against the file's package; and ``importlib.import_module("kadapt.x")`` (or a
bare ``import_module``) with a literal string argument; a computed argument is not followed. Importing
``a.b.c`` also runs ``a.b``'s ``__init__``, but no implicit edge to parent packages is added: an edge to
``kadapt.plugins.jaket.plugin`` is not an edge to ``kadapt.plugins.jaket``.

Run as a script (``python tests/test_import_graph.py``) for a report; it exits non-zero on any finding.
"""
from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "kadapt"
CORE = "kadapt.core"

Graph = dict[str, dict[str, str]]  # {module: {imported module: "file:line" of its first import}}


def is_import_module_call(node: ast.AST) -> bool:
    """True for ``importlib.import_module("...")`` / ``import_module("...")`` with a literal string."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func, arg = node.func, node.args[0]
    name = ast.unparse(func) if isinstance(func, (ast.Attribute, ast.Name)) else ""
    return name in ("importlib.import_module", "import_module") and isinstance(arg, ast.Constant) \
        and isinstance(arg.value, str)


def from_base(node: ast.ImportFrom, package: str) -> str:
    """The absolute module named by ``from <base> import ...``, resolving relative levels."""
    if node.level == 0:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0]  # level 1 is the package itself, 2 its parent, ...
    return f"{base}.{node.module}" if node.module else base


def import_targets(tree: ast.AST, package: str) -> list[tuple[list[str], int]]:
    """(candidate targets, line) for every import in ``tree``, by line; the first known candidate wins."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [([alias.name], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = from_base(node, package)
            found += [([f"{base}.{alias.name}", base], node.lineno) for alias in node.names]
        elif is_import_module_call(node):
            found.append(([node.args[0].value], node.lineno))
    return sorted(found, key=lambda item: item[1])


def graph_from_sources(sources: dict[str, str]) -> Graph:
    """Graph from ``{module: source}``, edges only between those modules; file labels come from the keys.

    A key ending in ``.__init__`` is that package's ``__init__.py`` (``"pkg.__init__"`` is module ``pkg``).
    """
    modules = {key.removesuffix(".__init__"): key for key in sources}
    graph: Graph = {name: {} for name in modules}
    for name, key in modules.items():
        label = key.replace(".", "/") + ".py"
        package = name if key.endswith(".__init__") else name.rpartition(".")[0]
        for candidates, line in import_targets(ast.parse(sources[key], label), package):
            target = next((c for c in candidates if c in graph), None)
            if target is not None:
                graph[name].setdefault(target, f"{label}:{line}")
    return graph


def kadapt_graph(root: Path = PACKAGE_DIR) -> Graph:
    """The import graph of every ``*.py`` under ``root`` (the kadapt package directory)."""
    files = sorted(root.rglob("*.py"))
    return graph_from_sources({".".join(path.relative_to(root.parent).with_suffix("").parts):
                               path.read_text(encoding="utf-8") for path in files})


def strongly_connected_components(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); every component, members sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack, on_stack, work, components = [], set(), [], []

    def open_node(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(sorted(graph[node]))))

    for start in sorted(graph):
        if start in index:
            continue
        open_node(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    open_node(child)
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while not component or component[-1] != node:
                    component.append(stack.pop())
                    on_stack.discard(component[-1])
                components.append(sorted(component))
    return components


def shortest_cycle(graph: Graph, start: str, members: set[str]) -> list[str]:
    """Shortest ``start -> ... -> start`` path that stays inside ``members`` (breadth-first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    return []


def import_cycles(graph: Graph) -> list[list[str]]:
    """Cycles covering every module of each cyclic component (more than one module, or a self-loop)."""
    cycles = []
    for component in strongly_connected_components(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        covered: set[str] = set()
        for module in component:
            if module not in covered:
                cycles.append(shortest_cycle(graph, module, set(component)))
                covered.update(cycles[-1])
    return cycles


def describe_cycles(graph: Graph, cycles: list[list[str]]) -> str:
    """Each cycle as ``a -> b -> a`` (with its component's size), then each edge's import file:line."""
    size = {m: len(c) for c in strongly_connected_components(graph) for m in c}
    lines = []
    for number, cycle in enumerate(cycles, 1):
        lines.append(f"cycle {number} (component of {size[cycle[0]]} modules): " + " -> ".join(cycle))
        lines += [f"    {a} -> {b}  ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return "\n".join(lines)


def in_core(module: str) -> bool:
    """True for ``kadapt.core`` and any module under it."""
    return module == CORE or module.startswith(CORE + ".")


def core_violations(graph: Graph) -> list[str]:
    """Edges from a ``kadapt.core`` module to a kadapt module outside ``kadapt.core``."""
    return [f"{source} -> {target}  ({where})" for source in sorted(graph) if in_core(source)
            for target, where in sorted(graph[source].items()) if not in_core(target)]


def test_no_import_cycles():
    graph = kadapt_graph()
    cycles = import_cycles(graph)
    assert not cycles, f"{len(cycles)} import cycle(s) in kadapt:\n{describe_cycles(graph, cycles)}"


def test_core_imports_only_core():
    violations = core_violations(kadapt_graph())
    assert not violations, "kadapt.core imports outside kadapt.core:\n" + "\n".join(violations)


def test_checker_finds_function_level_cycle():
    graph = graph_from_sources({
        "pkg.__init__": "",
        "pkg.a": "def f():\n    from pkg import b\n",
        "pkg.b": "from .c import helper\n",
        "pkg.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
    })
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert "    pkg.c -> pkg.a  (pkg/c.py:3)" in describe_cycles(graph, import_cycles(graph))
    assert import_cycles(graph_from_sources({"pkg.__init__": "from . import VERSION\n"})) == [["pkg", "pkg"]]


def test_checker_passes_acyclic_graph_without_parent_edges():
    graph = graph_from_sources({  # an implicit child -> parent edge would make pkg <-> pkg.sub.a cyclic
        "pkg.__init__": "from pkg.sub import a\n",
        "pkg.sub.__init__": "",
        "pkg.sub.a": "class A:\n    def m(self):\n        import importlib\n"
                     "        importlib.import_module('pkg.sub.b')\n",
        "pkg.sub.b": "from ..sub import __name__ as _\n",
    })
    assert graph["pkg.sub.a"] == {"pkg.sub.b": "pkg/sub/a.py:4"}
    assert graph["pkg.sub.b"] == {"pkg.sub": "pkg/sub/b.py:1"}
    assert import_cycles(graph) == []
    assert core_violations(graph_from_sources({"kadapt.core.m": "import kadapt.x", "kadapt.x": ""})) == [
        "kadapt.core.m -> kadapt.x  (kadapt/core/m.py:1)"]


def main() -> int:
    """Print the graph size, its cycles and the core-layering violations; 1 if there are any."""
    graph = kadapt_graph()
    cycles, violations = import_cycles(graph), core_violations(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} edges")
    print(f"{len(cycles)} import cycle(s):\n{describe_cycles(graph, cycles)}" if cycles else "no cycles")
    print(f"{len(violations)} core-layering violation(s):\n" + "\n".join(violations) if violations
          else "no core-layering violations")
    return 1 if cycles or violations else 0


if __name__ == "__main__":
    sys.exit(main())
