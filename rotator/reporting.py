"""The auditor's report as data: assembled from the audit trail itself (pure).

Everything here comes from the events (each carries, under its MAC, the audited state of
its rotation and credential rows after the change) and from the result of verifying them,
so the report says no more than the trail can prove. rotator/report.py renders it.

Per credential: every rotation (trigger, claimed and verified actor, reason, time of each
step), each secret's lifetime as AWSCURRENT and the oldest age a current secret reached in
the period against `max_age`, the evidence behind each deletion (last use seen, quiet
period, time of delete), and needs_attention episodes with how they ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Event(Protocol):
    """What the report reads of an audit event (adapters.db.audit.AuditEvent fits)."""

    @property
    def id(self) -> int: ...
    @property
    def rotation_id(self) -> int | None: ...
    @property
    def credential(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def actor_verified(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def from_state(self) -> str | None: ...
    @property
    def to_state(self) -> str | None: ...
    @property
    def detail(self) -> dict[str, Any]: ...
    @property
    def state(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class CredentialPolicy:
    max_age: timedelta
    quiet_period: timedelta


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _days(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 86400, 2)


def build(
    events: Iterable[Event],
    policies: Mapping[str, CredentialPolicy],
    verification: Mapping[str, Any],
    *,
    since: datetime,
    until: datetime,
    generated_at: datetime,
) -> dict[str, Any]:
    """The report, JSON-ready. `events` oldest first; `policies` by credential name."""
    by_credential: dict[str, list[Event]] = {name: [] for name in policies}
    for event in events:
        by_credential.setdefault(event.credential, []).append(event)
    return {
        "generated_at": _iso(generated_at),
        "period": {"since": _iso(since), "until": _iso(until)},
        "verification": dict(verification),
        "credentials": [
            _credential(name, trail, policies.get(name), since, until)
            for name, trail in sorted(by_credential.items())
        ],
    }


def _credential(
    name: str,
    trail: list[Event],
    policy: CredentialPolicy | None,
    since: datetime,
    until: datetime,
) -> dict[str, Any]:
    rotations = _rotations(trail, since, until)
    deletions = _deletions(trail, rotations, policy, since, until)
    secrets = _secrets(trail, deletions, since, until)
    max_age = policy.max_age.total_seconds() if policy else None
    for secret in secrets:
        age = secret["age_reached_seconds"]
        secret["violation"] = bool(max_age is not None and age is not None and age > max_age)
    ages = [s for s in secrets if s["age_reached_seconds"] is not None and s["current_in_period"]]
    oldest = max(ages, key=lambda s: s["age_reached_seconds"], default=None)
    oldest_age = oldest["age_reached_seconds"] if oldest else None
    return {
        "name": name,
        "configured": policy is not None,
        "max_age_seconds": max_age,
        "max_age_days": _days(max_age),
        "quiet_period_seconds": policy.quiet_period.total_seconds() if policy else None,
        "oldest_age_seconds": oldest_age,
        "oldest_age_days": _days(oldest_age),
        "oldest_secret": oldest["uuid"] if oldest else None,
        "violation": any(s["violation"] for s in secrets if s["current_in_period"]),
        "secrets": secrets,
        "rotations": rotations,
        "deletions": deletions,
        "attention": _attention(trail, since, until),
    }


def _rotations(trail: list[Event], since: datetime, until: datetime) -> list[dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for event in trail:
        if event.rotation_id is None:
            continue
        rotation = found.get(event.rotation_id)
        snap = (event.state or {}).get("rotation") or {}
        if rotation is None:
            rotation = found[event.rotation_id] = {
                "id": event.rotation_id,
                "trigger": snap.get("trigger") or event.detail.get("trigger"),
                "requested_by": snap.get("actor") or event.actor,
                "verified_actor": event.actor_verified,
                "reason": snap.get("reason", event.detail.get("reason", "")),
                "started_at": _iso(event.at),
                "steps": [],
                "requests": [],
            }
        if event.kind in {"emergency_requested", "cancel_requested"}:
            rotation["requests"].append(
                {
                    "kind": event.kind,
                    "at": _iso(event.at),
                    "actor": event.actor,
                    "verified_actor": event.actor_verified,
                    "reason": event.detail.get("reason", ""),
                }
            )
        if event.to_state and event.to_state != event.from_state:
            rotation["steps"].append(
                {
                    "state": event.to_state,
                    "kind": event.kind,
                    "at": _iso(event.at),
                    "actor": event.actor,
                    "verified_actor": event.actor_verified,
                }
            )
        rotation["outcome"] = snap.get("state") or event.to_state or rotation.get("outcome")
        for key in ("old_uuid", "new_uuid", "promoted_at", "finished_at"):
            if snap.get(key) is not None or key not in rotation:
                rotation[key] = snap.get(key)
        rotation["evidence"] = snap.get("evidence") or rotation.get("evidence")
    kept = []
    for rotation in found.values():
        started = _parse(rotation["started_at"])
        finished = _parse(rotation["finished_at"])
        if started and started <= until and (finished is None or finished >= since):
            kept.append(rotation)
    return sorted(kept, key=lambda r: r["id"])


def _deletions(
    trail: list[Event],
    rotations: list[dict[str, Any]],
    policy: CredentialPolicy | None,
    since: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    """Each Adobe secret a rotation deleted, with the evidence the decision stood on: the
    first event naming it as deleted (an emergency's `retire_confirm`, a `completed`, a
    `rolled_back`) and the rotation's recorded evidence at that event."""
    by_id = {r["id"]: r for r in rotations}
    quiet = policy.quiet_period.total_seconds() if policy else None
    found: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for event in trail:
        deleted = event.detail.get("deleted") or []
        if not deleted or event.rotation_id not in by_id or not since <= event.at <= until:
            continue
        rotation = by_id[event.rotation_id]
        snap = (event.state or {}).get("rotation") or {}
        evidence = snap.get("evidence") or rotation.get("evidence") or {}
        emergency = rotation["trigger"] == "emergency"
        for uuid in deleted:
            if (rotation["id"], uuid) in seen:
                continue
            seen.add((rotation["id"], uuid))
            is_old = uuid == rotation.get("old_uuid")
            last_use = _parse(evidence.get("old_last_used_at")) if is_old else None
            promoted = _parse(snap.get("promoted_at") or rotation.get("promoted_at"))
            quiet_since = max(filter(None, (promoted, last_use)), default=None)
            found.append(
                {
                    "rotation_id": rotation["id"],
                    "uuid": uuid,
                    "deleted_at": _iso(event.at),
                    "deleted_by": event.actor,
                    "deleted_in": event.kind,
                    "emergency": emergency,
                    "was_old_secret": is_old,
                    "promoted_at": _iso(promoted),
                    "last_use_seen": _iso(last_use),
                    "last_polled_at": evidence.get("polled_at") if is_old else None,
                    "quiet_period_seconds": quiet if is_old and not emergency else None,
                    "quiet_for_seconds": (event.at - quiet_since).total_seconds()
                    if quiet_since
                    else None,
                }
            )
    return found


def _secrets(
    trail: list[Event],
    deletions: list[dict[str, Any]],
    since: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    """Each secret that was AWSCURRENT: from when to when, and the age it reached then."""
    segments: list[dict[str, Any]] = []
    for event in trail:
        cred = (event.state or {}).get("credential")
        if not cred or not cred.get("current_uuid"):
            continue
        uuid = cred["current_uuid"]
        created = cred.get("secret_created_at")
        if segments and segments[-1]["uuid"] == uuid:
            segments[-1]["created_at"] = segments[-1]["created_at"] or created
            continue
        if segments:
            segments[-1]["current_until"] = _iso(event.at)
        segments.append(
            {
                "uuid": uuid,
                "created_at": created,
                "current_from": _iso(event.at),
                "current_until": None,
            }
        )
    # A secret that was current before the trail first recorded the credential's uuid is
    # known from the rotation that replaced it (its old_uuid), current until its promotion.
    # Its creation time is the `old_created_at` its rotation's plan recorded, if it did.
    known = {s["uuid"] for s in segments}
    born = {e.rotation_id: e.detail.get("old_created_at") for e in trail if e.kind == "planned"}
    for event in trail:
        snap = (event.state or {}).get("rotation") or {}
        old, promoted = snap.get("old_uuid"), snap.get("promoted_at")
        if old and promoted and old not in known:
            known.add(old)
            segments.append(
                {
                    "uuid": old,
                    "created_at": born.get(event.rotation_id),
                    "current_from": None,
                    "current_until": promoted,
                }
            )
    segments.sort(key=lambda s: s["current_until"] or "9999")
    deleted = {d["uuid"]: d["deleted_at"] for d in deletions}
    for segment in segments:
        start = _parse(segment["current_from"]) or since
        end = _parse(segment["current_until"]) or until
        segment["deleted_at"] = deleted.get(segment["uuid"])
        segment["current_in_period"] = start <= until and end >= since
        created = _parse(segment["created_at"])
        reached = min(end, until)
        segment["age_reached_seconds"] = (
            round((reached - created).total_seconds(), 1) if created else None
        )
        segment["age_reached_days"] = _days(segment["age_reached_seconds"])
    return segments


def _attention(trail: list[Event], since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Episodes in needs_attention: why, and how each ended (or that it has not)."""
    open_: dict[int, dict[str, Any]] = {}
    episodes: list[dict[str, Any]] = []
    for event in trail:
        if event.rotation_id is None:
            continue
        entering = event.to_state == "needs_attention" and event.from_state != "needs_attention"
        leaving = event.from_state == "needs_attention" and event.to_state != "needs_attention"
        if entering:
            episode = {
                "rotation_id": event.rotation_id,
                "started_at": _iso(event.at),
                "why": str(event.detail.get("why") or event.detail.get("error") or ""),
                "ended_at": None,
                "ended_as": None,
                "ended_by": None,
            }
            open_[event.rotation_id] = episode
            episodes.append(episode)
        elif leaving and event.rotation_id in open_:
            episode = open_.pop(event.rotation_id)
            episode.update(ended_at=_iso(event.at), ended_as=event.to_state, ended_by=event.actor)
    return [
        e
        for e in episodes
        if (_parse(e["started_at"]) or until) <= until
        and (e["ended_at"] is None or (_parse(e["ended_at"]) or since) >= since)
    ]
