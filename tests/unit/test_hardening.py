"""What the process does to itself at start, and what it takes out of operator input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rotator.hardening import operator_text


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("\x1b[31mticket-4711\x1b[0m", "[31mticket-4711[0m"),  # ESC gone, nothing to replay
        ("alice\x07\x00\x7f\x9b", "alice"),  # BEL, NUL, DEL, C1 CSI
        ("line one\nline two\r\n\tend", "line one line two  end"),
        ("evil\u202egnp.exe", "evilgnp.exe"),  # a right-to-left override
        ("  padded  ", "padded"),
        ("", ""),
    ],
)
def test_control_characters_are_taken_out_of_operator_input(typed: str, stored: str) -> None:
    assert operator_text(typed, 128) == stored


def test_operator_input_is_cut_after_cleaning() -> None:
    assert operator_text("\x1b" * 200 + "x" * 10, 5) == "xxxxx"


def test_the_process_makes_private_files_dumps_no_core_and_is_not_dumpable(
    tmp_path: Path,
) -> None:
    """In a fresh interpreter: what `harden_process` leaves (the CLI and the daemon call it
    first), and a SQLite database with its WAL, as the state store creates them."""
    script = textwrap.dedent(
        f"""
        import ctypes, json, os, resource, sqlite3
        from rotator.hardening import harden_process
        harden_process()
        db = sqlite3.connect({str(tmp_path / "state.db")!r})
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()
        open({str(tmp_path / "report.html")!r}, "w").write("x")
        umask = os.umask(0o077)
        libc = ctypes.CDLL(None)
        print(json.dumps({{
            "umask": umask,
            "core": resource.getrlimit(resource.RLIMIT_CORE),
            "dumpable": libc.prctl(3, 0, 0, 0, 0),
            "modes": {{p: os.stat(os.path.join({str(tmp_path)!r}, p)).st_mode & 0o777
                      for p in os.listdir({str(tmp_path)!r})}},
        }}))
        db.close()
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(ran.stdout)
    assert seen["umask"] == 0o077
    assert seen["core"] == [0, 0]
    if sys.platform.startswith("linux"):
        assert seen["dumpable"] == 0
    assert {"state.db", "state.db-wal", "report.html"} <= set(seen["modes"])
    assert set(seen["modes"].values()) == {0o600}, seen["modes"]


def test_every_reason_option_goes_through_operator_text() -> None:
    """The wiring: what click hands each command (nothing runs). `--actor` is checked
    through the installed command (tests/system/test_small_leaks.py)."""
    from rotator.cli.hold import resume
    from rotator.cli.rotation import cancel, rotate

    typed = "\x1b]0;owned\x07leak in a log\x1b[0m"
    for command in (rotate, cancel, resume):
        ctx = command.make_context(command.name, ["analytics", "--reason", typed])
        assert ctx.params["reason"] == "]0;ownedleak in a log[0m", command.name


def test_a_uuid_with_a_control_character_is_refused() -> None:
    import click

    from rotator.cli.rotation import adopt

    with pytest.raises(click.BadParameter, match="control characters"):
        adopt.make_context("adopt", ["analytics", "--uuid", "abc\x1b[2Jdef"])
    ctx = adopt.make_context("adopt", ["analytics", "--uuid", "0123abcd"])
    assert ctx.params["uuid"] == "0123abcd"
