"""What one step sees of its credential: config, policy, AWSCURRENT (memoised) and the ports.

Steps are functions over this context, so they never reach back into the driver: the
context is built from the settings and the ports (`Ports`), never from the `Engine`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rotator.config import CredentialConfig, Settings
from rotator.domain.errors import PermanentError, StepError
from rotator.domain.model import Policy, Rotation
from rotator.ports import (
    AdobeApi,
    Claim,
    CredentialRef,
    RotationStore,
    SecretsStore,
    SecretVersion,
)

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"

# Prove, right before a write that cannot be taken back, that the claim's lease is ours.
LeaseGuard = Callable[[Claim], None]


@dataclass(frozen=True)
class Ports:
    """The outside world as the engine reaches it, built once by the driver.

    `clock` is the store's (I10); `fresh` holds new secret values by rotation id, in
    memory only, from creation until promotion (so verification needs no second read).
    """

    adobe: AdobeApi
    aws: SecretsStore
    store: RotationStore
    clock: Callable[[], datetime]
    fresh: dict[int, str]


def holder(stages: dict[str, tuple[str, ...]], label: str) -> str | None:
    """The version that carries `label`, if any (AWS keeps each label on one version)."""
    return next((v for v, labels in stages.items() if label in labels), None)


def config_hash(cfg: CredentialConfig) -> str:
    """A credential's configuration as the store records it (a change is audited)."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


class StepContext:
    """Per-step view of one credential: its config and a memo of AWSCURRENT."""

    def __init__(
        self,
        settings: Settings,
        ports: Ports,
        rotation: Rotation,
        claim: Claim | None = None,
        guard: LeaseGuard | None = None,
    ) -> None:
        self.rotation = rotation
        self.claim = claim
        self.cfg: CredentialConfig = settings.credential(rotation.credential)
        self.ref = CredentialRef(
            self.cfg.name, self.cfg.org_id, self.cfg.credential_id, self.cfg.client_id
        )
        self.policy: Policy = settings.policy(self.cfg)
        self.secret_key = settings.secret_key(self.cfg)
        self.uuid_key = settings.uuid_key(self.cfg)
        self.adobe: AdobeApi = ports.adobe
        self.aws: SecretsStore = ports.aws
        self.store: RotationStore = ports.store
        self.clock = ports.clock
        self.fresh = ports.fresh
        self._guard = guard
        self._current: SecretVersion | None = None

    def current(self) -> SecretVersion:
        if self._current is None:
            found = self.aws.read(self.cfg.secret_id, stage=CURRENT)
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
        if self.claim is not None and self._guard is not None:
            self._guard(self.claim)

    def move(self, stage: str, *, to_version: str | None, from_version: str | None) -> None:
        """Move a label, treating "it is already where it should be" as success.

        botocore retries a label move after a timeout or a 5xx; if the first try took
        effect, the retry is refused (its RemoveFromVersionId no longer holds the label).
        """
        secret_id = self.cfg.secret_id
        try:
            self.aws.move_stage(secret_id, stage, to_version=to_version, from_version=from_version)
        except StepError:
            if holder(self.aws.stages(secret_id), stage) != to_version:
                raise
