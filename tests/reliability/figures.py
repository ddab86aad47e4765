"""Figures the reliability suite gathers while it runs, printed at the end of the session.

Each test adds to `FIGURES` (counts) and `MATRIX` (the crash matrix's verdicts); the
conftest prints them with the terminal reporter, so every CI log carries the numbers
that docs/reliability.md quotes.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

FIGURES: Counter[str] = Counter()
NOTES: dict[str, str] = {}
_lock = threading.Lock()


@dataclass
class MatrixCell:
    point: str
    scenario: str
    db: str
    ok: bool
    seconds: float
    problems: list[str] = field(default_factory=list)


MATRIX: dict[tuple[str, str, str], MatrixCell] = {}


def add(name: str, amount: int = 1) -> None:
    with _lock:
        FIGURES[name] += amount


def note(name: str, text: str) -> None:
    with _lock:
        NOTES[name] = text


def record(cell: MatrixCell) -> None:
    with _lock:
        MATRIX[(cell.point, cell.scenario, cell.db)] = cell


def matrix_table() -> list[str]:
    if not MATRIX:
        return []
    columns = sorted(
        {(c.scenario, c.db) for c in MATRIX.values()}, key=lambda k: (k[0] != "normal", k)
    )
    points: list[str] = []
    for cell in MATRIX.values():
        if cell.point not in points:
            points.append(cell.point)
    width = max(len(p) for p in points) + 2
    header = "point".ljust(width) + "".join(f"{s}/{d}".ljust(20) for s, d in columns)
    lines = [header, "-" * len(header)]
    for point in points:
        row = point.ljust(width)
        for scenario, db in columns:
            cell = MATRIX.get((point, scenario, db))
            text = "-" if cell is None else ("pass" if cell.ok else "FAIL")
            if cell is not None:
                text += f" {cell.seconds:4.1f}s"
            row += text.ljust(20)
        lines.append(row)
    passed = sum(1 for c in MATRIX.values() if c.ok)
    lines.append(
        f"{len(points)} points x {len(columns)} scenario/database columns = {len(MATRIX)} "
        f"crash runs: {passed} passed, {len(MATRIX) - passed} failed"
    )
    return lines
