"""The package's shape: no import circles, one opening docstring per module, model code only in udfs/."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("forge", "udfs")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (function-level imports included:
    a deferred import hides a circle, it does not remove it). `from pkg import sub` imports `pkg.sub`."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in modules:
                        graph[name].add(target)
                    elif node.module in modules:
                        graph[name].add(node.module)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_circle_in_forge_or_udfs():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle_through_a_deferred_import():
    graph = import_graph()
    graph["forge.sources.paths"] = graph["forge.sources.paths"] | {"forge.sources.webdataset"}
    assert ["forge.sources.paths", "forge.sources.webdataset"] in circles(graph)


def test_every_module_opens_with_a_docstring_saying_its_job():
    missing = [name for name, path in _modules().items() if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))]
    assert missing == []


def test_sources_never_import_perception_and_udfs_hold_only_model_wrappers():
    graph = import_graph()
    assert not {(m, t) for m, targets in graph.items() if m.startswith("forge.sources") for t in targets
                if t.startswith(("forge.perception", "forge.judge", "udfs"))}
    assert sorted(m for m in _modules() if m.startswith("udfs.")) == ["udfs.depth", "udfs.grounding", "udfs.loading",
                                                                      "udfs.sam3", "udfs.segmentation"]
