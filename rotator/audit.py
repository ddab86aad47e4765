"""The audit chain, pure: keyed links, checkpoints, and verification over plain rows (I11).

Each event is linked to the one before it: `hash = HMAC-SHA256(key, canonical(prev_hash,
event))` with the key's id recorded on the event, so the audit key can be rotated and old
events still verify with the old key (keep it listed). Without a key the link is plain
SHA-256, which anyone who can write the database can recompute: it proves only accidental
damage, and `audit verify` says so. Events written by rotator 0.1 keep their own link
("sha256-v1") and verify as such.

A key alone cannot catch the newest events being removed (the chain head lives in the same
database). A checkpoint (sequence number, event id and MAC of the head, published outside
the database) can: every event up to it must be there, unchanged, in order.

Each event also carries `state`: the audited fields of its rotation row and credential row
right after the change. Replaying the newest state per row and comparing it with the rows
catches a direct edit of `rotations` or `credentials` that wrote no event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
Row = Mapping[Any, Any]  # a database row by column name (SQLAlchemy's RowMapping fits)
LEGACY = "sha256-v1"  # rotator 0.1: sha256 over a JSON list, no sequence number
PLAIN = "sha256"  # unkeyed: proves only accidental damage
KEYED = "hmac-sha256"

# The audited fields of a row, snapshotted into every event that touches it. `evidence`
# (last use seen) is carried for the report but not replayed: it is only ever written with
# an event today, yet other writers may poll it more often in future.
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


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def snapshot(row: Row | None, fields: Iterable[str]) -> dict[str, Any] | None:
    """The audited fields of a row as JSON values (times in UTC ISO form)."""
    if row is None:
        return None
    return {name: _iso(row[name]) for name in fields if name in row}


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
        "at": _iso(row["at"]),
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
class Keyring:
    """Audit keys by id; `signing` names the one new events are linked with (None: unkeyed)."""

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    signing: str | None = None

    def __post_init__(self) -> None:
        if self.signing is not None and self.signing not in self.keys:
            raise ValueError(f"signing key {self.signing!r} is not in the keyring")

    @property
    def keyed(self) -> bool:
        return self.signing is not None

    def scheme(self) -> tuple[str, str | None]:
        """(scheme, key id) for a new event."""
        return (KEYED, self.signing) if self.signing else (PLAIN, None)

    def link(self, prev_hash: str, row: Row) -> str:
        """The hash of `row` (whose scheme and key_id are already set) after `prev_hash`."""
        scheme = row["scheme"]
        if scheme == LEGACY:
            return legacy_hash(prev_hash, row)
        if scheme == PLAIN:
            return hashlib.sha256(canonical(prev_hash, row)).hexdigest()
        if scheme == KEYED:
            key = self.keys.get(row["key_id"])
            if key is None:
                raise KeyError(row["key_id"])
            return hmac.new(key, canonical(prev_hash, row), hashlib.sha256).hexdigest()
        raise ValueError(f"unknown link scheme {scheme!r}")


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


@dataclass
class Verification:
    """What `audit verify` found, and how much that proves."""

    checked: int = 0
    head_seq: int = 0
    schemes: dict[str, int] = field(default_factory=dict)
    keys_used: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    checkpoint_reached: bool = False
    past_head: list[int] = field(default_factory=list)
    replayed: int = 0
    not_replayable: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def keyed(self) -> bool:
        """At least one event is keyed (the walk refuses an unkeyed one after it)."""
        return self.schemes.get(KEYED, 0) > 0

    @property
    def scope(self) -> str:
        """One sentence: what the result proves. A broken chain proves nothing past its
        first problem, so it never borrows an intact chain's sentence."""
        if self.problems:
            return f"not proven: {self.problems[0]}"
        if not self.keyed:
            return (
                "UNKEYED: the chain is plain SHA-256, which anyone who can write the database "
                "can recompute; it proves only accidental damage (configure [audit] keys)"
            )
        unkeyed = self.schemes.get(PLAIN, 0) + self.schemes.get(LEGACY, 0)
        before = f"; {unkeyed} older event(s) are unkeyed" if unkeyed else ""
        if self.checkpoint is None:
            return (
                f"keyed ({', '.join(sorted(self.keys_used))}){before}: a change needs the key; "
                "without --checkpoint, removal of the newest events cannot be detected"
            )
        return (
            f"keyed ({', '.join(sorted(self.keys_used))}){before}: nothing up to checkpoint "
            f"seq {self.checkpoint.seq} (event {self.checkpoint.event_id}) was changed, "
            "removed or re-ordered"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "keyed": self.keyed,
            "checked": self.checked,
            "head_seq": self.head_seq,
            "schemes": dict(self.schemes),
            "keys_used": sorted(self.keys_used),
            "checkpoint": self.checkpoint.as_dict() if self.checkpoint else None,
            "past_head": list(self.past_head),
            "replayed_rows": self.replayed,
            "rows_not_replayable": self.not_replayable,
            "problems": list(self.problems),
            "scope": self.scope,
        }


class ChainWalk:
    """Feed events in sequence order; it checks each link as it goes and keeps, per row,
    the newest state the events recorded (for replay). The first broken link stops the
    link checks: after it nothing can be trusted."""

    def __init__(self, keyring: Keyring, checkpoint: Checkpoint | None) -> None:
        self.keyring = keyring
        self.result = Verification(checkpoint=checkpoint)
        self.prev = GENESIS
        self.seq = 0
        self.last_event_id: int | None = None
        self.broken = False
        self.latest_scheme: str | None = None
        self.rotation_state: dict[int, dict[str, Any] | None] = {}
        self.credential_state: dict[str, dict[str, Any] | None] = {}

    def _fail(self, message: str) -> None:
        self.result.problems.append(message)
        self.broken = True

    def feed(self, row: Row) -> None:
        if self.broken:
            return
        event_id, scheme = row["id"], row["scheme"]
        if row["prev_hash"] != self.prev:
            self._fail(
                f"event {event_id}: the event before it was changed or removed "
                f"(its link does not match)"
            )
            return
        if row["seq"] != self.seq + 1:
            self._fail(
                f"event {event_id}: sequence {row['seq']} follows {self.seq} "
                "(events removed or re-ordered)"
            )
            return
        rank = {LEGACY: 0, PLAIN: 1, KEYED: 2}
        if self.latest_scheme and rank.get(scheme, -1) < rank[self.latest_scheme]:
            self._fail(
                f"event {event_id}: linked with {scheme} after {self.latest_scheme} events "
                "(rewritten without the key?)"
            )
            return
        try:
            digest = self.keyring.link(self.prev, row)
        except KeyError:
            self._fail(
                f"event {event_id}: signed with audit key {row['key_id']!r}, which is not "
                "configured (list it under [audit] keys to verify)"
            )
            return
        except ValueError as exc:
            self._fail(f"event {event_id}: {exc}")
            return
        if not hmac.compare_digest(digest, row["hash"]):
            self._fail(f"event {event_id}: its content was changed")
            return
        cp = self.result.checkpoint
        if cp is not None and row["seq"] == cp.seq:
            if event_id != cp.event_id or not hmac.compare_digest(row["hash"], cp.mac):
                self._fail(
                    f"event {event_id}: differs from the checkpoint at seq {cp.seq} "
                    f"(event {cp.event_id}): the chain was rewritten"
                )
                return
            self.result.checkpoint_reached = True
        self.prev, self.seq, self.last_event_id = row["hash"], row["seq"], event_id
        self.latest_scheme = scheme
        self.result.checked += 1
        self.result.schemes[scheme] = self.result.schemes.get(scheme, 0) + 1
        if row.get("key_id"):
            self.result.keys_used.add(row["key_id"])
        state = row.get("state")
        if row["rotation_id"] is not None:
            self.rotation_state[row["rotation_id"]] = (state or {}).get("rotation")
        if scheme == LEGACY:
            self.credential_state[row["credential"]] = None
        elif state is not None and state.get("credential") is not None:
            self.credential_state[row["credential"]] = state["credential"]

    def finish(
        self, head_seq: int | None, head_hash: str | None, head_event_id: int | None
    ) -> Verification:
        """Compare the end of the walk with the chain head and the checkpoint."""
        result = self.result
        result.head_seq = self.seq
        if (
            not self.broken
            and self.keyring.keyed
            and self.latest_scheme is not None
            and self.latest_scheme != KEYED
        ):
            # Unkeyed events before the first keyed one are fine (a 0.1 database upgrades),
            # but once a key is configured the newest event is keyed: an unkeyed head means
            # the whole chain was rewritten by someone without the key.
            self._fail(
                f"the newest event (event {self.last_event_id}) is not keyed "
                f"({self.latest_scheme}) though [audit] keys are configured: the chain was "
                "rewritten without the key (or no event was appended since the key was "
                "configured)"
            )
        if not self.broken:
            if head_hash is None:
                self._fail("the chain head row was removed (the newest events cannot be proven)")
            elif head_hash != self.prev or (head_seq is not None and head_seq != self.seq):
                self._fail(
                    f"the newest event(s) after event {self.last_event_id or 0} were removed "
                    f"(the chain head records event {head_event_id})"
                )
        cp = result.checkpoint
        if cp is not None and not result.checkpoint_reached and not self.broken:
            self._fail(
                f"the chain ends at seq {self.seq} before the checkpoint at seq {cp.seq} "
                f"(event {cp.event_id}): events were removed"
            )
        return result

    def past_head(self, event_ids: Iterable[int]) -> None:
        ids = sorted(event_ids)
        if ids:
            self.result.past_head = ids
            self.result.problems.append(
                f"{len(ids)} event(s) past the chain head (ids {', '.join(map(str, ids[:10]))}"
                f"{', ...' if len(ids) > 10 else ''}): inserted outside rotator"
            )

    def off_chain(self, event_ids: Iterable[int], expected: int) -> None:
        """Rows the walk cannot reach (seq below 1) and, as a count, any other row up to the
        head that it did not check: every event must be on the chain."""
        ids = sorted(event_ids)
        if ids:
            self.result.problems.append(
                f"{len(ids)} event(s) not on the chain (sequence below 1; ids "
                f"{', '.join(map(str, ids[:10]))}{', ...' if len(ids) > 10 else ''}): "
                "inserted outside rotator"
            )
        if not self.broken and expected != self.result.checked:
            self.result.problems.append(
                f"{expected} event(s) up to the chain head but {self.result.checked} on the "
                "chain: rows not on the chain were inserted outside rotator"
            )

    def replay(
        self,
        rotation_rows: Mapping[int, Row],
        credential_rows: Mapping[str, Row],
    ) -> None:
        """Each row must equal the newest state its events recorded. Not after a broken
        link: the events are no reference then (and every row would look edited)."""
        result = self.result
        if self.broken:
            return
        for rotation_id, row in sorted(rotation_rows.items()):
            if rotation_id not in self.rotation_state:
                result.problems.append(
                    f"rotation {rotation_id} has no audit event (inserted outside rotator)"
                )
                continue
            recorded = self.rotation_state[rotation_id]
            if recorded is None:
                result.not_replayable += 1  # last changed by rotator 0.1
                continue
            self._compare(f"rotation {rotation_id}", recorded, rotation_snapshot(row) or {})
        for rotation_id in sorted(set(self.rotation_state) - set(rotation_rows)):
            result.problems.append(f"rotation {rotation_id} was deleted (its events remain)")
        for name, row in sorted(credential_rows.items()):
            actual = snapshot(row, CREDENTIAL_FIELDS) or {}
            if name not in self.credential_state:
                if any(v is not None for v in actual.values()):
                    changed = sorted(k for k, v in actual.items() if v is not None)
                    result.problems.append(
                        f"credential {name}: {', '.join(changed)} set with no audit event "
                        "(edited outside rotator)"
                    )
                else:
                    result.replayed += 1
                continue
            recorded_cred = self.credential_state[name]
            if recorded_cred is None:
                result.not_replayable += 1
                continue
            self._compare(f"credential {name}", recorded_cred, actual)
        for name in sorted(set(self.credential_state) - set(credential_rows)):
            if self.credential_state[name] is not None:
                result.problems.append(f"credential {name} was deleted (its events remain)")

    def _compare(self, what: str, recorded: Mapping[str, Any], actual: Mapping[str, Any]) -> None:
        # Only fields both sides carry: an older event did not record fields added since,
        # and an old database must not fail for it.
        differ = sorted(k for k in set(recorded) & set(actual) if recorded[k] != actual[k])
        if differ:
            self.result.problems.append(
                f"{what}: {', '.join(differ)} differ from its newest audit event "
                "(edited outside rotator)"
            )
        else:
            self.result.replayed += 1
