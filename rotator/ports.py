"""The engine's view of the outside world. Adapters implement these; tests may fake them.

Secret values cross these interfaces only as plain `str` arguments and return values held
in memory; no port persists or logs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rotator.domain.model import AdobeSecret, Rotation
from rotator.domain.outlook import Facts

if TYPE_CHECKING:
    from rotator.audit.chain import Checkpoint, Verification
    from rotator.audit.trail import Event


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


class Notice(Protocol):
    """One claimed outbox row: what to send, to whom, and how many tries it took so far."""

    @property
    def event_id(self) -> int: ...
    @property
    def receiver(self) -> str: ...
    @property
    def credential(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def attempts(self) -> int: ...


class ExpiredNotice(Protocol):
    @property
    def event_id(self) -> int: ...
    @property
    def receiver(self) -> str: ...
    @property
    def credential(self) -> str: ...
    @property
    def kind(self) -> str: ...


class NoticeOutbox(Protocol):
    """The senders' side of the durable outbox (rotator/adapters/db/outbox.py)."""

    def expire(self, expiry: timedelta) -> Sequence[ExpiredNotice]: ...

    def claim(
        self, owner: str, receivers: Iterable[str], *, hold: timedelta, limit: int = 20
    ) -> Sequence[Notice]: ...

    def delivered(self, delivery: Any) -> None: ...

    def failed(self, delivery: Any, owner: str, *, error: str, retry_in: timedelta) -> None: ...

    def release(self, delivery: Any, owner: str, *, retry_in: timedelta) -> None: ...
