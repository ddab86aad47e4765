"""What one step sees of its credential: config, policy, AWSCURRENT (memoised) and the ports.

Steps are functions over this context, so they never reach back into the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.config import CredentialConfig
from rotator.domain.errors import PermanentError, StepError
from rotator.domain.model import Policy, Rotation
from rotator.ports import AdobeApi, CredentialRef, SecretsStore, SecretVersion

if TYPE_CHECKING:
    from rotator.adapters.db.store import Claim, Store
    from rotator.engine.driver import Engine

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"


def holder(stages: dict[str, tuple[str, ...]], label: str) -> str | None:
    """The version that carries `label`, if any (AWS keeps each label on one version)."""
    return next((v for v, labels in stages.items() if label in labels), None)


class StepContext:
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

    @property
    def adobe(self) -> AdobeApi:
        return self.engine.adobe

    @property
    def aws(self) -> SecretsStore:
        return self.engine.aws

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def fresh(self) -> dict[int, str]:
        """New secret values by rotation id, in memory only, from creation until promotion."""
        return self.engine.fresh

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
        if self.claim is not None:
            self.engine.check_lease()  # a step past step_timeout has let its lease go
            self.store.renew(self.claim, self.engine.lease)

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
