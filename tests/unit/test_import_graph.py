"""The package's import graph has no cycle: every module of gateway/ can be read after the
modules it imports, and a layer never needs the one above it. Imports inside functions and
under TYPE_CHECKING count too: a cycle hidden in either is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "gateway"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (a name imported from a package counts
    as its submodule when there is one, else as the package)."""
    modules = {module_name(path, package.parent): path for path in package.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(resolve(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*parents, base] if base else parents)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    imported.add(full if full in modules else resolve(base))
        graph[name] = {m for m in imported if m is not None and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_gateway_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "gateway.handlers.login" in graph and "gateway.providers.base" in graph
    assert cycles(graph) == []


def test_handlers_import_no_other_handler_than_the_base() -> None:
    """A handler module is one room: what two handlers share lives below them (handlers/base.py
    or a module of its own), never in a third handler module."""
    graph = import_graph(PACKAGE)
    handlers = {name for name in graph if name.startswith("gateway.handlers.")}
    crossings = sorted((name, imported) for name in handlers for imported in graph[name]
                       if imported in handlers and imported != "gateway.handlers.base")
    assert crossings == []


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    package = tmp_path / "gateway"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from gateway.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from gateway import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from gateway.a import x\n")
    graph = import_graph(package)
    assert cycles(graph) == [["gateway.a", "gateway.sub.b"]]
    assert graph["gateway.c"] == {"gateway.a"}
