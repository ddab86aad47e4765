"""`rotator check`'s table: rich, like `status`; one line per check when piped."""

from __future__ import annotations

import os
import re
import sys

import pytest

from rotator.cli import admin
from rotator.preflight import CheckResult

LONG = "cannot tell which of " + ", ".join(f"{n:032x}" for n in range(6)) + " AWSCURRENT holds"
RESULTS = [
    CheckResult("(database)", True, "schema current (0001)"),
    CheckResult("analytics", False, LONG),
]


def test_piped_each_check_is_one_line_however_long(capsys: pytest.CaptureFixture[str]) -> None:
    admin._check_table(RESULTS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["check", "verdict", "detail"]
    assert [line.split(None, 2) for line in lines[1:]] == [
        ["(database)", "ok", "schema current (0001)"],
        ["analytics", "FAIL", LONG],
    ]
    assert "\x1b[" not in "".join(lines) and all(line == line.rstrip() for line in lines)


def test_on_a_terminal_details_fold_to_its_width_and_fail_is_red(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(admin.shutil, "get_terminal_size", lambda: os.terminal_size((60, 24)))
    admin._check_table(RESULTS)
    out = capsys.readouterr().out
    assert "\x1b[1;31mFAIL" in out  # bold red
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines()
    assert max(len(line) for line in plain) <= 60 and len(plain) > 3  # folded, not cut
    assert "".join(plain).replace(" ", "").endswith(LONG.replace(" ", ""))
