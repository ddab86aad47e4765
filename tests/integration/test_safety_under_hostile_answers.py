"""The engine keeps the old secret, and cleans up after itself, when Adobe and AWS answer
the way they may: each of issue 11's findings, replayed against the real engine and the real
store (SQLite).

Adobe and AWS are the devkit's in-memory fakes (`rotator.devkit.fakes`), hostile the way an
eventually consistent Adobe is: a list may leave a secret out, `secret_usages` may go back
to null or to an older answer, a hand edit may leave a stale uuid in the AWS value. The
rotator's client here keeps no management token (`token_reuse` zero), so every call it
makes is a use of the secret it carries, as when these findings were made. Everything is
driven by a fake clock; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from rotator import config
from rotator.adapters.db import migrate
from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import rotations
from rotator.devkit.fakes import (
    CLIENT_ID,
    CREDENTIAL_ID,
    CURRENT,
    PENDING,
    FakeAdobe,
    FakeAws,
    FakeClock,
)
from rotator.domain.model import Rotation, State, Trigger
from rotator.engine import Engine

NAME, SECRET_ID = "analytics", "adobe/analytics"
H = timedelta(hours=1)
M = timedelta(minutes=1)


class EngineOnFakes:
    """The real engine and store (SQLite file) over the devkit's fakes, on a fake clock."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        adobe_clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`clock`: the store's and the engine's (default: the fake clock); `adobe_clock`:
        Adobe's (default: the fake clock)."""
        self.clock = FakeClock()
        url = f"sqlite:///{tmp_path / 'rotator.db'}"
        self.settings = config.from_mapping(
            {
                "database": {"url": url},
                "defaults": {
                    "quiet_period": "25h",
                    "poll_interval": "1h",  # few polls: each is a step on SQLite
                    "verify_timeout": "5m",
                    "max_drain": "14d",
                },
                "daemon": {"lease": "60s"},
                "credentials": [
                    {
                        "name": NAME,
                        "org_id": "org",
                        "credential_id": CREDENTIAL_ID,
                        "client_id": CLIENT_ID,
                        "secret_id": SECRET_ID,
                    }
                ],
            }
        )
        engine = make_engine(url)
        migrate.upgrade(engine)
        self.store = Store(engine, now=clock or self.clock)
        self.adobe = FakeAdobe(adobe_clock or self.clock, token_reuse=timedelta(0))
        self.aws = FakeAws(SECRET_ID)
        first = self.adobe.seed(age=30 * 24 * H)
        self.first = first
        self.aws.seed({"client_secret": first.value, "secret_uuid": first.uuid})
        self.adobe.current_value = self.current_secret
        self.engine = Engine(
            self.settings,
            self.store,
            self.adobe,
            self.aws,
            owner="worker",
            clock=clock or self.clock,
        )

    def current_secret(self) -> str | None:
        """The client secret AWSCURRENT holds."""
        value = self.aws.value(CURRENT) or {}
        secret = value.get("client_secret")
        return secret if isinstance(secret, str) else None

    def hidden(self, uuid: str) -> dict[str, int]:
        """How often a list answer hid the truth of this secret (omitted, null, stale)."""
        truth = self.adobe.oracle.secret(CREDENTIAL_ID, uuid)
        return {} if truth is None else dict(truth.hidden)

    def start(self, trigger: Trigger = Trigger.MANUAL) -> Rotation:
        return self.engine.request(NAME, trigger, actor="test")

    def rotation(self, rotation_id: int) -> Rotation:
        return self.store.get(rotation_id)

    def step_once(self, rotation_id: int) -> Rotation:
        """Claim the rotation (due or not) and run exactly one step."""
        claim = self.engine.claim(rotation_id)
        assert claim is not None, "nobody else holds the lease in these tests"
        after = self.engine.step(claim)
        if after is not None:
            self.store.release(after)
        return self.rotation(rotation_id)

    def drive_until(
        self, rotation_id: int, done: Callable[[Rotation], bool], *, until: datetime
    ) -> Rotation:
        """Step at each due time (the clock jumps there) until `done` or the clock passes
        `until`; consumers reading AWSCURRENT must be accepted at every instant."""
        for _ in range(400):
            rotation = self.rotation(rotation_id)
            if done(rotation) or rotation.state.terminal:
                return rotation
            due = rotation.next_attempt_at or self.clock.now
            if due > until:
                return rotation
            self.clock.now = max(self.clock.now, due)
            self.step_once(rotation_id)
            current = self.current_secret()
            assert current is not None and self.adobe.mint(current), "I1/I8"
        raise AssertionError("the rotation did not settle")

    def to_draining(self) -> Rotation:
        rotation = self.start()
        return self.drive_until(
            rotation.id, lambda r: r.state is State.DRAINING, until=self.clock.now + H
        )


@pytest.fixture
def rig(tmp_path: Path) -> EngineOnFakes:
    return EngineOnFakes(tmp_path)


# --- finding 1: one answer without the old uuid ----------------------------------------------


def test_one_list_answer_without_the_old_secret_does_not_retire_it(
    rig: EngineOnFakes,
) -> None:
    draining = rig.to_draining()
    promoted = draining.promoted_at
    assert promoted is not None
    old = rig.first
    rig.clock.now = promoted + 5 * M
    assert rig.adobe.mint(old.value)  # a consumer still on the old secret
    rig.adobe.consistency.omit(client_id=CLIENT_ID, uuid=old.uuid, count=1)  # the next list

    final = rig.drive_until(draining.id, lambda r: False, until=promoted + 24 * H)

    assert old.uuid in rig.adobe.secrets, "deleted 5 minutes after its last use"
    assert rig.hidden(old.uuid) == {"omitted": 1}, "the fake gave no hostile answer"
    assert final.state is State.DRAINING


# --- finding 2: evidence is kept --------------------------------------------------------------


@pytest.mark.parametrize("answer", ["null", "older"])
def test_a_later_null_or_older_usage_answer_does_not_shorten_the_quiet_period(
    rig: EngineOnFakes, answer: str
) -> None:
    draining = rig.to_draining()
    promoted = draining.promoted_at
    assert promoted is not None
    old = rig.first
    rig.clock.now = promoted + 19 * H
    assert rig.adobe.mint(old.value)  # the last use: 19 h after promotion
    last_use = rig.clock.now
    rig.drive_until(draining.id, lambda r: False, until=promoted + 20 * H)  # a poll sees it
    if answer == "null":
        # from now on: secret_usages null
        rig.adobe.consistency.distort_usages(mode="null", client_id=CLIENT_ID, uuid=old.uuid)
    else:
        # from now on an older answer: a replica 25 h behind never shows the use at 19 h
        # (it shows the uses before the promotion, or none) before the test ends
        behind = int((25 * H).total_seconds() * 1000)
        rig.adobe.consistency.distort_usages(
            mode="stale", stale_ms=behind, client_id=CLIENT_ID, uuid=old.uuid
        )

    rig.drive_until(draining.id, lambda r: False, until=last_use + 25 * H - M)

    assert old.uuid in rig.adobe.secrets, "deleted less than quiet_period after its last use"
    assert not rig.adobe.deleted_values
    assert rig.hidden(old.uuid), "the fake gave no hostile answer"


# --- finding 3: identity of AWSCURRENT's secret ------------------------------------------------


@pytest.mark.parametrize("surveyed", [False, True])
def test_an_emergency_never_deletes_the_live_secret_a_stale_uuid_points_away_from(
    rig: EngineOnFakes, surveyed: bool
) -> None:
    a = rig.first
    b = rig.adobe.seed(age=30 * 24 * H)  # a second secret, B
    # A hand edit: AWSCURRENT holds B's value beside A's uuid.
    rig.aws.put_by_hand(SECRET_ID, {"client_secret": b.value, "secret_uuid": a.uuid})
    if surveyed:  # the daemon's survey reads the claim: it must not turn it into a binding
        rig.engine.sync()
        rig.engine.survey(NAME)

    rotation = rig.start(Trigger.EMERGENCY)
    final = rig.drive_until(
        rotation.id, lambda r: r.state is State.NEEDS_ATTENTION, until=rig.clock.now + 2 * H
    )

    assert not rig.adobe.i2_violations, "deleted the secret AWSCURRENT holds"
    assert b.uuid in rig.adobe.secrets
    assert rig.adobe.mint(b.value)
    if final.state is State.NEEDS_ATTENTION:
        assert final.last_error and a.uuid in final.last_error and b.uuid in final.last_error


# --- finding 5: two clocks --------------------------------------------------------------------


def test_a_host_clock_ahead_of_the_database_does_not_cut_verification_short(
    tmp_path: Path,
) -> None:
    behind = 6 * M  # the database clock (here: the store's) is 6 minutes behind this host

    def database_now() -> datetime:
        return datetime.now(UTC) - behind

    rig = EngineOnFakes(tmp_path, clock=database_now, adobe_clock=lambda: datetime.now(UTC))
    rig.engine = Engine(rig.settings, rig.store, rig.adobe, rig.aws, owner="worker")
    rig.adobe.accept_delay = M  # a normal acceptance lag: the first test token is refused
    rotation = rig.start()
    for _ in range(4):  # planned -> creating -> staged -> verify once
        current = rig.rotation(rotation.id)
        if current.state is State.STAGED and current.attempts >= 1:
            break
        rig.step_once(rotation.id)

    after = rig.rotation(rotation.id)
    assert after.state is State.STAGED, f"gave up verification: {after.state} {after.last_error}"


# --- findings 6 and 9: AWSPENDING left behind ---------------------------------------------------


def test_rollback_removes_awspending_from_an_earlier_tokens_version(
    rig: EngineOnFakes,
) -> None:
    rotation = rig.start()
    rig.step_once(rotation.id)  # planned -> creating (identity, token persisted)
    creating = rig.drive_until(
        rotation.id, lambda r: r.state is State.CREATING, until=rig.clock.now + H
    )
    rig.aws.faults.arm("put", "after", "transient")  # the put takes effect; its answer is lost
    rig.clock.now = creating.next_attempt_at or rig.clock.now
    rig.step_once(rotation.id)  # creating fails transiently; our secret is given back
    rig.clock.now += 10 * M
    renewed = rig.step_once(rotation.id)  # resume: staged version holds a deleted uuid
    assert renewed.request_token != creating.request_token
    rig.store.request_cancel(NAME, actor="test", reason="operator")

    final = rig.drive_until(rotation.id, lambda r: False, until=rig.clock.now + 2 * H)

    assert final.state.terminal
    assert rig.aws.holder(PENDING) is None, "AWSPENDING left with no rotation running"
    assert rig.current_secret() == rig.first.value
    assert list(rig.adobe.secrets) == [rig.first.uuid]


# --- finding 7: a lease lost right after the add --------------------------------------------------


def test_a_lease_lost_after_the_add_gives_the_new_secret_back(rig: EngineOnFakes) -> None:
    rotation = rig.start()
    creating = rig.drive_until(
        rotation.id, lambda r: r.state is State.CREATING, until=rig.clock.now + H
    )

    def taken_over() -> None:  # another worker takes the rotation while Adobe answers
        with rig.store.engine.begin() as conn:
            conn.execute(
                update(rotations)
                .where(rotations.c.id == creating.id)
                .values(lease_owner="other", fence=rotations.c.fence + 1)
            )

    rig.adobe.faults.arm_action("add", "after", taken_over)
    rig.clock.now = max(rig.clock.now, creating.next_attempt_at or rig.clock.now)
    claim = rig.engine.claim(creating.id)
    assert claim is not None
    rig.engine.step(claim)  # LeaseLost: the step stops

    assert list(rig.adobe.secrets) == [rig.first.uuid], "an orphan was left at Adobe"
    assert rig.aws.holder(PENDING) is None


# --- the re-check right before the delete ------------------------------------------------------


def test_a_use_seen_at_the_recheck_before_the_delete_sends_the_rotation_back_to_draining(
    rig: EngineOnFakes,
) -> None:
    draining = rig.to_draining()
    old = rig.first
    retiring = rig.drive_until(
        draining.id, lambda r: r.state is State.RETIRING, until=rig.clock.now + 30 * H
    )
    assert retiring.state is State.RETIRING
    assert rig.adobe.mint(old.value)  # a consumer turns up between the judgement and the delete

    after = rig.step_once(draining.id)

    assert after.state is State.DRAINING
    assert old.uuid in rig.adobe.secrets
    assert after.evidence is not None and after.evidence.old_last_used_at == rig.clock.now
    kinds = [e.kind for e in rig.store.events(rotation_id=draining.id)]
    assert "recheck_saw_use" in kinds


def test_a_stale_answer_right_before_the_delete_is_not_the_one_it_rests_on(
    rig: EngineOnFakes,
) -> None:
    draining = rig.to_draining()
    promoted = draining.promoted_at
    assert promoted is not None
    old = rig.first
    rig.clock.now = promoted + 2 * H
    assert rig.adobe.mint(old.value)  # seen by the next poll
    retiring = rig.drive_until(
        draining.id, lambda r: r.state is State.RETIRING, until=rig.clock.now + 40 * H
    )
    assert retiring.state is State.RETIRING
    # the re-check's answer went back to null
    rig.adobe.consistency.distort_usages(mode="null", client_id=CLIENT_ID, uuid=old.uuid, count=1)

    after = rig.step_once(draining.id)

    assert after.state is State.DRAINING and old.uuid in rig.adobe.secrets
    final = rig.drive_until(draining.id, lambda r: False, until=rig.clock.now + 2 * H)
    assert final.state is State.COMPLETED and old.uuid not in rig.adobe.secrets
