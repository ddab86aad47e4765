"""The engine's view of the outside world. Adapters implement these; tests may fake them.

Secret values cross these interfaces only as plain `str` arguments and return values held
in memory; no port persists or logs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rotator.domain.model import AdobeSecret


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
