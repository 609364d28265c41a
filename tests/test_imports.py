"""The package's modules import each other in one direction: no import circles.

A circle hidden in a function-level import still ties two modules together (neither can
be understood, tested or moved without the other) and breaks the moment someone hoists
the import, so function-level imports count here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hyperdock

PACKAGE = Path(hyperdock.__file__).parent

#: Imports that close a circle someone is removing, with why they are tolerated until
#: then. Keep this empty: an entry here is a debt, not a design.
TOLERATED: set[tuple[str, str]] = set()


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its code (imports for
    type checkers only excluded: they never run)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from a import b`` imports the module a.b when there is one, else a.
                name = f"{base}.{alias.name}"
                found.add(name if name in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules and m != module}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = _module_names()
    graph = {m: _imports(p, m, modules) for m, p in modules.items()}
    for importer, imported in TOLERATED:
        graph.get(importer, set()).discard(imported)
    assert "hyperdock.space" in graph and "hyperdock.storage.base" in graph  # found them
    circles = _circles(graph)
    shown = [
        " ; ".join(f"{a} -> {', '.join(sorted(graph[a] & set(group)))}" for a in group)
        for group in circles
    ]
    assert not circles, "import circles: " + " | ".join(shown)
