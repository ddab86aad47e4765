"""A fake audit event for the report's tests (tests/unit/test_reporting.py,
tests/system/test_report_hostile.py): what rotator.audit.trail.Event reads, plus the scheme
and key id of its signature (what `trail.signed_by` reads). By default it is a daemon's
signed event about `analytics`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Ev:
    id: int
    rotation_id: int | None
    at: datetime
    kind: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    credential: str = "analytics"
    actor: str = "rotator"
    actor_verified: str | None = "aws:arn:aws:sts::1:assumed-role/ops os:ops(uid 1)"
    scheme: str | None = "ed25519"
    key_id: str | None = "daemon-1"
