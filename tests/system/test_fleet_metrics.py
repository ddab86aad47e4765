"""Issue 12: /metrics tells the fleet's truth, whoever did the work.

Two daemon replicas on one real PostgreSQL database. Replica A rotates one credential,
replica B another, the CLI a third rotation; replica A is restarted in between (a process
that counted in memory would have forgotten). Afterwards both replicas' /metrics report
the same fleet series: the same rotation counts by outcome and trigger, the same
per-credential figures, and no `_created` series.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.devkit.localaws import LocalAws, free_port
from rotator.devkit.sandbox.server import SandboxServer
from tests.system.conftest import DaemonProcess, System, _system

PROCESS_SERIES = (
    "rotator_ready",
    "rotator_last_successful_tick_timestamp_seconds",
    "rotator_tick_seconds",
    "rotator_step_seconds",
    "rotator_adobe_requests_total",
    "rotator_aws_requests_total",
    "rotator_audit_chain_hold_seconds",
    "rotator_aws_write_budget_wait_seconds",
    "rotator_aws_write_budget_writes",
    "rotator_replicas_live",  # fleet-wide, but read at scrape time from heartbeats that move
)


@pytest.fixture
def pg_system(
    sandbox: SandboxServer, local_aws: LocalAws, pg_url: str, tmp_path: Path
) -> Iterator[System]:
    yield from _system(sandbox, local_aws, pg_url, tmp_path)


def replica(system: System, listen: str) -> DaemonProcess:
    """A daemon on its own port (the config is read once, at start)."""
    system.listen = listen
    system.write_config()
    daemon = system.start_daemon()
    daemon.wait_ready()
    return daemon


def fleet(daemon: DaemonProcess) -> dict[str, float]:
    """Every fleet sample of /metrics, by its name and labels."""
    samples: dict[str, float] = {}
    for line in daemon.get("/metrics").text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        if not key.startswith(PROCESS_SERIES):
            samples[key] = float(value)
    return samples


def test_two_replicas_report_the_same_fleet_after_rotations_by_each_and_by_the_cli(
    pg_system: System,
) -> None:
    system = pg_system
    port_a, port_b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    system.credential("analytics")  # due

    a = replica(system, port_a)  # replica A rotates analytics
    system.wait_state("completed", name="analytics")
    assert a.stop() == 0, a.output()

    system.credential("billing")  # due: replica B, started next, rotates it
    b = replica(system, port_b)
    system.wait_state("completed", name="billing")
    a = replica(system, port_a)  # A again: a new process, nothing in memory
    ran = system.rotator("rotate", "analytics", "--wait", timeout=60)
    assert ran.code == 0, ran

    def counts(d: DaemonProcess) -> tuple[float | None, ...]:
        return tuple(
            d.metric("rotator_rotations_total", outcome="completed", trigger=t)
            for t in ("scheduled", "manual", "emergency")
        )

    for d in (a, b):
        d.wait_until(lambda d=d: counts(d) == (2, 1, 0), 20, "two scheduled and one manual")
    seen_a, seen_b = fleet(a), fleet(b)
    ages = [k for k in seen_a if k.startswith("rotator_secret_age_seconds")]
    assert len(ages) == 2
    for key in ages:  # ages move with the clock between the two scrapes
        assert abs(seen_a.pop(key) - seen_b.pop(key)) < 5, key
    assert seen_a == seen_b
    assert seen_a['rotator_rotations_unfinished{state="draining"}'] == 0
    assert seen_a['rotator_credential_needs_attention{credential="billing"}'] == 0
    assert seen_a["rotator_outbox_pending"] == 0
    for d in (a, b):
        text = d.get("/metrics").text
        assert "_created" not in text
        assert d.metric("rotator_ready") == 1
    # Process series stay per process: of the fleet's three adds at Adobe, the first was
    # made by A's previous process (gone with it), so these two processes count at most two.
    adds = [d.metric("rotator_adobe_requests_total", operation="add", outcome="ok") for d in (a, b)]
    assert adds[1] is not None and adds[1] >= 1, adds  # B rotated billing
    assert sum(n or 0 for n in adds) <= 2, adds
    system.transcript += [a.get("/metrics").text, b.get("/metrics").text]
    assert a.stop() == 0 and b.stop() == 0
