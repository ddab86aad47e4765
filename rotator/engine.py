"""The engine: claim a rotation, run one step's effects through the ports, save under the fence.

Each step reads the world (Adobe's list, AWS's labels) before it writes, so repeating a step
after a crash does nothing twice; the state is saved only after the step's effects took
hold. The decisions themselves live in `rotator.domain.machine`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from rotator.adapters.db.store import AlreadyActive, Claim, Store
from rotator.config import CredentialConfig, Settings
from rotator.domain import machine
from rotator.domain.errors import (
    ConfigError,
    InvalidClient,
    LeaseLost,
    NeedsAttention,
    PermanentError,
    StepError,
)
from rotator.domain.model import AdobeSecret, Evidence, Policy, Rotation, State, Trigger
from rotator.ports import AdobeApi, CredentialRef, SecretsStore, SecretVersion

log = structlog.get_logger("rotator.engine")

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
Listener = Callable[[str, Rotation], None]
MAX_STEPS_PER_DRIVE = 50  # a whole rotation is about ten; more means a loop
UNCONFIGURED_RECHECK = timedelta(hours=1)


def _holder(stages: dict[str, tuple[str, ...]], label: str) -> str | None:
    """The version that carries `label`, if any (AWS keeps each label on one version)."""
    return next((v for v, labels in stages.items() if label in labels), None)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:6]}"


@dataclass
class Outcome:
    """What a step did: the next state, the fields it changed, and whether to go on now."""

    state: State
    changes: dict[str, Any] = field(default_factory=dict)
    kind: str = "transition"
    detail: dict[str, Any] = field(default_factory=dict)
    wait_until: datetime | None = None  # set: release the lease and come back then
    credential_update: dict[str, Any] | None = None


class _Step:
    """Per-step view of one credential: its config and a memo of AWSCURRENT."""

    def __init__(self, engine: Engine, rotation: Rotation, claim: Claim | None = None) -> None:
        self.engine = engine
        self.rotation = rotation
        self.claim = claim
        self.cfg: CredentialConfig = engine.settings.credential(rotation.credential)
        self.ref = CredentialRef(
            self.cfg.name, self.cfg.org_id, self.cfg.credential_id, self.cfg.client_id
        )
        self.policy: Policy = engine.settings.policy(self.cfg)
        self.secret_key = engine.settings.secret_key(self.cfg)
        self.uuid_key = engine.settings.uuid_key(self.cfg)
        self._current: SecretVersion | None = None

    def current(self) -> SecretVersion:
        if self._current is None:
            found = self.engine.aws.read(self.cfg.secret_id, stage=CURRENT)
            if found is None:
                raise PermanentError(
                    f"secret {self.cfg.secret_id!r} has no AWSCURRENT version",
                    step="read AWSCURRENT",
                )
            self._current = found
        return self._current

    def current_secret(self) -> str:
        return self.secret_in(self.current(), "AWSCURRENT")

    def secret_in(self, version: SecretVersion, label: str) -> str:
        value = version.value.get(self.secret_key)
        if not isinstance(value, str) or not value:
            raise PermanentError(
                f"{label} of {self.cfg.secret_id!r} has no string key {self.secret_key!r} "
                f"(keys present: {sorted(version.value)})",
                step=f"read {label}",
            )
        return value

    def current_uuid(self) -> str | None:
        value = self.current().value.get(self.uuid_key)
        return value if isinstance(value, str) and value else None

    def forget_current(self) -> None:
        self._current = None

    def guard(self) -> None:
        """Prove the lease is still ours right before a write that cannot be taken back.

        The fence protects the database, but not Adobe or AWS: a worker that stalled past
        its lease must not move a label or delete a secret after another took over.
        """
        if self.claim is not None:
            self.engine.store.renew(self.claim, self.engine.lease)


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        adobe: AdobeApi,
        aws: SecretsStore,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.adobe = adobe
        self.aws = aws
        self.owner = owner or default_owner()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lease = settings.daemon.lease
        self.listeners = listeners or []
        self.stopping = threading.Event()  # set: finish the current step, take no new one
        # New secret values by rotation id, in memory only, from creation until promotion,
        # so verification needs no second read of AWSPENDING.
        self._fresh: dict[int, str] = {}
        self.step_observer: Any = None  # a prometheus Histogram with a `state` label, or None

    # --- requests ------------------------------------------------------------------------

    def request(self, name: str, trigger: Trigger, *, actor: str, reason: str = "") -> Rotation:
        """Start a rotation, or return the unfinished one; an emergency pre-empts a normal one."""
        self.settings.credential(name)  # unknown name: ConfigError before any write
        self.store.sync_credentials({name: self._config_hash(name)})
        if trigger is Trigger.EMERGENCY:
            rotation = self.store.request_emergency(name, actor=actor, reason=reason)
            if not rotation.emergency:
                return rotation  # only a request on a running rotation: nothing started yet
        else:
            try:
                rotation = self.store.start(name, trigger, actor=actor, reason=reason)
            except AlreadyActive as exc:
                return exc.rotation
        self._emit("started", rotation)
        return rotation

    def _config_hash(self, name: str) -> str:
        cfg = self.settings.credential(name)
        return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()

    def sync(self) -> None:
        self.store.sync_credentials(
            {c.name: self._config_hash(c.name) for c in self.settings.credentials}
        )

    # --- driving -------------------------------------------------------------------------

    def claim(self, rotation_id: int, *, due_only: bool = False) -> Claim | None:
        """Take one rotation's lease; `due_only` leaves it be until its next attempt is due."""
        claims = self.store.claim(
            self.owner, self.lease, rotation_id=rotation_id, due_only=due_only
        )
        return claims[0] if claims else None

    def run_due(self, limit: int = 1) -> int:
        """Claim up to `limit` due rotations and drive each until it waits or ends."""
        done = 0
        for claim in self.store.claim(self.owner, self.lease, limit=limit):
            self.drive(claim)
            done += 1
        return done

    def drive(
        self,
        claim: Claim,
        *,
        stop: Callable[[Rotation], bool] | None = None,
        on_step: Callable[[Rotation], None] | None = None,
    ) -> Rotation:
        """Step a claimed rotation while it has work now; release the lease when it waits."""
        current: Claim | None = claim
        last = claim.rotation
        with _Heartbeat(self.store, claim, self.lease):
            for _ in range(MAX_STEPS_PER_DRIVE):
                if current is None:
                    break
                if self.stopping.is_set() or (stop is not None and stop(current.rotation)):
                    self.store.release(current)
                    break
                current = self.step(current)
                if current is not None:
                    last = current.rotation
                    if on_step:
                        on_step(last)
            else:  # a rotation that never waits is a bug; do not spin on it
                if current is not None:
                    log.error(
                        "rotation did not settle; releasing it",
                        credential=current.rotation.credential,
                        rotation_id=current.rotation.id,
                        steps=MAX_STEPS_PER_DRIVE,
                    )
                    self.store.release(current)
                    current = None
        if current is None:
            last = self.store.get(claim.rotation.id)
            if on_step:
                on_step(last)
        return last

    def step(self, claim: Claim) -> Claim | None:
        """Run one step; return the claim if there is more to do at once, else None."""
        rotation = claim.rotation
        structlog.contextvars.bind_contextvars(
            credential=rotation.credential, rotation_id=rotation.id
        )
        try:
            now = self.clock()
            try:
                step = _Step(self, rotation, claim)
            except ConfigError as exc:  # the credential left the config: park it, loudly
                log.error("rotation of an unconfigured credential", error=str(exc))
                parked = Outcome(
                    rotation.state,
                    kind="unconfigured",
                    changes={"last_error": f"credential not in the configuration: {exc}"},
                    wait_until=now + UNCONFIGURED_RECHECK,
                )
                return self._save(claim, parked, now)
            started = time.monotonic()
            try:
                outcome = self._decide(step, rotation, now)
            except NeedsAttention as exc:
                outcome = Outcome(
                    State.NEEDS_ATTENTION,
                    kind="needs_attention",
                    changes={
                        "last_error": str(exc),
                        "resume_state": rotation.resume_state or rotation.state,
                    },
                    detail={"why": str(exc)},
                    wait_until=now + step.policy.poll_interval,
                )
            except StepError as exc:
                outcome = self._failure(
                    rotation,
                    exc.located(credential=rotation.credential, step=rotation.state.value),
                    now,
                )
            if self.step_observer is not None:
                self.step_observer.labels(state=rotation.state.value).observe(
                    time.monotonic() - started
                )
            return self._save(claim, outcome, now)
        except LeaseLost as exc:
            log.warning("lease lost; stopping", error=str(exc))
            return None
        finally:
            structlog.contextvars.unbind_contextvars("credential", "rotation_id")

    def _decide(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        # A request is acted on once; the rollback or retirement it starts then runs as usual.
        # An emergency outranks a cancel. Whatever ends a rotation with an emergency waiting,
        # the store starts the emergency rotation in the same transaction.
        handling = rotation.state is State.ROLLING_BACK or rotation.detail.get("preempted")
        if rotation.emergency_requested and not rotation.emergency and not handling:
            return self._preempt(rotation, now)
        # A cancel that finds the old secret already being retired is too late: retiring
        # finishes (stopping halfway would leave an emergency's leaked secret alive).
        if rotation.cancel_requested and not handling and rotation.state is not State.RETIRING:
            return self._cancel(step, rotation, now)
        state = rotation.state
        if state is State.NEEDS_ATTENTION:
            return self._retry_attention(step, rotation, now)
        handler = self._handlers()[state]
        return handler(step, rotation, now)

    def _handlers(self) -> dict[State, Callable[[_Step, Rotation, datetime], Outcome]]:
        return {
            State.PLANNED: self._plan,
            State.CREATING: self._create,
            State.STAGED: self._verify,
            State.VERIFIED: self._promote,
            State.PROMOTED: self._after_promotion,
            State.DRAINING: self._drain,
            State.RETIRING: self._retire,
            State.ROLLING_BACK: self._roll_back,
        }

    def _retry_attention(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        """Try the step that needed a person again: the cause may have gone away."""
        resume = rotation.resume_state or State.PLANNED
        outcome = self._handlers()[resume](step, rotation.evolve(state=resume), now)
        if outcome.state is resume and outcome.wait_until is not None:
            outcome.state = State.NEEDS_ATTENTION  # still blocked: keep asking, keep watching
            outcome.changes.setdefault("resume_state", resume)
        else:
            outcome.changes.setdefault("resume_state", None)
            if outcome.state is not State.NEEDS_ATTENTION:
                outcome.changes.setdefault("last_error", None)
        return outcome

    def _failure(self, rotation: Rotation, error: StepError, now: datetime) -> Outcome:
        failure = machine.on_step_error(rotation, error, now)
        log.warning(
            "step failed",
            step=rotation.state.value,
            error=str(error),
            transient=error.transient,
            next_state=failure.state.value,
        )
        changes: dict[str, Any] = {
            "last_error": failure.message,
            "resume_state": failure.resume_state,
        }
        if failure.state is rotation.state:
            changes["attempts"] = rotation.attempts + 1
        kind = (
            "retry"
            if error.transient
            else ("needs_attention" if failure.state is State.NEEDS_ATTENTION else "error")
        )
        return Outcome(
            failure.state,
            changes=changes,
            kind=kind,
            detail={"error": failure.message},
            wait_until=failure.next_attempt_at,
        )

    # --- saving --------------------------------------------------------------------------

    def _save(self, claim: Claim, outcome: Outcome, now: datetime) -> Claim | None:
        old = claim.rotation
        machine.check_transition(old.state, outcome.state)
        changes = dict(outcome.changes)
        if outcome.state is not old.state:
            changes.setdefault("attempts", 0)
        if outcome.state in {State.FAILED, State.CANCELLED} or (outcome.state is State.COMPLETED):
            changes.setdefault("resume_state", None)
        new = old.evolve(state=outcome.state, next_attempt_at=outcome.wait_until or now, **changes)
        keep = None if outcome.wait_until or outcome.state.terminal else self.lease
        credential_update = outcome.credential_update
        if outcome.state is State.FAILED:
            credential_update = {**(credential_update or {}), "last_failed_at": now}
        saved = self.store.save(
            claim,
            new,
            kind=outcome.kind,
            actor=self.owner,
            detail=outcome.detail,
            keep_lease=keep,
            credential_update=credential_update,
        )
        log.info(
            "rotation step",
            kind=outcome.kind,
            from_state=old.state.value,
            to_state=outcome.state.value,
            **{k: v for k, v in outcome.detail.items() if isinstance(v, str | int | bool | None)},
        )
        entered_attention = outcome.kind == "needs_attention" and (
            old.state is not State.NEEDS_ATTENTION or old.last_error != saved.rotation.last_error
        )
        if outcome.state is not old.state or entered_attention:
            if outcome.state.terminal or outcome.state is State.NEEDS_ATTENTION:
                self._emit(outcome.state.value, saved.rotation)
            else:
                self._emit("transition", saved.rotation)
        return None if keep is None else saved

    def _emit(self, kind: str, rotation: Rotation) -> None:
        for listener in self.listeners:
            try:
                listener(kind, rotation)
            except Exception as exc:  # a broken notifier must not break a rotation
                log.warning("listener failed", listener=repr(listener), error=str(exc))

    # --- the steps -----------------------------------------------------------------------

    def _plan(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        current = step.current()
        secret = step.current_secret()
        listed = self.adobe.list_secrets(step.ref, secret)
        old_uuid = step.current_uuid() or self._known_uuid(step, listed, secret)
        uuids = {s.uuid for s in listed}
        if old_uuid not in uuids:
            raise NeedsAttention(
                f"AWSCURRENT of {step.cfg.secret_id!r} records uuid {old_uuid}, which Adobe does "
                f"not list for credential {step.cfg.credential_id}; check the configuration, or "
                f"run `rotator adopt {step.cfg.name} --uuid <uuid>`"
            )
        verdict = machine.judge_strays(
            listed, old_uuid, step.policy, now, emergency=rotation.emergency
        )
        if verdict.attention:
            raise NeedsAttention(verdict.attention)
        for stray in verdict.delete:
            self._delete(step, secret, stray)
        return Outcome(
            State.CREATING,
            kind="planned",
            changes={
                "old_uuid": old_uuid,
                "known_uuids": tuple(sorted(uuids - set(verdict.delete))),
                "request_token": uuidlib.uuid4().hex,
                "previous_version": current.version_id,
            },
            detail={"old_uuid": old_uuid, "strays_deleted": list(verdict.delete)},
        )

    def _known_uuid(self, step: _Step, listed: list[AdobeSecret], secret: str) -> str:
        """Bootstrap: which Adobe uuid is AWSCURRENT's value, when AWS does not say."""
        row = self.store.credential_rows().get(step.cfg.name)
        if row and row.current_uuid and row.current_version == step.current().version_id:
            return row.current_uuid  # adopted (or promoted) for this very AWSCURRENT version
        if len(listed) == 1:
            return listed[0].uuid
        before = {s.uuid: s.last_used_at for s in listed}
        self.adobe.verify(step.ref, secret)  # a use of the current secret moves its last_used_at
        moved = [
            s.uuid
            for s in self.adobe.list_secrets(step.ref, secret)
            if s.uuid in before and s.last_used_at != before[s.uuid]
        ]
        if len(moved) == 1:
            return moved[0]
        raise NeedsAttention(
            f"cannot tell which of Adobe's secrets {sorted(before)} AWSCURRENT holds "
            f"(AWS records no {step.uuid_key!r} and a test token moved {len(moved)} of them); "
            f"run `rotator adopt {step.cfg.name} --uuid <uuid>`"
        )

    def _create(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        secret = step.current_secret()
        listed = self.adobe.list_secrets(step.ref, secret)
        uuids = {s.uuid for s in listed}
        token = rotation.request_token
        assert token is not None, "planned persists the request token before any write"
        pending = self.aws.read(step.cfg.secret_id, version_id=token)
        if pending is not None:
            staged_uuid = pending.value.get(step.uuid_key)
            if staged_uuid in uuids:  # the put landed before a crash: adopt it
                return Outcome(
                    State.STAGED,
                    kind="staged",
                    changes={"new_uuid": staged_uuid},
                    detail={"new_uuid": staged_uuid, "resumed": True},
                )
            # Our version holds a secret Adobe no longer has; a version is immutable, so the
            # next attempt needs a fresh token (persisted before it is used).
            return Outcome(
                State.CREATING,
                kind="token_renewed",
                changes={"request_token": uuidlib.uuid4().hex},
                detail={"stale_uuid": str(staged_uuid)},
            )
        orphans = machine.find_orphans(listed, rotation.known_uuids, adopted=None)
        for orphan in orphans:
            self._delete(step, secret, orphan)
        step.guard()
        created = self.adobe.add_secret(step.ref, secret)
        value = {
            **step.current().value,
            step.secret_key: created.value,
            step.uuid_key: created.uuid,
        }
        try:
            step.guard()
            self.aws.put_pending(step.cfg.secret_id, token, value)
        except StepError:
            # The plaintext exists only in this memory: if AWS did not take it, nobody can
            # ever use it, so give the slot back to Adobe now rather than as an orphan later.
            self._delete(step, secret, created.uuid, quiet=True)
            raise
        self._fresh[rotation.id] = created.value
        return Outcome(
            State.STAGED,
            kind="staged",
            changes={
                "new_uuid": created.uuid,
                "detail": {**rotation.detail, "new_created_at": created.created_at.isoformat()},
            },
            detail={"new_uuid": created.uuid, "orphans_deleted": orphans},
        )

    def _pending_secret(self, step: _Step, rotation: Rotation) -> str | None:
        value = self._fresh.get(rotation.id)
        if value is not None:
            return value
        version = self.aws.read(step.cfg.secret_id, version_id=rotation.request_token)
        return step.secret_in(version, "AWSPENDING") if version else None

    def _verify(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        secret = self._pending_secret(step, rotation)
        if secret is None:
            return Outcome(
                State.ROLLING_BACK,
                kind="error",
                changes={"last_error": "the staged AWS version disappeared"},
                detail={"error": "the staged AWS version disappeared"},
            )
        try:
            self.adobe.verify(step.ref, secret)
        except InvalidClient as exc:
            if machine.verify_gives_up(rotation, now, step.policy.verify_timeout):
                reason = f"Adobe did not accept the new secret within verify_timeout: {exc}"
                return Outcome(
                    State.ROLLING_BACK,
                    kind="verification_failed",
                    changes={"last_error": reason},
                    detail={"error": reason},
                )
            delay = min(
                timedelta(seconds=2 ** min(rotation.attempts, 5)), step.policy.verify_timeout
            )
            return Outcome(
                State.STAGED,
                kind="verify_pending",
                changes={
                    "attempts": rotation.attempts + 1,
                    "last_error": "Adobe does not accept the new secret yet",
                },
                detail={"attempt": rotation.attempts + 1},
                wait_until=now + delay,
            )
        return Outcome(
            State.VERIFIED,
            kind="verified",
            changes={"last_error": None},
            detail={"new_uuid": rotation.new_uuid},
        )

    def _promote(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        secret_id, token = step.cfg.secret_id, rotation.request_token
        assert token is not None, "planned persists the request token"
        stages = self.aws.stages(secret_id)
        holder = _holder(stages, CURRENT)
        if holder != token:
            if holder != rotation.previous_version:
                raise NeedsAttention(
                    f"AWSCURRENT of {secret_id!r} moved to version {holder} during the rotation "
                    f"(expected {rotation.previous_version}); someone else wrote the secret: "
                    f"check it, then `rotator cancel {step.cfg.name}`"
                )
            step.guard()
            self._move(secret_id, CURRENT, to_version=token, from_version=holder)
        if PENDING in stages.get(token, ()):
            step.guard()
            self._move(secret_id, PENDING, to_version=None, from_version=token)
        step.forget_current()
        self._fresh.pop(rotation.id, None)
        created = rotation.detail.get("new_created_at")
        return Outcome(
            State.PROMOTED,
            kind="promoted",
            changes={"promoted_at": now},
            detail={"new_uuid": rotation.new_uuid, "old_uuid": rotation.old_uuid},
            credential_update={
                "current_uuid": rotation.new_uuid,
                "current_version": token,
                "last_rotated_at": now,
                "secret_created_at": datetime.fromisoformat(created) if created else now,
                "last_error": None,
            },
        )

    def _move(
        self, secret_id: str, stage: str, *, to_version: str | None, from_version: str | None
    ) -> None:
        """Move a label, treating "it is already where it should be" as success.

        botocore retries a label move after a timeout or a 5xx; if the first try took
        effect, the retry is refused (its RemoveFromVersionId no longer holds the label).
        """
        try:
            self.aws.move_stage(secret_id, stage, to_version=to_version, from_version=from_version)
        except StepError:
            if _holder(self.aws.stages(secret_id), stage) != to_version:
                raise

    def _after_promotion(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        target = machine.after_promotion(rotation)
        if target is State.RETIRING:
            return Outcome(target, kind="retiring", detail={"retire_all_others": True})
        first_poll = min(
            now + step.policy.poll_interval,
            (rotation.promoted_at or now) + step.policy.quiet_period,
        )
        return Outcome(
            target,
            kind="draining",
            wait_until=first_poll,
            detail={"quiet_period": str(step.policy.quiet_period)},
        )

    def _drain(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        listed = {s.uuid: s for s in self.adobe.list_secrets(step.ref, step.current_secret())}
        old, new = listed.get(rotation.old_uuid or ""), listed.get(rotation.new_uuid or "")
        evidence = Evidence(
            now, old.last_used_at if old else None, new.last_used_at if new else None
        )
        verdict = machine.judge_drain(rotation, evidence, old is not None, step.policy, now)
        detail = {"evidence": evidence.as_dict(), "old_present": old is not None}
        if verdict.retire:
            return Outcome(
                State.RETIRING, kind="quiet", changes={"evidence": evidence}, detail=detail
            )
        if verdict.overdue:
            return Outcome(
                State.NEEDS_ATTENTION,
                kind="needs_attention",
                changes={
                    "evidence": evidence,
                    "last_error": verdict.overdue,
                    "resume_state": State.DRAINING,
                },
                detail={**detail, "why": verdict.overdue},
                wait_until=verdict.next_poll_at,
            )
        return Outcome(
            State.DRAINING,
            kind="poll",
            changes={"evidence": evidence},
            detail=detail,
            wait_until=verdict.next_poll_at,
        )

    def _retire(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        secret = step.current_secret()
        if step.current_uuid() != rotation.new_uuid:
            raise NeedsAttention(
                f"AWSCURRENT of {step.cfg.secret_id!r} no longer holds the new secret "
                f"{rotation.new_uuid}; refusing to delete anything"
            )
        listed = [s.uuid for s in self.adobe.list_secrets(step.ref, secret)]
        emergency = machine.retires_everything_else(rotation)
        doomed = (
            [u for u in listed if u != rotation.new_uuid]
            if emergency
            else ([rotation.old_uuid] if rotation.old_uuid in listed else [])
        )
        invalidated = 0
        if emergency and doomed:
            invalidated = self._invalidate_old_tokens(step, rotation)
        for uuid in doomed:
            self._delete(step, secret, uuid)
        return Outcome(
            State.COMPLETED,
            kind="completed",
            changes={"last_error": None, "detail": {**rotation.detail, "deleted": doomed}},
            detail={"deleted": doomed, "tokens_invalidated": invalidated},
        )

    def _invalidate_old_tokens(self, step: _Step, rotation: Rotation) -> int:
        """Tokens this process minted with the leaked secret die with it (others cannot)."""
        previous = self.aws.read(step.cfg.secret_id, version_id=rotation.previous_version)
        if previous is None:
            return 0
        try:
            old_secret = step.secret_in(previous, "AWSPREVIOUS")
            return self.adobe.invalidate_tokens(step.ref, old_secret)
        except StepError as exc:  # the deletion that follows matters more than this courtesy
            log.warning("token invalidation failed", error=str(exc))
            return 0

    def _roll_back(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        secret_id, token = step.cfg.secret_id, rotation.request_token
        stages = self.aws.stages(secret_id) if token else {}
        if CURRENT in stages.get(token or "", ()):
            # AWSCURRENT already holds the new secret (a move that took effect before a crash
            # or a refused retry): it works, and deleting it would break I2. Finish the
            # promotion instead, as if nothing had gone wrong.
            return self._promote(step, rotation, now)
        secret = step.current_secret()
        keep = {rotation.old_uuid, step.current_uuid(), *rotation.known_uuids}
        listed = [s.uuid for s in self.adobe.list_secrets(step.ref, secret)]
        doomed = [u for u in listed if u not in keep]
        for uuid in doomed:
            self._delete(step, secret, uuid)
        if PENDING in stages.get(token or "", ()):
            step.guard()
            self._move(secret_id, PENDING, to_version=None, from_version=token)
        self._fresh.pop(rotation.id, None)
        cancelled = rotation.cancel_requested or bool(rotation.detail.get("preempted"))
        return Outcome(
            State.CANCELLED if cancelled else State.FAILED,
            kind="rolled_back",
            detail={"deleted": doomed, "reason": rotation.last_error or ""},
        )

    # --- operator requests ---------------------------------------------------------------

    def _cancel(self, step: _Step, rotation: Rotation, now: datetime) -> Outcome:
        """Before promotion: roll back. After: stop draining and leave both secrets valid."""
        effective = (
            rotation.resume_state if rotation.state is State.NEEDS_ATTENTION else (rotation.state)
        )
        if effective is not None and effective.promoted:
            return Outcome(
                State.CANCELLED,
                kind="cancelled",
                detail={"kept": [rotation.old_uuid, rotation.new_uuid]},
            )
        if effective in {None, State.PLANNED}:
            return Outcome(State.CANCELLED, kind="cancelled", detail={})
        return Outcome(
            State.ROLLING_BACK,
            kind="cancel_rollback",
            changes={"last_error": "cancelled by an operator"},
        )

    def _preempt(self, rotation: Rotation, now: datetime) -> Outcome:
        """An emergency arrived for a credential mid-rotation: end this one fast and safely.

        Before promotion it rolls back; after, it retires the old secret at once. The save
        that ends it starts the emergency rotation (see Store.save).
        """
        effective = (
            rotation.resume_state if rotation.state is State.NEEDS_ATTENTION else rotation.state
        )
        detail = {**rotation.detail, "preempted": True}
        if effective is not None and effective.promoted:
            return Outcome(State.RETIRING, kind="preempted", changes={"detail": detail})
        if effective in {None, State.PLANNED}:
            return Outcome(State.CANCELLED, kind="preempted", changes={"detail": detail})
        return Outcome(
            State.ROLLING_BACK,
            kind="preempted",
            changes={"detail": detail, "last_error": "superseded by an emergency"},
        )

    # --- helpers -------------------------------------------------------------------------

    def _delete(self, step: _Step, secret: str, uuid: str, *, quiet: bool = False) -> None:
        """Delete at Adobe; never what AWSCURRENT holds (I2), never on a stale lease."""
        rotation, current = step.rotation, step.current()
        if uuid == step.current_uuid():
            raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT holds it")
        allowed = {rotation.previous_version, rotation.request_token} - {None}
        if allowed and current.version_id not in allowed:
            raise NeedsAttention(
                f"AWSCURRENT of {step.cfg.secret_id!r} is version {current.version_id}, "
                f"which this rotation did not plan for; refusing to delete {uuid}"
            )
        if uuid == rotation.old_uuid and current.version_id != rotation.request_token:
            raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT was not moved off it")
        step.guard()
        try:
            self.adobe.delete_secret(step.ref, secret, uuid)
        except StepError as exc:
            if not quiet:
                raise
            log.warning(
                "could not give back an unpublished secret; it will be found as an orphan",
                uuid=uuid,
                error=str(exc),
            )

    # --- reading -------------------------------------------------------------------------

    def adobe_secrets(self, name: str) -> list[AdobeSecret]:
        """Adobe's list for a credential, with a token minted from AWSCURRENT (read-only)."""
        step = _Step(self, Rotation(0, name, Trigger.MANUAL, State.PLANNED, self.clock()))
        return self.adobe.list_secrets(step.ref, step.current_secret())

    # --- due-ness ------------------------------------------------------------------------

    def adopt(self, name: str, uuid: str, *, actor: str) -> None:
        """Record which Adobe uuid AWSCURRENT holds, for as long as AWSCURRENT stays put."""
        step = _Step(self, Rotation(0, name, Trigger.MANUAL, State.PLANNED, self.clock()))
        listed = [s.uuid for s in self.adobe.list_secrets(step.ref, step.current_secret())]
        if uuid not in listed:
            raise ConfigError(
                f"--uuid: Adobe lists no secret {uuid} for {name} "
                f"(it has: {', '.join(listed) or 'none'})"
            )
        self.sync()
        self.store.adopt(name, uuid, step.current().version_id, actor=actor)

    def survey(self, name: str) -> None:
        """Learn the current uuid and its age, so due-ness can be judged without a rotation."""
        step = _Step(self, Rotation(0, name, Trigger.SCHEDULED, State.PLANNED, self.clock()))
        now = self.clock()
        row = self.store.credential_rows().get(name)
        seen = row.last_rotated_at if row else None
        try:
            secret = step.current_secret()
            listed = self.adobe.list_secrets(step.ref, secret)
            version = step.current().version_id
            adopted = row.current_uuid if row and row.current_version == version else None
            uuid = step.current_uuid() or adopted or (listed[0].uuid if len(listed) == 1 else None)
            found = next((s for s in listed if s.uuid == uuid), None)
            self.store.record_survey(
                name,
                seen_rotated_at=seen,
                surveyed_at=now,
                current_uuid=uuid,
                current_version=version if found else None,
                secret_created_at=found.created_at if found else None,
                last_error=None if found else "current uuid unknown: run `rotator adopt`",
            )
        except StepError as exc:
            self.store.record_survey(
                name, seen_rotated_at=seen, surveyed_at=now, last_error=str(exc)
            )
            log.warning("survey failed", credential=name, error=str(exc))


class _Heartbeat:
    """Renews a lease while a step runs, so a slow Adobe call does not lose it."""

    def __init__(self, store: Store, claim: Claim, lease: timedelta) -> None:
        self.store, self.claim, self.lease = store, claim, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lease-heartbeat")

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.store.renew(self.claim, self.lease)
            except LeaseLost:
                return
            except Exception as exc:  # the database may be briefly away; the save will tell
                log.warning(
                    "lease renewal failed",
                    credential=self.claim.rotation.credential,
                    rotation_id=self.claim.rotation.id,
                    error=str(exc),
                )

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
