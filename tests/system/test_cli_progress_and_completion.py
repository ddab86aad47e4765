"""The CLI's rough edges (issue 28), through the installed command: `rotate --wait` piped,
`history`'s summary and filters, uuids at 80 columns, `adopt` twice, shell completion."""

from __future__ import annotations

import json
import re
import subprocess

from tests.system.conftest import ROTATOR, System
from tests.system.test_cli_output import _on_a_terminal

_STATE = re.compile(r"^rotation (\d+) \((\w+)\) of analytics: (\w+)")


def _states(out: str) -> list[tuple[str, str]]:
    """(rotation id, state) of each progress line, in order."""
    return [(m[1], m[3]) for line in out.splitlines() if (m := _STATE.match(line))]


def test_rotate_history_status_adopt_on_the_command_line(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0

    # rotate --wait, piped: one line per state change (draining polls: at most one a minute).
    normal = system.rotator("rotate", "analytics", "--wait", timeout=60)
    assert normal.code == 0, normal
    states = _states(normal.out)
    assert len(states) == len(set(states)), normal.out  # no state said twice
    assert [s for _, s in states][-3:] == ["draining", "retiring", "completed"], normal.out
    assert len(normal.out.splitlines()) == len(states), normal.out  # and nothing else
    emergency = system.rotator(
        "rotate", "analytics", "--emergency", "--reason", "leaked in a log", "--wait", timeout=60
    )
    assert emergency.code == 0, emergency
    said = [s for _, s in _states(emergency.out)]
    assert said.count("retiring") == 1 and said[-1] == "completed", emergency.out

    # history: a summary, not raw JSON; filters by rotation and time.
    lines = system.rotator("history").out.splitlines()
    assert lines and not any("{" in line for line in lines), lines
    assert any("promoted" in line and "new secret " in line for line in lines), lines
    assert any("emergency; reason: leaked in a log" in line for line in lines), lines
    first = system.rotator("history", "--rotation", "1").out.splitlines()
    assert first and all("rotation 1 " in line for line in first), first
    assert len(system.rotator("history", "--since", "1h").out.splitlines()) == len(lines)
    old = system.rotator("history", "--until", "2000-01-01")
    assert old.code == 0 and old.out.strip() == "no audit events match"
    raw = json.loads(system.rotator("history", "--json", "--rotation", "2").out)
    assert raw and {e["rotation_id"] for e in raw} == {2} and any(e["detail"] for e in raw)
    bad = system.rotator("history", "--since", "yesterday")
    assert bad.code == 2 and "neither a time" in bad.err

    # status at 80 columns: uuids shortened to a prefix, never folded; full with --wide.
    uuid = system.world.value()["secret_uuid"]
    assert len(uuid) >= 32
    code, narrow, _ = _on_a_terminal(system, "status", columns=80)
    assert code == 0 and f"{uuid[:8]}…" in narrow, narrow
    assert uuid[8:16] not in narrow, narrow  # no folded remainder of it anywhere
    code, wide, _ = _on_a_terminal(system, "status", "--wide", columns=80)
    assert code == 0 and uuid in wide.replace("\r", ""), wide
    assert json.loads(system.rotator("status", "--json").out)[0]["current_uuid"] == uuid

    # adopt of the uuid already bound: a message, no second event.
    adopted = [e for e in system.events() if e["kind"] == "adopted"]
    again = system.rotator("adopt", "analytics", "--uuid", uuid)
    assert again.code == 0 and "already recorded" in again.out and "nothing changed" in again.out
    assert [e for e in system.events() if e["kind"] == "adopted"] == adopted


def test_completion_scripts_and_credential_names(system: System) -> None:
    system.credential("analytics")
    system.credential("reports")
    config = system.write_config()
    for shell in ("bash", "zsh", "fish"):
        ran = system.rotator("completion", shell, config=False)
        assert ran.code == 0 and "_ROTATOR_COMPLETE" in ran.out, ran
    bad = system.rotator("completion", "tcsh", config=False)
    assert bad.code == 2

    def complete(words: str) -> list[str]:
        env = {
            **system.env(),
            "_ROTATOR_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            "ROTATOR_CONFIG": str(config),
        }
        done = subprocess.run([str(ROTATOR)], env=env, capture_output=True, text=True, timeout=30)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("rotator rotate ") == ["analytics", "reports"]
    assert complete("rotator plan re") == ["reports"]
    assert complete("rotator sta") == ["status"]
