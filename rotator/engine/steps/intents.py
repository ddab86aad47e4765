"""Adds whose outcome is unknown: each add at Adobe is recorded (an intent) before it is
sent, so a secret it made whose answer was lost can be found later as an orphan."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator.domain.evidence import Evidence
from rotator.domain.model import Rotation
from rotator.engine.context import StepContext


def without_intent(detail: dict[str, Any]) -> dict[str, Any]:
    """A rotation's detail with its add intent dropped (the add was answered)."""
    return {k: v for k, v in detail.items() if k != "add_intent"}


def answered(step: StepContext, detail: dict[str, Any]) -> dict[str, Any]:
    """A rotation's detail once Adobe answered that this lease's add made nothing (a refusal,
    the two-secret limit) or before one is sent into a full slot. An intent armed under an
    earlier lease stays: that add's outcome is still unknown, and the secret it may have
    made is what fills the slot now, an orphan only that intent lets us find (I7)."""
    intent = detail.get("add_intent")
    fence = step.claim.fence if step.claim else None
    if isinstance(intent, dict) and fence is not None and intent.get("fence") != fence:
        return detail
    return without_intent(detail)


def add_intent(step: StepContext, known: list[str]) -> dict[str, Any]:
    """An add about to be sent, recorded before it: the uuids listed before, when, and the
    lease (fence) under which it is sent. Under the same lease no POST has been sent yet
    (this worker would know its answer); under a later one, one may have been."""
    return {
        "known": known,
        "at": step.clock().isoformat(),
        "fence": step.claim.fence if step.claim else None,
    }


def _known_before(intent: dict[str, Any], evidence: Evidence | None) -> list[str]:
    """The uuids listed right before the add, and any seen by an answer before then."""
    known = [str(u) for u in intent.get("known") or ()]
    at = intent.get("at")
    if evidence is not None and isinstance(at, str):
        since = datetime.fromisoformat(at)
        known += [u for u, first in evidence.first_seen.items() if first < since]
    return known


def unanswered_adds(step: StepContext, rotation: Rotation) -> list[list[str]]:
    """The adds whose outcome is unknown that this rotation answers for: its own (unless
    armed under this very lease: not sent yet), and for an emergency the one of the
    rotation it abandoned (each with the uuids listed before it)."""
    found = []
    fence = step.claim.fence if step.claim else None
    own = rotation.detail.get("add_intent")
    if isinstance(own, dict) and (fence is None or own.get("fence") != fence):
        found.append(_known_before(own, rotation.evidence))
    followed = _followed_detail(step, rotation)
    inherited = followed.get("add_intent") if followed else None
    if isinstance(inherited, dict):
        found.append(_known_before(inherited, rotation.evidence))
    return found


def _followed_detail(step: StepContext, rotation: Rotation) -> dict[str, Any] | None:
    followed = rotation.detail.get("follows")
    if not isinstance(followed, int):
        return None
    return step.store.get(followed).detail
