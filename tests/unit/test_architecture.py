"""The house keeps its shape: no import circle inside `rotator/`, and no room too big.

import-linter (pyproject.toml, run by tests/test_code_quality.py and by .ci/run) holds the
layer contracts; it does not look for cycles between sibling modules, so this does, from
the source alone (`ast`): every import counts, inside functions and under TYPE_CHECKING
too, because a circle that is broken only at run time is still a circle to the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rotator"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 60
SIZE_REASON = "# size:"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `name` imports (a `from X import y` names X.y if y is a module)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {module for module in found if module in known and module != name}


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    """Control: the check can fail."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_imports_of_every_kind() -> None:
    """Control: lazy, TYPE_CHECKING and `from package import module` imports are edges."""
    graph = _import_graph()
    assert len(graph) > 50
    assert "rotator.domain.model" in graph["rotator.engine.driver"]
    assert any(deps for deps in graph.values())


def test_no_import_circle_inside_rotator() -> None:
    circle = _cycle(_import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def _has_reason(lines: list[str], first: int, last: int) -> bool:
    """A `# size:` comment in lines[first:last] (0-based, end exclusive)."""
    return any(line.strip().startswith(SIZE_REASON) for line in lines[max(first, 0) : last])


def _too_big(node: ast.AST, lines: list[str]) -> str | None:
    """What is too big about a class or function, unless a `# size:` line above says why."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        limit, kind = MAX_FUNCTION_LINES, "function"
    elif isinstance(node, ast.ClassDef):
        limit, kind = MAX_CLASS_LINES, "class"
    else:
        return None
    size = (node.end_lineno or node.lineno) - node.lineno + 1
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
    if size <= limit or _has_reason(lines, top - 3, top):
        return None
    return f"{node.name}: {kind} of {size} lines"


def _oversized() -> list[str]:
    problems: list[str] = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if len(lines) > MAX_MODULE_LINES and not _has_reason(lines, 0, 40):
            problems.append(f"{name}: module of {len(lines)} lines")
        for node in ast.walk(ast.parse(text)):
            if problem := _too_big(node, lines):
                problems.append(f"{name}.{problem}")
    return problems


def test_no_room_is_too_big_without_a_reason() -> None:
    """Modules <= 600 lines, classes <= 400, functions <= 60, or a `# size:` line saying why
    (in the module's first 40 lines, or in the 3 lines above the definition)."""
    problems = _oversized()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("def f():\n" + "    x = 1\n" * 60, True),
        ("# size: a table, one row a line\ndef f():\n" + "    x = 1\n" * 60, False),
        ("def f():\n" + "    x = 1\n" * 59, False),
    ],
)
def test_the_size_rule_sees_a_long_function_and_its_reason(source: str, flagged: bool) -> None:
    """Control: the size check can fail, and a reason silences it."""
    node = ast.parse(source).body[0]
    assert (_too_big(node, source.splitlines()) is not None) is flagged
