"""The engine's view of the outside world. Adapters implement these; tests may fake them.

Secret values cross these interfaces only as plain `str` arguments and return values held
in memory; no port persists or logs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rotator.domain.model import AdobeSecret, Rotation, Trigger
from rotator.domain.outlook import Facts

if TYPE_CHECKING:
    from rotator.audit.chain import Checkpoint
    from rotator.audit.trail import Event
    from rotator.audit.verify import Verification


@dataclass(frozen=True)
class CredentialRef:
    """How Adobe knows a credential. `name` is ours, for messages."""

    name: str
    org_id: str
    credential_id: str
    client_id: str


@dataclass(frozen=True)
class NewSecret:
    """Adobe's answer to an add: the only moment the plaintext exists outside AWS."""

    uuid: str
    created_at: datetime
    value: str

    def __repr__(self) -> str:  # never let a traceback or a debug print show the value
        return f"NewSecret(uuid={self.uuid!r}, created_at={self.created_at!r}, value=<redacted>)"


class AdobeApi(Protocol):
    """Adobe IMS + I/O Management API for one org, with management tokens cached inside.

    Every call that needs a management token takes the client secret to mint it with;
    the adapter caches tokens per (client id, secret) until shortly before expiry.
    """

    def list_secrets(self, cred: CredentialRef, secret: str) -> list[AdobeSecret]: ...

    def add_secret(self, cred: CredentialRef, secret: str) -> NewSecret: ...

    def delete_secret(self, cred: CredentialRef, secret: str, uuid: str) -> None:
        """Delete by uuid; an uuid that is already gone counts as deleted."""

    def verify(self, cred: CredentialRef, secret: str) -> None:
        """Mint a token with `secret`; raise InvalidClient if Adobe refuses it."""

    def invalidate_tokens(self, cred: CredentialRef, secret: str) -> int:
        """Invalidate every token this process minted with `secret`; returns how many."""


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    stages: tuple[str, ...]
    value: dict[str, Any]

    def __repr__(self) -> str:
        return f"SecretVersion({self.version_id!r}, stages={self.stages!r}, value=<redacted>)"


class SecretsStore(Protocol):
    """AWS Secrets Manager, used through the staging-label protocol and never RotateSecret."""

    def read(
        self, secret_id: str, *, stage: str = "AWSCURRENT", version_id: str | None = None
    ) -> SecretVersion | None:
        """The version holding `stage` (or `version_id`); None if there is none."""

    def stages(self, secret_id: str) -> dict[str, tuple[str, ...]]:
        """version id -> its staging labels, for every version that has a label."""

    def put_pending(self, secret_id: str, token: str, value: dict[str, Any]) -> None: ...

    def move_stage(
        self, secret_id: str, stage: str, *, to_version: str | None, from_version: str | None
    ) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


# --- the rotation store ------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """Proof of ownership of one rotation: present it with every write."""

    rotation: Rotation
    owner: str
    fence: int


class AlreadyActive(Exception):
    """A credential already has an unfinished rotation (I3): here it is."""

    def __init__(self, rotation: Rotation) -> None:
        super().__init__(f"credential {rotation.credential!r} already has rotation {rotation.id}")
        self.rotation = rotation


class CredentialFacts(Protocol):
    """What the engine reads of a credential's row: its binding (I12) and last rotation."""

    @property
    def current_uuid(self) -> str | None: ...

    @property
    def current_version(self) -> str | None: ...

    @property
    def last_rotated_at(self) -> datetime | None: ...


class LeaseHolder(Protocol):
    """Who holds a rotation's lease now, if anyone."""

    @property
    def owner(self) -> str | None: ...


class LeaseStore(Protocol):
    """Keeping and letting go of a claimed rotation's lease (the heartbeat's view)."""

    def renew(self, claim: Claim, lease: timedelta) -> None:
        """Extend the lease under the fence; LeaseLost when another worker holds it."""

    def release(self, claim: Claim) -> None:
        """Let the lease go (under the fence), so any worker may claim the rotation."""


class RotationStore(LeaseStore, Protocol):
    """The engine's view of the state store: exactly the calls the engine makes.

    Every write is one transaction that appends one audit event (I6); writes by a lease
    owner are fenced (a stale claim raises LeaseLost and writes nothing).
    """

    def now(self) -> datetime:
        """The one clock (I10): the database's where replicas meet."""

    def sync_credentials(self, configured: dict[str, str]) -> None:
        """Make sure each configured credential (name -> config hash) has a row."""

    def start(
        self,
        credential: str,
        trigger: Trigger,
        *,
        actor: str,
        reason: str = ...,
        detail: dict[str, Any] | None = ...,
    ) -> Rotation:
        """Insert a planned rotation; AlreadyActive when one is unfinished (I3)."""

    def request_emergency(self, credential: str, *, actor: str, reason: str) -> Rotation:
        """Start an emergency, or flag the running rotation for one (it is abandoned)."""

    def claim(
        self,
        owner: str,
        lease: timedelta,
        *,
        rotation_id: int | None = ...,
        limit: int = ...,
        due_only: bool = ...,
    ) -> list[Claim]:
        """Take the lease of due, unowned rotations (or of one given rotation)."""

    def save(
        self,
        claim: Claim,
        new: Rotation,
        *,
        kind: str,
        actor: str,
        detail: dict[str, Any] | None = ...,
        keep_lease: timedelta | None = ...,
        credential_update: dict[str, Any] | None = ...,
    ) -> Claim:
        """Write `new` under the lease with its audit event (and credential columns)."""

    def get(self, rotation_id: int) -> Rotation: ...

    def active(self, credential: str) -> Rotation | None:
        """The credential's unfinished rotation, if any."""

    def recent(self, credential: str | None = ..., limit: int = ...) -> list[Rotation]:
        """Rotations, newest first."""

    def lease(self, rotation_id: int) -> LeaseHolder: ...

    def credential_rows(self) -> Mapping[str, CredentialFacts]: ...

    def adopt(self, name: str, uuid: str, version: str, actor: str) -> bool:
        """Bind AWSCURRENT's version to an Adobe uuid (an operator said so); False: no change."""

    def record_survey(self, name: str, *, seen_rotated_at: datetime | None, **values: Any) -> bool:
        """Write what a survey learnt, unless a rotation started or ended meanwhile."""


# --- the read service (rotator.observe.insights) -----------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The state database's credentials and unfinished rotations, read together."""

    now: datetime  # the store's clock (I10) at the read
    facts: Mapping[str, Facts]  # by credential name, in name order
    unfinished: Mapping[str, Rotation]  # by credential (one at most each, I3)
    lease_owners: Mapping[str, str]  # credential -> the owner whose lease is still live


class OutboxBacklog(Protocol):
    """The webhook notices not yet delivered."""

    @property
    def pending(self) -> int: ...
    @property
    def oldest_pending_at(self) -> datetime | None: ...
    @property
    def expired(self) -> int: ...


class InsightsReader(Protocol):
    """What the read service asks of the state database; reads only, never a write."""

    def snapshot(self) -> Snapshot: ...

    def ended(self) -> dict[tuple[str, str], int]:
        """(end state, trigger) -> rotations that ever reached it."""

    def backlog(self) -> OutboxBacklog: ...

    def events(self) -> Sequence[Event]:
        """The whole audit trail, oldest first."""

    def verify(self, checkpoint: Checkpoint | None) -> Verification: ...


# --- the webhook outbox (rotator.observe.notify sends what it holds) -----------------------


class ExpiredNotice(Protocol):
    """An outbox row past its expiry: which event, for whom, never delivered."""

    @property
    def event_id(self) -> int: ...
    @property
    def receiver(self) -> str: ...
    @property
    def credential(self) -> str: ...
    @property
    def kind(self) -> str: ...


class Notice(ExpiredNotice, Protocol):
    """One claimed outbox row: what to send, to whom, and how many tries it took so far."""

    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def attempts(self) -> int: ...


class NoticeOutbox(Protocol):
    """The senders' side of the durable outbox (rotator/adapters/db/outbox.py)."""

    def expire(self, expiry: timedelta) -> Sequence[ExpiredNotice]: ...

    def claim(
        self, owner: str, receivers: Iterable[str], *, hold: timedelta, limit: int = 20
    ) -> Sequence[Notice]: ...

    def delivered(self, delivery: Any) -> None: ...

    def failed(self, delivery: Any, owner: str, *, error: str, retry_in: timedelta) -> None: ...

    def release(self, delivery: Any, owner: str, *, retry_in: timedelta) -> None: ...
