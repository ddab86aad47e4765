"""`FakeAws`: one AWS secret with AWS's staging-label rules, behind the `SecretsStore` port.

Strict where AWS is strict and moto is not (/work/shared/reference/aws-secrets-manager.md):
a version is immutable (same token + other value is refused, AWSPENDING included); each
label is on one version; moving a label that is attached elsewhere needs
`RemoveFromVersionId` = its holder; moving AWSCURRENT moves AWSPREVIOUS by itself; removing
a label from a version that lacks it is refused. It takes one-shot faults
(`rotator.devkit.fakes.faults`).
"""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from rotator.devkit.fakes.faults import Faults
from rotator.domain.errors import NotFound, PermanentError
from rotator.ports import SecretVersion

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


@dataclass
class _Version:
    id: str
    value: str  # the JSON text, as AWS stores it
    stages: set[str] = field(default_factory=set)


class FakeAws:
    """One AWS secret with strict staging-label semantics, behind the `SecretsStore` port."""

    def __init__(self, secret_id: str) -> None:
        self.secret_id = secret_id
        self.versions: dict[str, _Version] = {}
        self.faults = Faults()
        self.writes = 0

    def seed(self, value: dict[str, Any]) -> str:
        """The secret's first version, under AWSCURRENT; returns its version id."""
        vid = uuidlib.uuid4().hex
        self.versions[vid] = _Version(vid, json.dumps(value), {CURRENT})
        return vid

    def holder(self, stage: str) -> _Version | None:
        found = [v for v in self.versions.values() if stage in v.stages]
        if len(found) > 1:  # the fake broke AWS's rule itself: a bug here, not in the engine
            raise AssertionError(f"{stage} on {len(found)} versions")
        return found[0] if found else None

    def value(self, stage: str) -> dict[str, Any] | None:
        version = self.holder(stage)
        return None if version is None else dict(json.loads(version.value))

    def put_by_hand(self, secret_id: str, value: dict[str, Any]) -> None:
        """A person's PutSecretValue without stages: a new version becomes AWSCURRENT (the
        one it replaces AWSPREVIOUS), as AWS does; no fault, no rotator involved."""
        self._check(secret_id)
        vid = uuidlib.uuid4().hex
        self.versions[vid] = _Version(vid, json.dumps(value))
        holder = self.holder(CURRENT)
        for version in self.versions.values():
            version.stages.discard(PREVIOUS)
        if holder is not None:
            holder.stages.discard(CURRENT)
            holder.stages.add(PREVIOUS)
        self.versions[vid].stages.add(CURRENT)

    def _check(self, secret_id: str) -> None:
        if secret_id != self.secret_id:
            raise NotFound(f"secret {secret_id!r} not found")

    # --- the port -----------------------------------------------------------------------

    def read(
        self, secret_id: str, *, stage: str = CURRENT, version_id: str | None = None
    ) -> SecretVersion | None:
        self.faults.check("read", "before")
        self._check(secret_id)
        version = self.versions.get(version_id) if version_id else self.holder(stage)
        if version is None:
            return None
        return SecretVersion(version.id, tuple(sorted(version.stages)), json.loads(version.value))

    def stages(self, secret_id: str) -> dict[str, tuple[str, ...]]:
        self.faults.check("stages", "before")
        self._check(secret_id)
        return {v.id: tuple(sorted(v.stages)) for v in self.versions.values() if v.stages}

    def put_pending(self, secret_id: str, token: str, value: dict[str, Any]) -> None:
        self.faults.check("put", "before")
        self._check(secret_id)
        if not 32 <= len(token) <= 64:
            raise PermanentError("ClientRequestToken must be 32 to 64 characters")
        text = json.dumps(value)
        existing = self.versions.get(token)
        if existing is not None:
            if existing.value != text:  # AWS refuses; moto would overwrite a PENDING one
                raise PermanentError("ResourceExistsException: a version with this token exists")
        else:
            for version in self.versions.values():
                version.stages.discard(PENDING)
            self.versions[token] = _Version(token, text, {PENDING})
            self.writes += 1
        self.faults.check("put", "after")

    def move_stage(
        self, secret_id: str, stage: str, *, to_version: str | None, from_version: str | None
    ) -> None:
        self.faults.check("move", "before")
        self._check(secret_id)
        holder = self.holder(stage)
        if from_version is not None and (holder is None or holder.id != from_version):
            raise PermanentError(
                f"InvalidParameterException: {stage} is not on version {from_version}"
            )
        if to_version is not None:
            target = self.versions.get(to_version)
            if target is None:
                raise NotFound(f"version {to_version} not found")
            if holder is not None and holder.id != to_version and from_version != holder.id:
                raise PermanentError(
                    f"InvalidParameterException: {stage} is on {holder.id}; "
                    f"RemoveFromVersionId must name it"
                )
            if holder is not None and holder.id != to_version:
                holder.stages.discard(stage)
                if stage == CURRENT:
                    for version in self.versions.values():
                        version.stages.discard(PREVIOUS)
                    holder.stages.add(PREVIOUS)
            target.stages.add(stage)
        elif holder is not None:
            holder.stages.discard(stage)
        self.writes += 1
        self.faults.check("move", "after")
