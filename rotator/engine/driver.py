"""The driver: claim a rotation, run one step through the ports, save under the fence.

The state is saved only after the step's effects took hold; the steps themselves live in
`steps/`, the operator's requests in `operator.py`, the one delete in `deletes.py`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from rotator.config import Settings
from rotator.domain import machine
from rotator.domain.errors import ConfigError, LeaseLost, NeedsAttention, StepError
from rotator.domain.events import EventKind
from rotator.domain.model import AdobeSecret, CredentialUpdate, Rotation, State, Trigger
from rotator.engine import operator, survey
from rotator.engine.context import Ports, StepContext, config_hash
from rotator.engine.lease import Heartbeat, Progress, default_owner
from rotator.engine.outcome import Outcome, failed
from rotator.engine.steps import STEPS
from rotator.ports import AdobeApi, AlreadyActive, Claim, RotationStore, SecretsStore

log = structlog.get_logger("rotator.engine")

MAX_STEPS_PER_DRIVE = 50  # a whole rotation is about ten; more means a loop
UNCONFIGURED_RECHECK = timedelta(hours=1)


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: RotationStore,
        adobe: AdobeApi,
        aws: SecretsStore,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.adobe = adobe
        self.aws = aws
        self.owner = owner or default_owner()
        # One clock (I10): the store's (PostgreSQL's now() where replicas meet), the same
        # clock that stamps state_since, leases and events, so a host whose clock is off
        # cannot cut a verify timeout or a quiet period short.
        self.clock = clock or store.now
        self.lease = settings.daemon.lease
        self.stopping = threading.Event()  # set: finish the current step, take no new one
        # New secret values by rotation id, in memory only, from creation until promotion,
        # so verification needs no second read of AWSPENDING.
        self.fresh: dict[int, str] = {}
        self.step_observer: Any = None  # a prometheus Histogram with a `state` label, or None
        # Leases follow progress (lease.py): a step past step_timeout loses its lease.
        self.step_timeout = settings.daemon.step_limit
        self.progress = Progress()
        self._local = threading.local()  # the heartbeat of the drive on this thread

    # --- requests ------------------------------------------------------------------------

    def request(self, name: str, trigger: Trigger, *, actor: str, reason: str = "") -> Rotation:
        """Start a rotation, or return the unfinished one; an emergency pre-empts a normal one."""
        self.settings.credential(name)  # unknown name: ConfigError before any write
        self.store.sync_credentials({name: config_hash(self.settings.credential(name))})
        if trigger is Trigger.EMERGENCY:
            rotation = self.store.request_emergency(name, actor=actor, reason=reason)
            if not rotation.emergency:
                return rotation  # only a request on a running rotation: nothing started yet
        else:
            try:
                rotation = self.store.start(name, trigger, actor=actor, reason=reason)
            except AlreadyActive as exc:
                return exc.rotation
        return rotation

    def sync(self) -> None:
        """Every configured credential has a row, and the store knows its config hash."""
        survey.record_configuration(self.settings, self.ports())

    def ports(self) -> Ports:
        """The ports a step reaches the outside through (read now: tests may swap one)."""
        return Ports(self.adobe, self.aws, self.store, self.clock, self.fresh)

    # --- driving -------------------------------------------------------------------------

    def claim(self, rotation_id: int, *, due_only: bool = False) -> Claim | None:
        """Take one rotation's lease; `due_only` leaves it be until its next attempt is due."""
        claims = self.store.claim(
            self.owner, self.lease, rotation_id=rotation_id, due_only=due_only
        )
        return claims[0] if claims else None

    def run_due(self, limit: int = 1) -> int:
        """Claim up to `limit` due rotations and drive each until it waits or ends.

        A rotation abandoned for an emergency hands over to that emergency here and now:
        the claim order would pick it next anyway, but no worker should wait for it.
        """
        done = 0
        for claim in self.store.claim(self.owner, self.lease, limit=limit):
            last = self.drive(claim)
            done += 1
            if last.state is State.ABANDONED:
                follow = operator.successor(self.store, last)
                if follow is not None:
                    taken = self.claim(follow.id)
                    if taken is not None:
                        self.drive(taken)
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
        beat = Heartbeat(
            self.store, claim, self.lease, step_timeout=self.step_timeout, progress=self.progress
        )
        with beat:
            for _ in range(MAX_STEPS_PER_DRIVE):
                if current is None:
                    break
                if beat.expired.is_set():  # past step_timeout: its lease was let go
                    current = None
                    break
                if self.stopping.is_set() or (stop is not None and stop(current.rotation)):
                    self.store.release(current)
                    break
                beat.step()
                self._local.beat = beat
                try:
                    current = self.step(current)
                finally:
                    self._local.beat = None
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
                step = StepContext(self.settings, self.ports(), rotation, claim, self._prove_lease)
            except ConfigError as exc:  # the credential left the config: park it, loudly
                log.error("rotation of an unconfigured credential", error=str(exc))
                parked = Outcome.wait(
                    rotation.state,
                    EventKind.UNCONFIGURED,
                    until=now + UNCONFIGURED_RECHECK,
                    changes={"last_error": f"credential not in the configuration: {exc}"},
                )
                return self._save(claim, parked, now)
            started = time.monotonic()
            try:
                outcome = self._decide(step, rotation, now)
            except NeedsAttention as exc:
                asked = rotation.state is State.NEEDS_ATTENTION
                outcome = Outcome.attention(
                    str(exc),
                    resume=(rotation.resume_state if asked else None) or rotation.state,
                    wait_until=now + step.policy.poll_interval,
                )
            except StepError as exc:
                located = exc.located(credential=rotation.credential, step=rotation.state.value)
                outcome = failed(rotation, located, now)
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

    def _decide(self, step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
        # Operator requests first (operator.py says which wins). Whatever ends a rotation
        # with an emergency waiting, the store starts the emergency in the same transaction.
        request = operator.request_for(rotation)
        if request == "abandon":
            return operator.abandon(rotation, now)
        if request == "cancel":
            return operator.cancel(step, rotation, now)
        if rotation.state is State.NEEDS_ATTENTION:
            return operator.retry_attention(step, rotation, now)
        return STEPS[rotation.state](step, rotation, now)

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
        update = outcome.credential_update
        if outcome.state is State.FAILED:
            update = (update or CredentialUpdate()).failed_at(now)
        self.check_lease()
        try:
            saved = self.store.save(
                claim,
                new,
                kind=outcome.kind.value,
                actor=self.owner,
                detail=dict(outcome.detail),
                keep_lease=keep,
                credential_update=update.columns() if update is not None else None,
            )
        except LeaseLost:
            raise
        except Exception:
            beat = getattr(self._local, "beat", None)
            self.progress.failed(beat.step_started if beat is not None else None)
            raise
        self.progress.saved()
        log.info(
            "rotation step",
            kind=outcome.kind.value,
            from_state=old.state.value,
            to_state=outcome.state.value,
            **{k: v for k, v in outcome.detail.items() if isinstance(v, str | int | bool | None)},
        )
        # The save wrote this outcome's notices to the outbox (rotator/observe/notify.py).
        return None if keep is None else saved

    def _prove_lease(self, claim: Claim) -> None:
        """The guard a step calls before a write that cannot be taken back (StepContext)."""
        self.check_lease()  # a step past step_timeout has let its lease go
        self.store.renew(claim, self.lease)

    def check_lease(self) -> None:
        """LeaseLost when this thread's step ran past step_timeout: it abandons, unwritten."""
        beat = getattr(self._local, "beat", None)
        if beat is not None and beat.expired.is_set():
            raise LeaseLost("the step ran past daemon.step_timeout; its lease was let go")

    # --- reading -------------------------------------------------------------------------

    def adobe_secrets(self, name: str) -> list[AdobeSecret]:
        """Adobe's list for a credential, with a token minted from AWSCURRENT (read-only)."""
        return survey.adobe_secrets(self.settings, self.ports(), name)

    def adopt(self, name: str, uuid: str, *, actor: str) -> bool:
        """Record which Adobe uuid AWSCURRENT holds, for as long as AWSCURRENT stays put
        (False: already recorded, nothing written)."""
        return survey.adopt(self.settings, self.ports(), name, uuid, actor=actor)

    def survey(self, name: str) -> None:
        """Learn the current uuid and its age, so due-ness can be judged without a rotation."""
        survey.survey(self.settings, self.ports(), name)
