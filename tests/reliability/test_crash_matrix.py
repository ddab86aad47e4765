"""Crash at every step boundary and inside every external write, then restart: I1-I7 hold.

Each run starts `rotator --config X rotate NAME --wait [--emergency]` as a real process,
stops it at one point, kills it with SIGKILL there, checks the invariants at the kill,
waits for its lease (1 s) to run out, starts the same command again and checks that the
rotation completed with every invariant intact:

- step boundaries: the state is committed and the next step has not started. The first
  request of the next step is held (AWSCURRENT read, Adobe token mint, DescribeSecret);
  where the next step makes no request (promoted -> draining / retiring), the process is
  stopped on the line it prints right after the commit (its stdout pipe is full);
- inside each write, before the remote side takes effect and after it took effect but
  before the answer arrived: Adobe add and delete (sandbox holds), AWS put and both label
  moves (holds in the AWS proxy).

Adobe answers as an eventually consistent service would, per cell (`Case.hostile`,
without omissions, which would change how many secrets a cell may create): adds answered
200, 201 or 202, uses shown late, usages shown null or stale, new secrets accepted late.
A watcher thread samples I2 (AWSCURRENT's secret is live at Adobe) and I3 throughout, and
the oracle checks every deletion at the instant it happens (never AWSCURRENT's value).
Each cell has its own credential, AWS secret and database (the PostgreSQL cells of one
test process share a database, as many credentials do in production), so the cells of a
column (scenario x database) run side by side, and the columns on several xdist workers;
the session summary prints the whole matrix, cell by cell.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.reliability import figures
from tests.reliability.awsproxy import wait_until
from tests.reliability.harness import Case, Hold, ServicesRig
from tests.reliability.invariants import (
    i1_current_works,
    i2_sample,
    i3_one_unfinished,
    i4_completed_normal,
    i6_events,
    i7_no_orphan,
)
from tests.reliability.launcher import Proc

Start = Callable[[], Proc]
Reach = Callable[[Case, Start], tuple[Proc, list[Hold]]]


@dataclass(frozen=True)
class Point:
    name: str
    state: str  # what the database shows at the kill
    reach: Reach
    orphan: bool = False  # the crash lost a plaintext Adobe had made: two adds, one deleted
    scenarios: tuple[str, ...] = ("normal", "emergency")


# --- how each point is reached -------------------------------------------------------------


def _read_boundary(state: str) -> Reach:
    """The next step's first request is its AWSCURRENT read (plan, create, drain, retire)."""

    def reach(case: Case, start: Start) -> tuple[Proc, list[Hold]]:
        def make() -> Hold:
            return case.aws_hold("GetSecretValue", VersionStage="AWSCURRENT")

        first = make()
        proc = start()
        return proc, case.hold_until_state(first, make, state)

    return reach


def _staged(case: Case, start: Start) -> tuple[Proc, list[Hold]]:
    """verify starts with a token mint with the new secret (its value is still in memory)."""

    def make() -> Hold:
        return case.adobe_hold("token")

    first = make()
    proc = start()
    return proc, case.hold_until_state(first, make, "staged")


def _verified(case: Case, start: Start) -> tuple[Proc, list[Hold]]:
    """promote starts by reading the labels."""

    def make() -> Hold:
        return case.aws_hold("DescribeSecret")

    first = make()
    proc = start()
    return proc, case.hold_until_state(first, make, "verified")


def _promoted(case: Case, start: Start) -> tuple[Proc, list[Hold]]:
    """After promotion the next step makes no request: stop the process on its next line."""
    hold = case.aws_hold("UpdateSecretVersionStage", "after", VersionStage="AWSPENDING")
    proc = start()
    hold.wait()
    proc.block_stdout()
    hold.release()
    wait_until(lambda: case.db_state() == "promoted", timeout=15)
    time.sleep(0.3)  # it stays there: the process is blocked printing "promoted"
    return proc, [hold]


def _write(kind: str, endpoint: str, phase: str, **match: str) -> Reach:
    def reach(case: Case, start: Start) -> tuple[Proc, list[Hold]]:
        if kind == "adobe":
            hold: Hold = case.adobe_hold(endpoint, phase)
        else:
            hold = case.aws_hold(endpoint, phase, **match)
        proc = start()
        hold.wait()
        return proc, [hold]

    return reach


POINTS = [
    Point("boundary: planned", "planned", _read_boundary("planned")),
    Point("boundary: creating", "creating", _read_boundary("creating")),
    Point("adobe add, before", "creating", _write("adobe", "add_secret", "before")),
    Point("adobe add, after", "creating", _write("adobe", "add_secret", "after"), orphan=True),
    Point("aws put, before", "creating", _write("aws", "PutSecretValue", "before"), orphan=True),
    Point("aws put, after", "creating", _write("aws", "PutSecretValue", "after")),
    Point("boundary: staged", "staged", _staged),
    Point("boundary: verified", "verified", _verified),
    Point(
        "aws AWSCURRENT move, before",
        "verified",
        _write("aws", "UpdateSecretVersionStage", "before", VersionStage="AWSCURRENT"),
    ),
    Point(
        "aws AWSCURRENT move, after",
        "verified",
        _write("aws", "UpdateSecretVersionStage", "after", VersionStage="AWSCURRENT"),
    ),
    Point(
        "aws AWSPENDING removal, before",
        "verified",
        _write("aws", "UpdateSecretVersionStage", "before", VersionStage="AWSPENDING"),
    ),
    Point(
        "aws AWSPENDING removal, after",
        "verified",
        _write("aws", "UpdateSecretVersionStage", "after", VersionStage="AWSPENDING"),
    ),
    Point("boundary: promoted", "promoted", _promoted),
    Point("boundary: draining", "draining", _read_boundary("draining"), scenarios=("normal",)),
    Point("boundary: retiring", "retiring", _read_boundary("retiring")),
    Point("adobe delete, before", "retiring", _write("adobe", "delete_secret", "before")),
    Point("adobe delete, after", "retiring", _write("adobe", "delete_secret", "after")),
]
SCENARIOS = ("normal", "emergency")
DATABASES = ("sqlite", "postgres")

# (point, scenario, database) -> the production bug that makes that cell fail. Such a cell
# must keep failing (strict, like xfail): when it passes, the bug is fixed; remove it here.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}
WORKERS = 6  # cells of one column run side by side: each mostly waits (lease, drain, holds)
FAST = {"quiet_period": "300ms", "poll_interval": "300ms", "usage_lag": "400ms"}


@dataclass
class Outcome:
    problems: list[str]
    seconds: float
    log: str


# size: one cell of the matrix as one story: start, crash at the point, restart, judge.
def run_case(rig: ServicesRig, point: Point, scenario: str, db: str) -> Outcome:
    started = time.monotonic()
    problems: list[str] = []
    log: list[str] = []
    case = rig.new_case(db, shared_db="crash-matrix" if db == "postgres" else None, defaults=FAST)
    case.adopt_initial()  # a crash mid-add leaves an orphan: deleted once AWSCURRENT is known
    case.hostile(random.Random(f"{point.name}/{scenario}/{db}"), lag_ms=150, omit=False)
    emergency = ["--emergency", "--reason", "crash matrix"] if scenario == "emergency" else []
    command = ["rotate", case.name, "--wait", *emergency]
    first: Proc | None = None
    holds: list[Hold] = []
    try:
        with rig.watching(case):
            first, holds = point.reach(case, lambda: case.start(*command))
            marks = {"reached": time.monotonic() - started}
            at_kill = case.db_state()
            if at_kill != point.state:
                problems.append(f"killed in state {at_kill}, expected {point.state}")
            problems += [f"at the kill: {p}" for p in i1_current_works(case) + i2_sample(case)]
            first.kill()
            for hold in holds:
                hold.release(drop=True)
            after_kill = case.db_state()
            if after_kill != at_kill:
                problems.append(f"state moved from {at_kill} to {after_kill} across the kill")
            problems += [f"after the kill: {p}" for p in i1_current_works(case)]
            log.append(f"first run (killed): {first.stdout.strip()!r}")
            marks["killed"] = time.monotonic() - started
            case.wait_lease_expired()
            marks["lease"] = time.monotonic() - started
            second = case.start(*command)
            code = second.wait(60)
            marks["second"] = time.monotonic() - started
            log.append("timing: " + ", ".join(f"{k} {v:.2f}s" for k, v in marks.items()))
            log.append(f"second run: exit {code}: {second.stdout.strip()!r}")
            if code != 0:
                problems.append(f"the restarted rotator exited {code}: {second.stderr[-800:]}")
            if "Traceback" in second.stderr:
                problems.append(f"a traceback on stderr: {second.stderr[-800:]}")
            rotations = case.rotations()
            if len(rotations) != 1 or rotations[0]["state"] != "completed":
                problems.append(
                    f"rotations: {[(r['id'], r['state'], r['last_error']) for r in rotations]}"
                )
            problems += i1_current_works(case)
            problems += i3_one_unfinished(case)
            problems += i4_completed_normal(case, case.initial_value)
            problems += i6_events(case)
            problems += i7_no_orphan(case, adds=2 if point.orphan else 1)
            problems += case.oracle_problems(quiet_period_s=0.3)
        problems += [f"watcher: {v}" for v in case.violations]
    except Exception as exc:
        problems.append(f"harness: {type(exc).__name__}: {exc}")
        log.append(traceback.format_exc())
        if first is not None:
            first.kill()
            log.append(f"first run stderr: {first.stderr[-1500:]}")
        for hold in holds:
            hold.release(drop=True)
    finally:
        case.close()
    return Outcome(problems, time.monotonic() - started, "\n".join(log))


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
@pytest.mark.parametrize("scenario", ["normal", "emergency"])
def test_crash_then_restart_keeps_every_invariant(rig: ServicesRig, scenario: str, db: str) -> None:
    """One column of the matrix: every point, killed and restarted, side by side."""
    points = [p for p in POINTS if scenario in p.scenarios]
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="crash") as pool:
        outcomes = list(pool.map(lambda p: run_case(rig, p, scenario, db), points))
    failures, fixed = [], []
    for point, outcome in zip(points, outcomes, strict=True):
        cell = figures.MatrixCell(
            point.name, scenario, db, not outcome.problems, outcome.seconds, outcome.problems
        )
        figures.record(cell)
        bug = KNOWN_BUGS.get((point.name, scenario, db))
        if outcome.problems and not bug:
            failures.append(
                f"[{point.name}]\n  " + "\n  ".join(outcome.problems) + "\n" + outcome.log
            )
        elif bug and not outcome.problems:
            fixed.append(f"[{point.name}] passes now: remove it from KNOWN_BUGS ({bug})")
    assert not failures + fixed, "\n\n".join(failures + fixed)
