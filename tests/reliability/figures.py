"""Figures the reliability suite gathers while it runs, printed at the end of the session.

Each test adds to `FIGURES` (counts) and `MATRIX` (the crash matrix's verdicts); the
conftest prints them with the terminal reporter, so every CI log carries the numbers
that docs/reliability.md quotes. Under pytest-xdist each worker gathers its own and the
conftest merges them in the controller (each worker hands them over as its
`workeroutput`).
"""

from __future__ import annotations

import json
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
    if text:
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


def cell_json(cell: MatrixCell) -> str:
    return json.dumps(
        {
            "point": cell.point,
            "scenario": cell.scenario,
            "db": cell.db,
            "ok": cell.ok,
            "seconds": round(cell.seconds, 2),
            "problems": cell.problems[:5],
        }
    )


def export() -> str:
    with _lock:
        cells = [json.loads(cell_json(c)) for c in MATRIX.values()]
        return json.dumps({"figures": dict(FIGURES), "notes": dict(NOTES), "cells": cells})


def merge(text: str) -> None:
    data = json.loads(text)
    for cell in data.get("cells", []):
        record(MatrixCell(**cell))
    with _lock:
        FIGURES.update(data.get("figures", {}))
        for name, value in data.get("notes", {}).items():
            if value and value != NOTES.get(name):
                NOTES[name] = f"{NOTES[name]}; {value}" if NOTES.get(name) else value


def summary_lines() -> list[str]:
    lines: list[str] = []
    table = matrix_table()
    if table:
        lines.append("crash matrix (SIGKILL at each point, then restart):")
        lines.extend("  " + line for line in table)
        lines.append(f"crash points killed (SIGKILL, then restart): {len(MATRIX)}")
    lines.extend(f"{name}: {value}" for name, value in sorted(FIGURES.items()))
    lines.extend(f"{name}: {text}" for name, text in sorted(NOTES.items()))
    return lines
