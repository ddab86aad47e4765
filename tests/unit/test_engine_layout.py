"""The engine reads top-down: its modules import each other in one direction only, and
none imports an adapter, not even for type checking (import-linter checks the rest)."""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import rotator.engine

ENGINE = Path(rotator.engine.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: Collection[str] = ()) -> set[str]:
    """Every module `path` imports, TYPE_CHECKING blocks and function bodies included
    (`from package import module` imports the module, as far as `modules` knows it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ENGINE.rglob("*.py")}
    names = set(files)
    return {name: (_imports(path, names) & names) - {name} for name, path in files.items()}


def test_the_engine_modules_import_each_other_in_one_direction_only() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import cycle: " + " -> ".join((*path, name))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_the_engine_imports_no_adapter_even_for_type_checking() -> None:
    for path in ENGINE.rglob("*.py"):
        adapters = {m for m in _imports(path) if m.startswith(("rotator.adapters", "rotator.app"))}
        assert not adapters, f"{path.name} imports {sorted(adapters)}"
