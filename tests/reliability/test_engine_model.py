"""A stateful property test of the engine: random operations, crashes, faults and time.

`rotator.engine.Engine` with the real `Store` on a SQLite file, against the in-memory
Adobe and AWS of `inmemory.py` (stricter than moto) and a fake clock. Hypothesis picks
the operations: start / emergency / cancel requests, steps (when due, or early), crashes
(between steps, or inside any external call before or after it took effect: the Engine
object and everything in its memory are dropped, the lease runs out, a new Engine takes
over), transient faults, consumers using AWSCURRENT or the previous secret, and time.
After every operation I1, I2 and I3 must hold; at quiet moments I4 and I7 too.

CI runs 80 examples of up to 25 operations (a `rotate_through_a_fault` operation is a
whole rotation); ROTATOR_LONG=1 runs 2000 of up to 60, with shrinking.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import QueuePool

from rotator import config
from rotator.adapters.db import migrate
from rotator.adapters.db.store import Claim, Store, _sqlite_setup, make_engine
from rotator.domain.machine import IllegalTransition
from rotator.domain.model import State, Trigger
from rotator.engine import Engine
from tests.reliability import figures
from tests.reliability.conftest import LONG
from tests.reliability.inmemory import CURRENT, PENDING, PREVIOUS, Crash, FakeAdobe, FakeAws

NAME, SECRET_ID = "analytics", "adobe/analytics"
# True only while the bug of test_a_cancel_while_retiring_ends_the_rotation is open (fixed).
TOLERATE_CANCEL_WHILE_RETIRING = False
CALLS = [
    ("list", "before"),
    ("add", "before"),
    ("add", "after"),
    ("delete", "before"),
    ("delete", "after"),
    ("verify", "before"),
    ("read", "before"),
    ("stages", "before"),
    ("put", "before"),
    ("put", "after"),
    ("move", "before"),
    ("move", "after"),
]
STEPS = {"examples": 0, "rules": 0, "crashes": 0}
REACHED: Counter[str] = Counter()
SETTLED: Counter[str] = Counter()
FIRED: Counter[str] = Counter()
KNOWN_BUG_HITS: Counter[str] = Counter()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def settings_for(db_url: str) -> config.Settings:
    return config.from_mapping(
        {
            "database": {"url": db_url},
            "defaults": {
                "quiet_period": "1h",
                "poll_interval": "10m",
                "verify_timeout": "5m",
                "max_drain": "1d",
                "failure_cooldown": "1h",
            },
            "daemon": {"lease": "60s"},
            "credentials": [
                {
                    "name": NAME,
                    "org_id": "org",
                    "credential_id": "cred",
                    "client_id": "client",
                    "secret_id": SECRET_ID,
                }
            ],
        },
        source="model.toml",
    )


@dataclass(frozen=True)
class _Active:
    id: int
    state: State
    resume_state: State | None
    next_attempt_at: datetime | None
    lease_expires_at: datetime | None
    lease_owner: str | None


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None


def _fast_engine(db_url: str) -> Any:
    """The store's SQLite set-up (WAL, BEGIN IMMEDIATE) on pooled connections without fsync:
    an example's database lives for a second, in one process, and no OS crash is modelled.
    (`make_engine` opens a connection per transaction, right for many processes.)"""
    engine = create_engine(db_url, poolclass=QueuePool, pool_size=2)
    _sqlite_setup(engine)

    @event.listens_for(engine, "connect")
    def _no_sync(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    return engine


class EngineModel(RuleBasedStateMachine):
    template: Path  # a migrated SQLite file, copied for each example

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        path = self.template.parent / f"model-{uuid.uuid4().hex[:10]}.db"
        shutil.copyfile(self.template, path)
        self.path = path
        self.db_url = f"sqlite:///{path}"
        self.settings = settings_for(self.db_url)
        self.store = Store(_fast_engine(self.db_url), now=self.clock)
        self.raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.adobe = FakeAdobe(self.clock)
        self.aws = FakeAws(SECRET_ID)
        first = self.adobe.seed()
        self.aws.seed({"client_secret": first.value, "secret_uuid": first.uuid, "other": "kept"})
        self.adobe.current_value = lambda: (self.aws.value(CURRENT) or {}).get("client_secret")
        self.engine = self._new_engine()
        self.claim: Claim | None = None
        self.emergencies = 0
        STEPS["examples"] += 1

    def _new_engine(self) -> Engine:
        return Engine(
            self.settings,
            self.store,
            self.adobe,
            self.aws,
            owner=f"model-{uuid.uuid4().hex[:6]}",
            clock=self.clock,
        )

    def teardown(self) -> None:
        FIRED.update(self.adobe.faults.fired + self.aws.faults.fired)
        try:
            self._settle()
            problems = self._events_chain()
            assert not problems, problems
        finally:
            self.raw.close()
            self.store.engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    # --- helpers ----------------------------------------------------------------------

    def _settle(self) -> None:
        """The end of every example: faults stop, time passes, the daemon works until there
        is nothing left to do. Then no rotation may be stuck mid-way (it ended, or it asks
        a person), and no secret may sit at Adobe whose plaintext AWS does not hold (I7)."""
        self.adobe.faults.armed.clear()
        self.aws.faults.armed.clear()
        self.claim = None
        self.engine = self._new_engine()
        self.clock.now += timedelta(minutes=5)
        for _ in range(8):
            active = self._active()
            if active is None:
                break
            self.clock.now = max(self.clock.now, active.next_attempt_at or self.clock.now)
            self.clock.now += timedelta(hours=2)  # past any quiet period, lease, backoff
            self._work(12)
        active = self._active()
        assert active is None or active.state is State.NEEDS_ATTENTION, (
            f"liveness: rotation {active.id} is still {active.state} with nothing in its way"
            if active
            else ""
        )
        stored = {json.loads(v.value).get("client_secret") for v in self.aws.versions.values()}
        lost = [s.uuid for s in self.adobe.secrets.values() if s.value not in stored]
        assert not lost, f"I7: orphans at Adobe (plaintext in no AWS version): {lost}"
        if active is None:
            labelled = {
                v.get("client_secret") for s in (CURRENT, PREVIOUS) if (v := self.aws.value(s))
            }
            unlabelled = [s.uuid for s in self.adobe.secrets.values() if s.value not in labelled]
            assert not unlabelled, f"I7: secrets at Adobe under no AWS label: {unlabelled}"
        SETTLED[active.state.value if active else "idle"] += 1

    def _active(self) -> Any:
        """The unfinished rotation's id, state, resume state, next attempt and lease
        (read with plain sqlite3: the model asks this often, the engine is what is tested)."""
        row = self.raw.execute(
            "SELECT id, state, resume_state, next_attempt_at, lease_owner, lease_expires_at "
            "FROM rotations WHERE credential = ? AND finished_at IS NULL",
            (NAME,),
        ).fetchone()
        if row is None:
            return None
        return _Active(
            row[0], State(row[1]), State(row[2]) if row[2] else None, *map(_ts, row[3:6:2]), row[4]
        )

    def _step(self, claim: Claim) -> None:
        try:
            self.claim = self.engine.step(claim)
        except Crash:
            self._crash()
        except IllegalTransition as exc:
            if not (TOLERATE_CANCEL_WHILE_RETIRING and "retiring -> cancelled" in str(exc)):
                raise
            # The known bug (see the xfail test below). Go on as its fix would: the cancel
            # came too late, the retirement finishes. Counted, so the summary shows it.
            KNOWN_BUG_HITS["cancel while retiring"] += 1
            with self.store.engine.begin() as conn:
                conn.execute(
                    text("UPDATE rotations SET cancel_requested = false WHERE id = :i"),
                    {"i": claim.rotation.id},
                )
            self.claim = None
            self.engine = self._new_engine()
            self.clock.now += self.settings.daemon.lease + timedelta(seconds=1)
        else:
            after = self.store.get(claim.rotation.id)
            if after.state is not claim.rotation.state:
                REACHED[after.state.value] += 1

    def _crash(self) -> None:
        """kill -9: the Engine and all it held in memory are gone; its lease runs out."""
        STEPS["crashes"] += 1
        self.claim = None
        self.engine = self._new_engine()
        self.clock.now += self.settings.daemon.lease + timedelta(seconds=1)

    # --- rules -----------------------------------------------------------------------

    @initialize(accept_delay=st.sampled_from([0, 0, 30, 400]))
    def adobe_accepts_new_secrets_after(self, accept_delay: int) -> None:
        self.adobe.accept_delay = timedelta(seconds=accept_delay)

    @rule()
    def start_normal(self) -> None:
        self.engine.request(NAME, Trigger.MANUAL, actor="model")

    @rule()
    def start_emergency(self) -> None:
        self.emergencies += 1
        self.engine.request(NAME, Trigger.EMERGENCY, actor="model", reason="leaked")

    @rule()
    def cancel(self) -> None:
        self.store.request_cancel(NAME, actor="model", reason="operator")

    def cancel_requested_directly(self) -> None:
        self.store.request_cancel(NAME, actor="model", reason="operator")

    @rule()
    def step_when_due(self) -> None:
        """What the daemon does: claim a due rotation (or keep the one held) and step it."""
        claim = self.claim
        if claim is None:
            claims = self.store.claim(self.engine.owner, self.settings.daemon.lease, limit=1)
            claim = claims[0] if claims else None
        if claim is not None:
            self._step(claim)

    @rule()
    def step_now(self) -> None:
        """What `rotator rotate` does: claim the rotation whether due or not, and step it."""
        active = self._active()
        if active is None:
            return
        claim = self.claim if self.claim is not None else self.engine.claim(active.id)
        if claim is not None:
            self._step(claim)

    @rule(steps=st.integers(1, 12))
    def work_until_idle(self, steps: int) -> None:
        self._work(steps)

    def _work(self, steps: int) -> bool:
        """A daemon left alone for a while: step whatever is due, letting time pass to the
        next attempt when nothing is (so rotations do finish, faults and all)."""
        for _ in range(steps):
            active = self._active()
            if active is None:
                return False
            if (
                self.claim is None
                and active.next_attempt_at
                and active.next_attempt_at > self.clock()
            ):
                self.clock.now = active.next_attempt_at + timedelta(seconds=1)
            self.step_when_due()
            after = self._active() if self.claim is None else None
            stale = after is not None and after.lease_owner not in {None, self.engine.owner}
            if stale and after.lease_expires_at:  # a dead owner's lease: wait it out
                expiry = after.lease_expires_at + timedelta(seconds=1)
                self.clock.now = max(self.clock.now, expiry)
        return True

    @rule()
    def crash_between_steps(self) -> None:
        self._crash()

    @rule(call=st.sampled_from(CALLS), kind=st.sampled_from(["crash", "transient"]))
    def arm_fault(self, call: tuple[str, str], kind: str) -> None:
        """The next such call crashes the process or fails transiently (before/after effect)."""
        name, phase = call
        side = self.adobe if name in {"list", "add", "delete", "verify"} else self.aws
        side.faults.arm(name, phase, kind)

    @rule(
        call=st.sampled_from(CALLS),
        kind=st.sampled_from(["crash", "transient"]),
        emergency=st.booleans(),
        then=st.sampled_from(["work", "work", "cancel", "emergency"]),
    )
    def rotate_through_a_fault(
        self, call: tuple[str, str], kind: str, emergency: bool, then: str
    ) -> None:
        """Arm a fault, make sure a rotation runs and work until it fired; then maybe an
        operator cancels or declares an emergency right there; then work on."""
        self.arm_fault(call, kind)
        if self._active() is None:
            trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
            self.engine.request(NAME, trigger, actor="model")
        fired = len(self.adobe.faults.fired) + len(self.aws.faults.fired)
        for _ in range(20):
            if len(self.adobe.faults.fired) + len(self.aws.faults.fired) > fired:
                break
            if not self._work(1):
                break
        if then == "cancel":
            self.cancel()
        elif then == "emergency":
            self.start_emergency()
        self._work(20)

    @rule()
    def consumer_reads_current_and_mints(self) -> None:
        value = (self.aws.value(CURRENT) or {}).get("client_secret")
        assert value and self.adobe.mint(value), "I8: a consumer reading AWSCURRENT was refused"

    @rule()
    def consumer_still_holding_the_previous_secret(self) -> None:
        value = (self.aws.value(PREVIOUS) or {}).get("client_secret")
        if value:
            self.adobe.mint(value)  # may be refused once it was retired: that is allowed

    @rule(seconds=st.sampled_from([1, 30, 300, 1800, 3700, 6 * 3600, 26 * 3600, 3 * 86400]))
    def time_passes(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def i1_awscurrent_works(self) -> None:
        STEPS["rules"] += 1
        current = self.aws.value(CURRENT)
        assert current is not None, "I1: no AWSCURRENT"
        secret = self.adobe.by_value(current.get("client_secret", ""))
        assert secret is not None, "I1: AWSCURRENT holds a secret Adobe does not have"
        assert self.clock() >= secret.accepted_at, "I1: AWSCURRENT holds an unaccepted secret"
        assert current.get("other") == "kept"

    @invariant()
    def i2_never_deleted_awscurrent(self) -> None:
        assert not self.adobe.i2_violations, self.adobe.i2_violations

    @invariant()
    def i3_one_unfinished(self) -> None:
        (n,) = self.raw.execute(
            "SELECT count(*) FROM rotations WHERE credential = ? AND finished_at IS NULL", (NAME,)
        ).fetchone()
        assert n <= 1, f"I3: {n} unfinished rotations"

    @invariant()
    def aws_labels_are_sane(self) -> None:
        for stage in (CURRENT, PENDING, PREVIOUS):
            self.aws.holder(stage)  # asserts one holder at most

    @precondition(lambda self: self.claim is None)
    @invariant()
    def at_rest_i4_i7(self) -> None:
        """With no rotation unfinished: no orphan (every Adobe secret's value is in AWS under
        a label); after a completed normal rotation, I4 exactly."""
        if self._active() is not None:
            return
        labelled = {v.get("client_secret") for s in (CURRENT, PREVIOUS) if (v := self.aws.value(s))}
        for secret in self.adobe.secrets.values():
            assert secret.value in labelled, f"I7: orphan {secret.uuid} at Adobe"
        assert self.aws.holder(PENDING) is None, "AWSPENDING left with no rotation running"
        latest = self.store.recent(NAME, limit=1)
        if latest and latest[0].state is State.COMPLETED and not latest[0].emergency:
            rotation = latest[0]
            if rotation.detail.get("preempted"):
                return
            current = self.aws.value(CURRENT) or {}
            assert list(self.adobe.secrets) == [rotation.new_uuid], "I4: Adobe != [new]"
            assert current.get("secret_uuid") == rotation.new_uuid, "I4: AWSCURRENT != new"
            assert self.aws.value(PREVIOUS) is not None, "I4: no AWSPREVIOUS"

    def _events_chain(self) -> list[str]:
        problems = []
        with self.store.engine.connect() as conn:
            rotations = conn.execute(text("SELECT id, state FROM rotations")).all()
            for rid, state in rotations:
                rows = conn.execute(
                    text(
                        "SELECT from_state, to_state FROM events WHERE rotation_id = :r ORDER BY id"
                    ),
                    {"r": rid},
                ).all()
                at = None
                for from_state, to_state in rows:
                    if from_state != at:
                        problems.append(f"I6: rotation {rid}: {from_state} after {at}")
                    at = to_state
                if at != state:
                    problems.append(f"I6: rotation {rid} is {state}, its events end at {at}")
        _checked, broken = self.store.verify_chain()
        if broken:
            problems.append(f"I6: {broken}")
        return problems


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("model") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    yield path
    path.unlink(missing_ok=True)
    if not SETTLED:  # only the hand-written test ran in this process: nothing to report
        return
    figures.add("model examples (hypothesis)", STEPS["examples"])
    figures.add("model operations checked", STEPS["rules"])
    figures.add("model crashes (engine dropped mid-step or between steps)", STEPS["crashes"])
    figures.add(
        "model faults fired (crashes and transient errors inside calls)", sum(FIRED.values())
    )
    figures.note("model faults fired", ", ".join(f"{k} {v}" for k, v in sorted(FIRED.items())))
    if KNOWN_BUG_HITS:
        figures.note("model hits of known bugs (xfail)", str(dict(KNOWN_BUG_HITS)))
    figures.note("model examples settled as", ", ".join(f"{k} {v}" for k, v in SETTLED.items()))
    figures.note(
        "model states reached",
        ", ".join(f"{k} {v}" for k, v in sorted(REACHED.items(), key=lambda kv: -kv[1])),
    )


@pytest.mark.timeout(3600 if LONG else 400)
def test_engine_keeps_i1_to_i4_under_random_operations(template: Path) -> None:
    EngineModel.template = template
    run_state_machine_as_test(
        EngineModel,
        settings=settings(
            max_examples=2000 if LONG else 80,
            stateful_step_count=60 if LONG else 25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=not LONG,  # CI: the same examples every run; long: new ones
            database=None,
            # CI reports a failing example as found (shrinking one can take minutes).
            phases=list(Phase) if LONG else [Phase.explicit, Phase.generate],
        ),
    )


def test_a_cancel_while_retiring_ends_the_rotation(template: Path) -> None:
    EngineModel.template = template
    model = EngineModel()
    try:
        model.start_emergency()
        for _ in range(6):
            model.step_now()
            if model.store.active(NAME).state is State.RETIRING:  # type: ignore[union-attr]
                break
        assert model.store.active(NAME).state is State.RETIRING  # type: ignore[union-attr]
        model.crash_between_steps()  # e.g. killed in the middle of the delete
        model.cancel_requested_directly()
        claim = model.engine.claim(model.store.active(NAME).id)  # type: ignore[union-attr]
        assert claim is not None
        try:
            model.engine.step(claim)
        except Exception as exc:
            raise AssertionError(f"the step raised {type(exc).__name__}: {exc}") from exc
        final = model.store.recent(NAME, limit=1)[0]
        assert final.state in {State.COMPLETED, State.CANCELLED}, final.state
        assert not model.adobe.i2_violations
    finally:
        model.raw.close()
        model.store.engine.dispose()
