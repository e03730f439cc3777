"""The shape of the code, checked where a machine reads it (docs/architecture.md).

`lint-imports` (run by the test command) holds the layer and forbidden-import contracts in
pyproject.toml. What a contract cannot say is here: no import cycle between any two of the
project's modules, counting the imports under `TYPE_CHECKING` and inside functions (a cycle
hidden there still means neither side can be read or changed alone); no module past a
reader's span; and only the public API at the top of `arcp_grpc`.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

import grimp

import arcp_grpc

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 600
GENERATED = "arcp_grpc.v1"

# The top of the package is the public API and nothing else: the agent author's modules, the
# embedding entry point, and the few types backends and plug-ins import (STYLE.md).
PUBLIC_TOP = {
    "agents",
    "auth",
    "config",
    "context",
    "credentials",
    "demo_agents",
    "errors",
    "grpc_status",
    "server",
}
LAYERS = {
    "base",
    "cli",
    "client",
    "lease",
    "process",
    "runtime",
    "service",
    "store",
    "tracing",
    "v1",
    "worker",
}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("arcp_grpc", "gateway", exclude_type_checking_imports=False)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(m for m in graph.modules if not m.startswith(GENERATED))
    edges = {
        m: sorted(n for n in graph.find_modules_directly_imported_by(m) if n in set(modules))
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if child < len(edges[node]):
                work.append((node, child + 1))
                nxt = edges[node][child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_no_import_cycle_among_the_projects_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "b", "c", "d"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert _cycles(graph) == [["a", "b", "c"]]


def _sources() -> list[Path]:
    roots = ["arcp_grpc", "gateway", "tests", "bench", "scripts", "examples"]
    return [
        path
        for root in roots
        for path in sorted((REPO / root).rglob("*.py"))
        if "v1" not in path.relative_to(REPO).parts and "node_modules" not in path.parts
    ]


def test_no_module_past_a_readers_span() -> None:
    long = {
        str(path.relative_to(REPO)): lines
        for path in _sources()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_only_the_public_api_and_the_layers_sit_at_the_top() -> None:
    top = {info.name for info in pkgutil.iter_modules(arcp_grpc.__path__)}
    assert top == PUBLIC_TOP | LAYERS
