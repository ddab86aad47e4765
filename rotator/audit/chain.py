"""The audit chain's link format, pure: what an event carries and how it is hashed (I11).

Each event is linked to the one before it: `hash = H(canonical(prev_hash, event))`, where
`canonical` covers the previous link and every recorded field, sequence included. The
scheme recorded on each event says what H is:

- "ed25519": SHA-256, and the link is signed by the writer that made the event
  (rotator/audit/signing.py); verifiable with the public keyring alone.
- "hmac-sha256": HMAC-SHA256 under an audit key whose id the event records, so the key
  can be rotated and old events still verify with the old key (keep it listed). Kept
  for the events written before the switch to signatures.
- "sha256": plain SHA-256, which anyone who can write the database can recompute: it
  proves only accidental damage, and `audit verify` says so.
- "sha256-v1": rotator 0.1's own link, over a JSON list with no sequence number.

Each event also carries `state`: the audited fields of its rotation row and credential row
right after the change (`snapshot`), which the walk replays against the rows
(rotator/audit/verify.py).

A key alone cannot catch the newest events being removed (the chain head lives in the same
database). A `Checkpoint` (sequence number, event id and MAC of the head, published outside
the database) can: every event up to it must be there, unchanged, in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
Row = Mapping[Any, Any]  # a database row by column name (SQLAlchemy's RowMapping fits)
LEGACY = "sha256-v1"  # rotator 0.1: sha256 over a JSON list, no sequence number
PLAIN = "sha256"  # unkeyed: proves only accidental damage
KEYED = "hmac-sha256"
SIGNED = "ed25519"  # signed by its writer; verifiable with the public keyring alone


# The audited fields of a row, snapshotted into every event that touches it and replayed
# (by `audit verify`, and by the engine before it acts on a rotation).
ROTATION_FIELDS = (
    "credential",
    "trigger",
    "state",
    "actor",
    "reason",
    "old_uuid",
    "new_uuid",
    "created_at",
    "promoted_at",
    "finished_at",
    # What the destroy gate relies on: the version a new uuid is bound to, and every uuid
    # this rotation knows it made (an edit would let it delete the wrong secret).
    "request_token",
    "known_uuids",
    # Everything else the engine reads to decide a destroy or act on a request: the
    # version AWSCURRENT had, where a needs_attention resumes, the usage evidence, the
    # whole `detail` (identity, identity_probe, inherits, follows, preempted, ...), and the
    # operator's request flags (issue 27: a raw UPDATE of any of them is refused).
    "previous_version",
    "resume_state",
    "evidence",
    "detail",
    "emergency_requested",
    "cancel_requested",
)
# The parts of a rotation's `detail` that are bindings (an emergency inherits the abandoned
# rotation's new uuid and its version), snapshotted as "detail.<key>".
ROTATION_DETAIL_FIELDS = ("inherits",)
CREDENTIAL_FIELDS = (
    "current_uuid",
    "current_version",
    "secret_created_at",
    "last_rotated_at",
    "held_at",
    "held_by",
    "hold_reason",
)


def iso(value: Any) -> Any:
    """A time as UTC ISO text (what the events record); any other value unchanged."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def snapshot(row: Row | None, fields: Iterable[str]) -> dict[str, Any] | None:
    """The audited fields of a row as JSON values (times in UTC ISO form)."""
    if row is None:
        return None
    return {name: iso(row[name]) for name in fields if name in row}


def rotation_snapshot(row: Row | None) -> dict[str, Any] | None:
    """A rotation row's audited fields, plus the binding parts of its `detail`."""
    found = snapshot(row, ROTATION_FIELDS)
    if found is None or row is None:
        return found
    detail = row.get("detail")
    if isinstance(detail, Mapping):
        for key in ROTATION_DETAIL_FIELDS:
            found[f"detail.{key}"] = detail.get(key)
    return found


def legacy_hash(prev_hash: str, row: Row) -> str:
    """rotator 0.1's link: sha256 over the previous hash and the row's canonical JSON."""
    body = json.dumps(
        [
            prev_hash,
            row["rotation_id"],
            row["credential"],
            row["at"].astimezone(UTC).isoformat(),
            row["actor"],
            row["kind"],
            row["from_state"],
            row["to_state"],
            row["detail"],
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def canonical(prev_hash: str, row: Row) -> bytes:
    """What a link covers: the previous link and every recorded field, sequence included."""
    body = {
        "prev": prev_hash,
        "seq": row["seq"],
        "rotation_id": row["rotation_id"],
        "credential": row["credential"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "actor_verified": row.get("actor_verified"),
        "kind": row["kind"],
        "from": row["from_state"],
        "to": row["to_state"],
        "detail": row["detail"],
        "state": row.get("state"),
        "scheme": row["scheme"],
        "key_id": row.get("key_id"),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class Checkpoint:
    """The chain head, published outside the database: nothing up to `seq` may change."""

    seq: int
    event_id: int
    mac: str
    scheme: str
    key_id: str | None
    at: str  # when the head event was appended (UTC ISO)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "mac": self.mac,
            "scheme": self.scheme,
            "key_id": self.key_id,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise ValueError("a checkpoint is a JSON object")
        try:
            seq, event_id, mac = int(data["seq"]), int(data["event_id"]), str(data["mac"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("a checkpoint needs integer seq and event_id and a mac") from None
        if len(mac) != 64 or any(c not in "0123456789abcdef" for c in mac):
            raise ValueError("checkpoint mac must be 64 hex digits")
        key_id = data.get("key_id")
        return cls(
            seq,
            event_id,
            mac,
            str(data.get("scheme") or ""),
            str(key_id) if key_id else None,
            str(data.get("at") or ""),
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """One JSON object, or JSON lines (a checkpoint file, or log lines that carry the
        `audit checkpoint` fields): the newest, by sequence number, wins."""
        text = text.strip()
        if not text:
            raise ValueError("empty checkpoint")
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError:
            pass
        found: list[Checkpoint] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"line {number} is not JSON") from None
            if isinstance(data, dict) and "mac" in data and "seq" in data:
                found.append(cls.from_dict(data))
        if not found:
            raise ValueError("no checkpoint (an object with seq, event_id and mac) in it")
        return max(found, key=lambda c: c.seq)
