"""The auditor's report as data: assembled from the audit trail itself (pure).

Everything here comes from the events (each carries, under its MAC, the audited state of
its rotation and credential rows after the change) and from the result of verifying them,
so the report says no more than the trail can prove. rotator/audit/render.py renders it.

Per credential: every rotation (trigger, claimed actor, the identity its writer reported
about itself (`verified_actor`, not proven), the key that signed it (`signed_by`), reason,
time of each step), each secret's lifetime as AWSCURRENT and the oldest age a current
secret reached in the period against `max_age`, the evidence behind each deletion (last
use seen, quiet period, time of delete) and its kind (drain, emergency, stray, orphan,
rollback, given_back: see DELETION_KEYS), and needs_attention episodes with how they ended.
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


def signed_by(event: Event) -> str | None:
    """The id of the key whose Ed25519 signature the event carries (None: not signed).
    What the chain check proves, unlike `actor_verified`, which the writing process
    reported about itself."""
    if getattr(event, "scheme", None) != "ed25519":
        return None
    key_id = getattr(event, "key_id", None)
    return str(key_id) if key_id else None


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
                "verified_actor": event.actor_verified,  # self-reported by the writer
                "signed_by": signed_by(event),
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
                    "signed_by": signed_by(event),
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
                    "signed_by": signed_by(event),
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


# Where each kind of deletion is recorded: the event detail key that names the deleted
# uuids, and what the deletion was. Every delete the engine makes at Adobe lands in one of
# these keys of the event its step writes (rotator/engine/steps/): a stray cleared while
# planning (`planned`) or while making room at Adobe's limit (a `retry`), an orphan of an
# earlier crash (`staged`), the rotation's own secret given back (`token_renewed`, a
# `retry` after a failed put), the old secret after draining or every other secret in an
# emergency (`retire_confirm`, `completed`), the rotation's own secrets rolled back
# (`rollback_confirm`, `rolled_back`).
DELETION_KEYS = ("deleted", "strays_deleted", "orphans_deleted", "given_back")
KINDS = ("drain", "emergency", "stray", "orphan", "rollback", "given_back")


def deleted_in(event: Event) -> list[tuple[str, str]]:
    """(uuid, key) for each uuid an event records as deleted at Adobe."""
    found: list[tuple[str, str]] = []
    for key in DELETION_KEYS:
        value = event.detail.get(key)
        if key == "deleted" and isinstance(value, bool):
            # `token_renewed` says whether it gave back the secret its lost put staged.
            value = [event.detail.get("stale_uuid")] if value else []
            key = "given_back"
        if isinstance(value, str):
            value = [value]
        for uuid in value or []:
            if uuid and isinstance(uuid, str):
                found.append((uuid, key))
    return found


def _kind(key: str, event: Event, rotation: dict[str, Any], uuid: str) -> str:
    if key == "strays_deleted":
        return "stray"
    if key == "orphans_deleted":
        return "orphan"
    if key == "given_back":
        return "given_back"
    if event.kind in {"rollback_confirm", "rolled_back"} or event.to_state in {
        "rolling_back",
        "failed",
        "cancelled",
    }:
        return "rollback"
    if rotation["trigger"] == "emergency":
        return "emergency"
    return "drain" if uuid == rotation.get("old_uuid") else "stray"


def _why(kind: str, is_old: bool) -> str:
    """The rule the deletion stood on, in words."""
    return {
        "drain": "the old secret, unused for the quiet period after promotion",
        "emergency": (
            "emergency: the leaked secret, no quiet period"
            if is_old
            else "emergency: every other secret goes, no quiet period"
        ),
        "stray": "a secret AWSCURRENT does not hold, unused for the quiet period",
        "orphan": "created by rotator after a crash, its value never reached AWS",
        "rollback": "this rotation's own new secret, given back on rollback",
        "given_back": "this rotation's own new secret, whose value never reached AWS",
    }[kind]


def _deletions(
    trail: list[Event],
    rotations: list[dict[str, Any]],
    policy: CredentialPolicy | None,
    since: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    """Each Adobe secret rotator deleted, with its kind and the evidence the decision stood
    on: the first event naming it as deleted (see DELETION_KEYS) and the rotation's
    recorded evidence at that event."""
    by_id = {r["id"]: r for r in rotations}
    quiet = policy.quiet_period.total_seconds() if policy else None
    found: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for event in trail:
        gone = deleted_in(event)
        if not gone or event.rotation_id not in by_id or not since <= event.at <= until:
            continue
        rotation = by_id[event.rotation_id]
        for uuid, key in gone:
            if (rotation["id"], uuid) in seen:
                continue
            seen.add((rotation["id"], uuid))
            found.append(_deletion(event, rotation, uuid, key, quiet))
    return found


def _deletion(
    event: Event, rotation: dict[str, Any], uuid: str, key: str, quiet: float | None
) -> dict[str, Any]:
    """One deletion: its kind, and the evidence recorded at the event that made it."""
    snap = (event.state or {}).get("rotation") or {}
    evidence = snap.get("evidence") or rotation.get("evidence") or {}
    emergency = rotation["trigger"] == "emergency"
    kind = _kind(key, event, rotation, uuid)
    is_old = uuid == (snap.get("old_uuid") or rotation.get("old_uuid"))
    if kind == "stray":
        last_use = _parse((evidence.get("strays") or {}).get(uuid))
    else:
        last_use = _parse(evidence.get("old_last_used_at")) if is_old else None
    promoted = (
        _parse(snap.get("promoted_at") or rotation.get("promoted_at"))
        if kind in {"drain", "emergency"}
        else None  # the promotion is evidence only for the secret it replaced
    )
    quiet_since = (
        max(filter(None, (promoted, last_use)), default=None)
        if kind == "drain"
        else (last_use if kind == "stray" else None)
    )
    waits = kind in {"drain", "stray"} and not emergency
    return {
        "rotation_id": rotation["id"],
        "uuid": uuid,
        "kind": kind,
        "why": _why(kind, is_old),
        "deleted_at": _iso(event.at),
        "deleted_by": event.actor,
        "deleted_in": event.kind,
        "emergency": emergency,
        "was_old_secret": is_old,
        "promoted_at": _iso(promoted),
        "last_use_seen": _iso(last_use),
        "last_polled_at": evidence.get("polled_at") if is_old else None,
        "quiet_period_seconds": quiet if waits else None,
        "quiet_for_seconds": (event.at - quiet_since).total_seconds() if quiet_since else None,
    }


def _secrets(
    trail: list[Event],
    deletions: list[dict[str, Any]],
    since: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    """Each secret that was AWSCURRENT: from when to when, and the age it reached then."""
    segments = _current_segments(trail)
    known = {s["uuid"] for s in segments}
    segments.extend(_replaced_before_trail(trail, known))
    segments.sort(key=lambda s: s["current_until"] or "9999")
    segments.extend(_never_current(deletions, known))
    deleted = {d["uuid"]: d for d in deletions}
    for segment in segments:
        _measure(segment, deleted.get(segment["uuid"]), since, until)
    return segments


def _current_segments(trail: list[Event]) -> list[dict[str, Any]]:
    """Each uuid the credential's recorded state held as current, in order."""
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
    return segments


def _replaced_before_trail(trail: list[Event], known: set[str]) -> list[dict[str, Any]]:
    """A secret that was current before the trail first recorded the credential's uuid is
    known from the rotation that replaced it (its old_uuid), current until its promotion.
    Its creation time is the `old_created_at` its rotation's plan recorded, if it did.
    Adds each to `known`."""
    found: list[dict[str, Any]] = []
    born = {e.rotation_id: e.detail.get("old_created_at") for e in trail if e.kind == "planned"}
    for event in trail:
        snap = (event.state or {}).get("rotation") or {}
        old, promoted = snap.get("old_uuid"), snap.get("promoted_at")
        if old and promoted and old not in known:
            known.add(old)
            found.append(
                {
                    "uuid": old,
                    "created_at": born.get(event.rotation_id),
                    "current_from": None,
                    "current_until": promoted,
                }
            )
    return found


def _never_current(deletions: list[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """A secret deleted without ever being AWSCURRENT (a stray, an orphan, a rotation's own
    secret given back) gets a row of its own: the timeline shows every deletion. Adds each
    to `known`."""
    found: list[dict[str, Any]] = []
    for deletion in deletions:
        if deletion["uuid"] not in known:
            known.add(deletion["uuid"])
            found.append(
                {
                    "uuid": deletion["uuid"],
                    "created_at": None,
                    "current_from": None,
                    "current_until": None,
                    "never_current": True,
                }
            )
    return found


def _measure(
    segment: dict[str, Any], gone: dict[str, Any] | None, since: datetime, until: datetime
) -> None:
    """Complete a secret's row: its deletion, whether it was current in the period, and the
    age it reached (by the period's end at the latest)."""
    start = _parse(segment["current_from"]) or since
    end = _parse(segment["current_until"]) or until
    segment["deleted_at"] = gone["deleted_at"] if gone else None
    segment["deletion_kind"] = gone["kind"] if gone else None
    never = bool(segment.pop("never_current", False))
    segment["was_current"] = not never
    segment["current_in_period"] = not never and start <= until and end >= since
    created = _parse(segment["created_at"])
    reached = min(end, until)
    segment["age_reached_seconds"] = (
        round((reached - created).total_seconds(), 1) if created else None
    )
    segment["age_reached_days"] = _days(segment["age_reached_seconds"])


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
