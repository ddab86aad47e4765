"""Issue 11's findings, each replayed against the real engine and the real store (SQLite).

Adobe and AWS are small in-memory stand-ins defined here, hostile the way an eventually
consistent Adobe is: a list may leave a secret out, `secret_usages` may go back to null,
a hand edit may leave a stale uuid in the AWS value. The file depends only on interfaces
that existed at 1921d21 (Engine, Store, config.from_mapping, the ports), so each test can
be run against that commit to show it fails there: see the lead's report for which did.
Everything is driven by a fake clock; nothing sleeps.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from rotator import config
from rotator.adapters.db import migrate
from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import rotations
from rotator.domain.errors import InvalidClient, NotFound, PermanentError, TransientError
from rotator.domain.model import AdobeSecret, Rotation, State, Trigger
from rotator.engine import Engine
from rotator.ports import CredentialRef, NewSecret, SecretVersion

NAME, SECRET_ID = "analytics", "adobe/analytics"
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
H = timedelta(hours=1)
M = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class _Secret:
    uuid: str
    value: str
    created_at: datetime
    last_used_at: datetime | None = None  # the truth; what a list reports may differ


class HostileAdobe:
    """One credential at Adobe. Every authenticated call is a use of the secret it carries.

    Hostile switches: `omit[uuid] = n` leaves that uuid out of the next n lists;
    `null_usage[uuid] = n` reports its `secret_usages` as null in the next n lists;
    `refuse_verify = n` refuses the next n test tokens of a new secret (acceptance lag);
    `on_add` runs right after a secret is created (to simulate a takeover).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.secrets: dict[str, _Secret] = {}
        self.deleted: list[str] = []
        self.omit: dict[str, int] = {}
        self.null_usage: dict[str, int] = {}
        self.refuse_verify = 0
        self.added: set[str] = set()
        self.on_add: Callable[[], None] | None = None
        self.current_value: Callable[[], str | None] = lambda: None
        self.deleted_live: list[str] = []  # deletions of the secret AWSCURRENT held (I2)

    def seed(self) -> _Secret:
        now = self.clock()
        made = _Secret(uuidlib.uuid4().hex, "s-" + uuidlib.uuid4().hex, now - 30 * 24 * H)
        self.secrets[made.uuid] = made
        return made

    def use(self, value: str) -> bool:
        """A consumer's token request: True if accepted (and its use is recorded)."""
        found = next((s for s in self.secrets.values() if s.value == value), None)
        if found is None:
            return False
        found.last_used_at = self.clock()
        return True

    def _auth(self, secret: str) -> None:
        if not self.use(secret):
            raise InvalidClient("HTTP 400 (invalid_client): Adobe refused this client id / secret")

    def list_secrets(self, cred: CredentialRef, secret: str) -> list[AdobeSecret]:
        self._auth(secret)
        out = []
        for s in sorted(self.secrets.values(), key=lambda s: s.created_at):
            if self.omit.get(s.uuid, 0) > 0:
                self.omit[s.uuid] -= 1
                continue
            used = s.last_used_at
            if self.null_usage.get(s.uuid, 0) > 0:
                self.null_usage[s.uuid] -= 1
                used = None
            out.append(AdobeSecret(s.uuid, s.created_at, used))
        return out

    def add_secret(self, cred: CredentialRef, secret: str) -> NewSecret:
        self._auth(secret)
        if len(self.secrets) >= 2:
            raise PermanentError("the credential already has two client secrets")
        made = _Secret(uuidlib.uuid4().hex, "s-" + uuidlib.uuid4().hex, self.clock())
        self.secrets[made.uuid] = made
        self.added.add(made.uuid)
        if self.on_add is not None:
            self.on_add()
        return NewSecret(made.uuid, made.created_at, made.value)

    def delete_secret(self, cred: CredentialRef, secret: str, uuid: str) -> None:
        self._auth(secret)
        gone = self.secrets.pop(uuid, None)
        if gone is not None:
            self.deleted.append(uuid)
            if gone.value == self.current_value():
                self.deleted_live.append(uuid)

    def verify(self, cred: CredentialRef, secret: str) -> None:
        if self.refuse_verify > 0 and any(
            s.value == secret and s.uuid in self.added for s in self.secrets.values()
        ):
            self.refuse_verify -= 1
            raise InvalidClient("HTTP 400 (invalid_client): not accepted yet")
        self._auth(secret)

    def invalidate_tokens(self, cred: CredentialRef, secret: str) -> int:
        return 0


@dataclass
class _Version:
    id: str
    value: str
    stages: set[str] = field(default_factory=set)


class StrictAws:
    """One AWS secret with AWS's staging-label rules; `lose_put_answer` makes the next put
    take effect and then fail as if its answer was lost."""

    def __init__(self) -> None:
        self.versions: dict[str, _Version] = {}
        self.lose_put_answer = False

    def seed(self, value: dict[str, Any]) -> str:
        vid = uuidlib.uuid4().hex
        self.versions[vid] = _Version(vid, json.dumps(value), {CURRENT})
        return vid

    def holder(self, stage: str) -> _Version | None:
        return next((v for v in self.versions.values() if stage in v.stages), None)

    def value(self, stage: str) -> dict[str, Any]:
        version = self.holder(stage)
        return dict(json.loads(version.value)) if version else {}

    def hand_edit(self, value: dict[str, Any]) -> None:
        """What the console does: a new version that takes AWSCURRENT."""
        old = self.holder(CURRENT)
        for v in self.versions.values():
            v.stages.discard(PREVIOUS)
        if old is not None:
            old.stages.discard(CURRENT)
            old.stages.add(PREVIOUS)
        vid = uuidlib.uuid4().hex
        self.versions[vid] = _Version(vid, json.dumps(value), {CURRENT})

    def read(
        self, secret_id: str, *, stage: str = CURRENT, version_id: str | None = None
    ) -> SecretVersion | None:
        version = self.versions.get(version_id) if version_id else self.holder(stage)
        if version is None:
            return None
        return SecretVersion(version.id, tuple(sorted(version.stages)), json.loads(version.value))

    def stages(self, secret_id: str) -> dict[str, tuple[str, ...]]:
        return {v.id: tuple(sorted(v.stages)) for v in self.versions.values() if v.stages}

    def put_pending(self, secret_id: str, token: str, value: dict[str, Any]) -> None:
        body = json.dumps(value)
        existing = self.versions.get(token)
        if existing is not None:
            if existing.value != body:
                raise PermanentError("ResourceExistsException: a version with this token exists")
        else:
            for v in self.versions.values():
                v.stages.discard(PENDING)
            self.versions[token] = _Version(token, body, {PENDING})
        if self.lose_put_answer:
            self.lose_put_answer = False
            raise TransientError("injected: the put took effect, its answer was lost")

    def move_stage(
        self, secret_id: str, stage: str, *, to_version: str | None, from_version: str | None
    ) -> None:
        holder = self.holder(stage)
        if from_version is not None and (holder is None or holder.id != from_version):
            raise PermanentError(f"InvalidParameterException: {stage} is not on {from_version}")
        if to_version is None:
            if holder is not None:
                holder.stages.discard(stage)
            return
        target = self.versions.get(to_version)
        if target is None:
            raise NotFound(f"version {to_version} not found")
        if holder is not None and holder.id != to_version:
            holder.stages.discard(stage)
            if stage == CURRENT:
                for v in self.versions.values():
                    v.stages.discard(PREVIOUS)
                holder.stages.add(PREVIOUS)
        target.stages.add(stage)


class Rig:
    """The real engine and store (SQLite file) over the stand-ins, on a fake clock."""

    def __init__(self, tmp_path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = Clock()
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
                        "credential_id": "cred",
                        "client_id": "client",
                        "secret_id": SECRET_ID,
                    }
                ],
            }
        )
        engine = make_engine(url)
        migrate.upgrade(engine)
        self.store = Store(engine, now=clock or self.clock)
        self.adobe = HostileAdobe(self.clock)
        self.aws = StrictAws()
        first = self.adobe.seed()
        self.first = first
        self.aws.seed({"client_secret": first.value, "secret_uuid": first.uuid})
        self.adobe.current_value = lambda: self.aws.value(CURRENT).get("client_secret")
        self.engine = Engine(
            self.settings,
            self.store,
            self.adobe,
            self.aws,
            owner="worker",
            clock=clock or self.clock,
        )

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
            assert self.adobe.use(self.aws.value(CURRENT)["client_secret"]), "I1/I8"
        raise AssertionError("the rotation did not settle")

    def to_draining(self) -> Rotation:
        rotation = self.start()
        return self.drive_until(
            rotation.id, lambda r: r.state is State.DRAINING, until=self.clock.now + H
        )


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


# --- finding 1: one answer without the old uuid ----------------------------------------------


def test_finding1_one_list_answer_without_the_old_secret_does_not_retire_it(rig: Rig) -> None:
    draining = rig.to_draining()
    promoted = draining.promoted_at
    assert promoted is not None
    old = rig.first
    rig.clock.now = promoted + 5 * M
    assert rig.adobe.use(old.value)  # a consumer still on the old secret
    rig.adobe.omit[old.uuid] = 1  # the next list leaves it out

    final = rig.drive_until(draining.id, lambda r: False, until=promoted + 24 * H)

    assert old.uuid in rig.adobe.secrets, "deleted 5 minutes after its last use"
    assert final.state is State.DRAINING


# --- finding 2: evidence is kept --------------------------------------------------------------


@pytest.mark.parametrize("answer", ["null", "older"])
def test_finding2_a_later_null_or_older_usage_answer_does_not_shorten_the_quiet_period(
    rig: Rig, answer: str
) -> None:
    draining = rig.to_draining()
    promoted = draining.promoted_at
    assert promoted is not None
    old = rig.first
    rig.clock.now = promoted + 19 * H
    assert rig.adobe.use(old.value)  # the last use: 19 h after promotion
    last_use = rig.clock.now
    rig.drive_until(draining.id, lambda r: False, until=promoted + 20 * H)  # a poll sees it
    if answer == "null":
        rig.adobe.null_usage[old.uuid] = 10_000  # from now on: secret_usages null
    else:
        rig.adobe.secrets[old.uuid].last_used_at = promoted + H  # an older answer

    rig.drive_until(draining.id, lambda r: False, until=last_use + 25 * H - M)

    assert old.uuid in rig.adobe.secrets, "deleted less than quiet_period after its last use"
    assert not rig.adobe.deleted


# --- finding 3: identity of AWSCURRENT's secret ------------------------------------------------


@pytest.mark.parametrize("surveyed", [False, True])
def test_finding3_an_emergency_never_deletes_the_live_secret_a_stale_uuid_points_away_from(
    rig: Rig, surveyed: bool
) -> None:
    a = rig.first
    b = rig.adobe.seed()  # a second secret, B
    # A hand edit: AWSCURRENT holds B's value beside A's uuid.
    rig.aws.hand_edit({"client_secret": b.value, "secret_uuid": a.uuid})
    if surveyed:  # the daemon's survey reads the claim: it must not turn it into a binding
        rig.engine.sync()
        rig.engine.survey(NAME)

    rotation = rig.start(Trigger.EMERGENCY)
    final = rig.drive_until(
        rotation.id, lambda r: r.state is State.NEEDS_ATTENTION, until=rig.clock.now + 2 * H
    )

    assert not rig.adobe.deleted_live, "deleted the secret AWSCURRENT holds"
    assert b.uuid in rig.adobe.secrets
    assert rig.adobe.use(b.value)
    if final.state is State.NEEDS_ATTENTION:
        assert final.last_error and a.uuid in final.last_error and b.uuid in final.last_error


# --- finding 5: two clocks --------------------------------------------------------------------


def test_finding5_a_host_clock_ahead_of_the_database_does_not_cut_verification_short(
    tmp_path: Path,
) -> None:
    behind = 6 * M  # the database clock (here: the store's) is 6 minutes behind this host

    def database_now() -> datetime:
        return datetime.now(UTC) - behind

    rig = Rig(tmp_path, clock=database_now)
    rig.engine = Engine(rig.settings, rig.store, rig.adobe, rig.aws, owner="worker")
    rig.adobe.clock = lambda: datetime.now(UTC)  # type: ignore[assignment]
    rig.adobe.refuse_verify = 1  # a normal acceptance lag: the first test token is refused
    rotation = rig.start()
    for _ in range(4):  # planned -> creating -> staged -> verify once
        current = rig.rotation(rotation.id)
        if current.state is State.STAGED and current.attempts >= 1:
            break
        rig.step_once(rotation.id)

    after = rig.rotation(rotation.id)
    assert after.state is State.STAGED, f"gave up verification: {after.state} {after.last_error}"


# --- findings 6 and 9: AWSPENDING left behind ---------------------------------------------------


def test_finding6_rollback_removes_awspending_from_an_earlier_tokens_version(rig: Rig) -> None:
    rotation = rig.start()
    rig.step_once(rotation.id)  # planned -> creating (identity, token persisted)
    creating = rig.drive_until(
        rotation.id, lambda r: r.state is State.CREATING, until=rig.clock.now + H
    )
    rig.aws.lose_put_answer = True  # the put takes effect; its answer is lost
    rig.clock.now = creating.next_attempt_at or rig.clock.now
    rig.step_once(rotation.id)  # creating fails transiently; our secret is given back
    rig.clock.now += 10 * M
    renewed = rig.step_once(rotation.id)  # resume: staged version holds a deleted uuid
    assert renewed.request_token != creating.request_token
    rig.store.request_cancel(NAME, actor="test", reason="operator")

    final = rig.drive_until(rotation.id, lambda r: False, until=rig.clock.now + 2 * H)

    assert final.state.terminal
    assert rig.aws.holder(PENDING) is None, "AWSPENDING left with no rotation running"
    assert rig.aws.value(CURRENT)["client_secret"] == rig.first.value
    assert list(rig.adobe.secrets) == [rig.first.uuid]


# --- finding 7: a lease lost right after the add --------------------------------------------------


def test_finding7_a_lease_lost_after_the_add_gives_the_new_secret_back(rig: Rig) -> None:
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

    rig.adobe.on_add = taken_over
    rig.clock.now = max(rig.clock.now, creating.next_attempt_at or rig.clock.now)
    claim = rig.engine.claim(creating.id)
    assert claim is not None
    rig.engine.step(claim)  # LeaseLost: the step stops

    assert list(rig.adobe.secrets) == [rig.first.uuid], "an orphan was left at Adobe"
    assert rig.aws.holder(PENDING) is None


# --- the re-check right before the delete ------------------------------------------------------


def test_a_use_seen_at_the_recheck_before_the_delete_sends_the_rotation_back_to_draining(
    rig: Rig,
) -> None:
    draining = rig.to_draining()
    old = rig.first
    retiring = rig.drive_until(
        draining.id, lambda r: r.state is State.RETIRING, until=rig.clock.now + 30 * H
    )
    assert retiring.state is State.RETIRING
    assert rig.adobe.use(old.value)  # a consumer turns up between the judgement and the delete

    after = rig.step_once(draining.id)

    assert after.state is State.DRAINING
    assert old.uuid in rig.adobe.secrets
    assert after.evidence is not None and after.evidence.old_last_used_at == rig.clock.now
    kinds = [e.kind for e in rig.store.events(rotation_id=draining.id)]
    assert "recheck_saw_use" in kinds


def test_a_stale_answer_right_before_the_delete_is_not_the_one_it_rests_on(rig: Rig) -> None:
    draining = rig.to_draining()
    promoted = draining.promoted_at
    assert promoted is not None
    old = rig.first
    rig.clock.now = promoted + 2 * H
    assert rig.adobe.use(old.value)  # seen by the next poll
    retiring = rig.drive_until(
        draining.id, lambda r: r.state is State.RETIRING, until=rig.clock.now + 40 * H
    )
    assert retiring.state is State.RETIRING
    rig.adobe.null_usage[old.uuid] = 1  # the re-check's answer went back to null

    after = rig.step_once(draining.id)

    assert after.state is State.DRAINING and old.uuid in rig.adobe.secrets
    final = rig.drive_until(draining.id, lambda r: False, until=rig.clock.now + 2 * H)
    assert final.state is State.COMPLETED and old.uuid not in rig.adobe.secrets
