"""The audit chain, pure: signed links, checkpoints, and verification over plain rows (I11).

Each event written now is signed with Ed25519 by the writer that made it (a daemon, an
operator's CLI), under that writer's own key id: `hash = SHA-256(canonical(prev_hash,
event))`, `signature = Ed25519(private key, hash)`. Verifying needs only the public keyring
(key id -> public key, roles, validity), so an auditor can check the chain without being
able to forge it, and a holder of one key can only speak as that key's writer (a daemon
key may not request: see `ROLE_RULES`). Older events keep their scheme: HMAC-SHA256
("hmac-sha256", verifiable with the old HMAC key, listed under [audit] keys), plain SHA-256,
and rotator 0.1's "sha256-v1". The signed part begins at the first "ed25519" event; no
weaker scheme may follow it.

The HMAC scheme, kept for the events written before the switch:

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

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
Row = Mapping[Any, Any]  # a database row by column name (SQLAlchemy's RowMapping fits)
LEGACY = "sha256-v1"  # rotator 0.1: sha256 over a JSON list, no sequence number
PLAIN = "sha256"  # unkeyed: proves only accidental damage
KEYED = "hmac-sha256"
SIGNED = "ed25519"  # signed by its writer; verifiable with the public keyring alone
_RANK = {LEGACY: 0, PLAIN: 1, KEYED: 2, SIGNED: 3}
_SIGNATURE_CONTEXT = b"rotator-audit-event-v2\0"  # domain separation for the signed bytes

# Roles a public key may hold. An operator's CLI requests and may also drive a rotation
# itself (`rotate --now`); a daemon only steps rotations and starts scheduled ones.
OPERATOR, DAEMON = "operator", "daemon"
ROLES = frozenset({OPERATOR, DAEMON})
# Event kinds only an operator's key may sign: the requests the engine acts on.
REQUEST_KINDS = frozenset({"emergency_requested", "cancel_requested", "resumed", "adopted"})
# Rotation fields that are requests: raised only by an operator-signed event.
REQUEST_FLAGS = ("emergency_requested", "cancel_requested")
HOLD_FIELDS = ("held_at", "held_by", "hold_reason")

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
class PublicKey:
    """One writer's public key in the keyring: what it may sign, and when."""

    id: str
    key: Ed25519PublicKey = field(repr=False)
    roles: frozenset[str] = frozenset({OPERATOR, DAEMON})
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return (self.valid_from is None or at >= self.valid_from) and (
            self.valid_until is None or at < self.valid_until
        )

    def raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    """This writer's private key and the id its public key is listed under."""

    id: str
    key: Ed25519PrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return f"Signer({self.id!r})"


def public_key_text(key: Ed25519PublicKey) -> str:
    """A public key as the keyring file holds it: base64 of the 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Base64 of 32 raw bytes (what `rotator audit keygen` prints); ValueError otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("a public key is base64 of 32 bytes") from None
    if len(raw) != 32:
        raise ValueError(f"a public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Keyring:
    """What a process links, signs and verifies with.

    - `public`: the public keyring, key id -> PublicKey; enough to verify signed events.
    - `signer`: this writer's private key (None: it signs nothing).
    - `keys` / `signing`: HMAC keys by id, for events written before the switch to
      signatures (and, with `signing` and no signer, to keep writing HMAC links).
    """

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    signing: str | None = None
    public: Mapping[str, PublicKey] = field(default_factory=dict)
    signer: Signer | None = None

    def __post_init__(self) -> None:
        if self.signing is not None and self.signing not in self.keys:
            raise ValueError(f"signing key {self.signing!r} is not in the keyring")
        if self.signer is not None:
            listed = self.public.get(self.signer.id)
            if listed is None or listed.raw() != _raw_public(self.signer.key):
                raise ValueError(
                    f"the signing key is not in the public keyring as {self.signer.id!r}"
                )

    @property
    def keyed(self) -> bool:
        """New events carry a key (a signature, or an HMAC link)."""
        return self.signer is not None or self.signing is not None

    @property
    def signed(self) -> bool:
        """A public keyring is configured: events are expected to be signed."""
        return bool(self.public)

    def scheme(self) -> tuple[str, str | None]:
        """(scheme, key id) for a new event. A process given a public keyring but no
        signing key must not write (its events would be unsigned, and refused)."""
        if self.signer is None and self.signed:
            from rotator.domain.errors import ConfigError

            raise ConfigError(
                "[audit] keyring is set but signing_key is not: this process cannot sign "
                "the audit events it would write (set [audit] signing_key)"
            )
        if self.signer is not None:
            return SIGNED, self.signer.id
        return (KEYED, self.signing) if self.signing else (PLAIN, None)

    def link(self, prev_hash: str, row: Row) -> str:
        """The hash of `row` (whose scheme and key_id are already set) after `prev_hash`."""
        scheme = row["scheme"]
        if scheme == LEGACY:
            return legacy_hash(prev_hash, row)
        if scheme in (PLAIN, SIGNED):
            return hashlib.sha256(canonical(prev_hash, row)).hexdigest()
        if scheme == KEYED:
            key = self.keys.get(row["key_id"])
            if key is None:
                raise KeyError(row["key_id"])
            return hmac.new(key, canonical(prev_hash, row), hashlib.sha256).hexdigest()
        raise ValueError(f"unknown link scheme {scheme!r}")

    def sign(self, digest: str) -> str | None:
        """This writer's signature of a link (hex), or None when it signs nothing."""
        if self.signer is None:
            return None
        return self.signer.key.sign(_SIGNATURE_CONTEXT + bytes.fromhex(digest)).hex()

    def check(self, row: Row, *, roles: bool = True) -> str | None:
        """The problem with one event on its own (its link, its signature, its key's
        validity and, with `roles`, its role), or None. Needs no other event: the hot
        path's check."""
        event_id, scheme = row["id"], row["scheme"]
        try:
            digest = self.link(row["prev_hash"], row)
        except KeyError:
            return (
                f"event {event_id}: signed with audit key {row['key_id']!r}, which is not "
                "configured (list it under [audit] keys to verify)"
            )
        except ValueError as exc:
            return f"event {event_id}: {exc}"
        if not hmac.compare_digest(digest, row["hash"]):
            return f"event {event_id}: its content was changed"
        if scheme != SIGNED:
            return None
        listed = self.public.get(row.get("key_id") or "")
        if listed is None:
            return (
                f"event {event_id}: signed by key {row.get('key_id')!r}, which is not in the "
                "public keyring"
            )
        try:
            listed.key.verify(
                bytes.fromhex(row.get("signature") or ""),
                _SIGNATURE_CONTEXT + bytes.fromhex(digest),
            )
        except (InvalidSignature, ValueError):
            return (
                f"event {event_id}: its signature is not key {listed.id!r}'s "
                "(forged, or signed by another writer)"
            )
        at = row["at"]
        if isinstance(at, datetime) and not listed.valid_at(at.astimezone(UTC)):
            return f"event {event_id}: key {listed.id!r} was not valid at {_iso(at)}"
        return role_problem(row, listed.roles) if roles else None

    def claim_problem(self, row: Row, signed_since: int | None) -> str | None:
        """With a public keyring, the claim trusts only signed events, except those written
        before the first signed event of the chain (`signed_since`: its seq; None when
        there is none yet), which older writers made under the scheme of their day."""
        if not self.signed or row["scheme"] == SIGNED:
            return None
        if signed_since is None or row["seq"] < signed_since:
            return None
        return (
            f"event {row['id']}: not signed (scheme {row['scheme']!r}, written after "
            "signing began): anyone with database access can write it"
        )

    def roles_of(self, row: Row) -> frozenset[str] | None:
        """The roles of a signed event's key (None: not a signed event, or unknown key)."""
        if row["scheme"] != SIGNED:
            return None
        listed = self.public.get(row.get("key_id") or "")
        return listed.roles if listed is not None else None


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def role_problem(row: Row, roles: frozenset[str]) -> str | None:
    """A signed event its key's roles do not allow: a request needs an operator's key."""
    if OPERATOR in roles:
        return None
    kind, detail = row["kind"], row.get("detail") or {}
    requested = kind in REQUEST_KINDS or (
        kind == "started"
        and detail.get("trigger") in ("manual", "emergency")
        and not detail.get("follows")
    )
    if requested:
        return (
            f"event {row['id']}: {kind!r} is an operator's request, but key "
            f"{row.get('key_id')!r} may only {', '.join(sorted(roles)) or 'nothing'}"
        )
    return None


def trail_problems(
    rotation_id: int,
    events: Sequence[Row],
    keyring: Keyring,
    *,
    check_each: bool = True,
    signed_since: int | None = None,
) -> list[str]:
    """What is wrong with one rotation's own events (in sequence order): with
    `check_each`, the events that decide what the engine may do must check out on their
    own (link, signature, role; see `_decisive`); the first must be a `started` event;
    and a request flag may be raised only by an event an operator's key signed."""
    problems: list[str] = []
    if not events:
        return [f"rotation {rotation_id} has no audit event (inserted outside rotator)"]
    if check_each:
        for row in (events[i] for i in sorted(_decisive(events))):
            found = keyring.check(row) or keyring.claim_problem(row, signed_since)
            if found:
                problems.append(f"rotation {rotation_id}: {found}")
    first = events[0]
    if closed_unbacked(events, keyring):
        pass  # refused, then closed by an operator without acting: an incident, not a fault
    elif first["scheme"] != LEGACY and first["kind"] != "started":
        problems.append(
            f"rotation {rotation_id} does not begin with a started event (event "
            f"{first['id']} is {first['kind']!r}): inserted outside rotator"
        )
    raised: dict[str, bool] = dict.fromkeys(REQUEST_FLAGS, False)
    for row in events:
        state = ((row.get("state") or {}).get("rotation")) or {}
        for flag in REQUEST_FLAGS:
            now_set = bool(state.get(flag))
            if now_set and not raised[flag] and flag in state and row["scheme"] == SIGNED:
                listed = keyring.public.get(row.get("key_id") or "")
                if listed is not None and OPERATOR not in listed.roles:
                    problems.append(
                        f"rotation {rotation_id}: {flag} raised by event {row['id']}, signed by "
                        f"{row.get('key_id')!r}, which is not an operator's key"
                    )
            if flag in state:
                raised[flag] = now_set
    return problems


def closed_unbacked(events: Sequence[Row], keyring: Keyring) -> bool:
    """A row the engine refused (no valid started event) that an operator then closed with
    `rotator cancel` (kind `cancelled`, detail `unbacked`): nothing was acted on."""
    first, last = events[0], events[-1]
    if first["kind"] not in ("refused", "cancelled") or last["kind"] != "cancelled":
        return False
    if not (last.get("detail") or {}).get("unbacked"):
        return False
    roles = keyring.roles_of(last)
    return not keyring.signed or (roles is not None and OPERATOR in roles)


def _decisive(events: Sequence[Row]) -> set[int]:
    """The events whose signatures decide what the engine may do: the first (who started
    the rotation), the newest (the snapshot the row must equal), and each one that raised
    a request flag (it must be an operator's). The others cannot change either: a forged
    one in between is found by `audit verify`, which walks every link."""
    picked = {0, len(events) - 1}
    before: dict[str, bool] = {}
    for index, row in enumerate(events):
        state = ((row.get("state") or {}).get("rotation")) or {}
        for flag in REQUEST_FLAGS:
            if flag in state:
                if state[flag] and not before.get(flag):
                    picked.add(index)
                before[flag] = bool(state[flag])
    return picked


def row_problems(
    what: str, recorded: Mapping[str, Any] | None, actual: Mapping[str, Any]
) -> str | None:
    """Which audited fields of a row differ from the snapshot its newest event recorded
    (only fields both carry: an older event did not record fields added since)."""
    if recorded is None:
        return None
    differ = sorted(k for k in set(recorded) & set(actual) if recorded[k] != actual[k])
    if differ:
        return (
            f"{what}: {', '.join(differ)} differ from its newest audit event "
            "(edited outside rotator)"
        )
    return None


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
    unverified: int = 0  # HMAC events before the signed part, verified without their key
    signed_from: tuple[int, int] | None = None  # (seq, event id) of the first signed event
    refused: list[str] = field(default_factory=list)  # rows the engine refused (incidents)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def keyed(self) -> bool:
        """At least one event is keyed or signed (the walk refuses a weaker one after it)."""
        return self.schemes.get(KEYED, 0) > 0 or self.signed

    @property
    def signed(self) -> bool:
        return self.schemes.get(SIGNED, 0) > 0

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
        if self.signed and self.signed_from is not None:
            seq, event_id = self.signed_from
            hmac_part = self.schemes.get(KEYED, 0)
            older = ""
            if hmac_part:
                older = f"; {hmac_part} older HMAC event(s)" + (
                    f", {self.unverified} of them unchecked (no HMAC key)"
                    if self.unverified
                    else ""
                )
            proof = (
                "without --checkpoint, removal of the newest events cannot be detected"
                if self.checkpoint is None
                else f"nothing up to checkpoint seq {self.checkpoint.seq} (event "
                f"{self.checkpoint.event_id}) was changed, removed or re-ordered"
            )
            return (
                f"SIGNED from seq {seq} (event {event_id}) by "
                f"{', '.join(sorted(self.keys_used))}{older}{before}: a change needs a "
                f"writer's private key; {proof}"
            )
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
            "signed": self.signed,
            "signed_from": (
                {"seq": self.signed_from[0], "event_id": self.signed_from[1]}
                if self.signed_from
                else None
            ),
            "unverified_hmac_events": self.unverified,
            "refused": list(self.refused),
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
        self.trails: dict[int, list[dict[str, Any]]] = {}  # per rotation: kind, signer, flags
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
        if self.latest_scheme and _RANK.get(scheme, -1) < _RANK[self.latest_scheme]:
            self._fail(
                f"event {event_id}: linked with {scheme} after {self.latest_scheme} events "
                "(rewritten without the key?)"
            )
            return
        if scheme == KEYED and row.get("key_id") not in self.keyring.keys and self.keyring.signed:
            # Before the signed part, with only the public keyring: an HMAC link cannot be
            # recomputed without its key. Continuity is still checked (the first signed
            # event signs the last HMAC link, so the older part cannot be swapped wholesale).
            self.result.unverified += 1
        else:
            problem = self.keyring.check(row, roles=False)
            if problem:
                self._fail(problem)
                return
            roles = self.keyring.roles_of(row)
            wrong = role_problem(row, roles) if roles is not None else None
            if wrong:
                self.result.problems.append(wrong)  # a writer out of its role: not a broken link
        if scheme == SIGNED and self.result.signed_from is None:
            self.result.signed_from = (row["seq"], event_id)
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
        if row["kind"] == "refused":
            # The engine found a row its events did not back and refused it (and put back
            # what they recorded, if anything): the rows may agree again, the incident stays.
            first = ((row.get("detail") or {}).get("problems") or ["?"])[0]
            self.result.refused.append(f"event {event_id} ({_iso(row['at'])}): {first}")
        state = row.get("state")
        if row["rotation_id"] is not None:
            recorded = (state or {}).get("rotation")
            self.rotation_state[row["rotation_id"]] = recorded
            flags = {k: v for k, v in (recorded or {}).items() if k in REQUEST_FLAGS}
            self.trails.setdefault(row["rotation_id"], []).append(
                {
                    "id": event_id,
                    "kind": row["kind"],
                    "scheme": scheme,
                    "key_id": row.get("key_id"),
                    "detail": {"unbacked": bool((row.get("detail") or {}).get("unbacked"))},
                    "state": {"rotation": flags},
                }
            )
        if scheme == LEGACY:
            self.credential_state[row["credential"]] = None
        elif state is not None and state.get("credential") is not None:
            self._hold_changed_by(row, state["credential"])
            self.credential_state[row["credential"]] = state["credential"]

    def _hold_changed_by(self, row: Row, recorded: Mapping[str, Any]) -> None:
        """A hold is an operator's request: only an operator's key may put or lift it."""
        if row["scheme"] != SIGNED:
            return
        listed = self.keyring.public.get(row.get("key_id") or "")
        if listed is None or OPERATOR in listed.roles:
            return
        before = self.credential_state.get(row["credential"]) or {}
        if any(recorded.get(k) != before.get(k) for k in HOLD_FIELDS if k in recorded):
            self.result.problems.append(
                f"credential {row['credential']}: hold changed by event {row['id']}, signed "
                f"by {row.get('key_id')!r}, which is not an operator's key"
            )

    def finish(
        self, head_seq: int | None, head_hash: str | None, head_event_id: int | None
    ) -> Verification:
        """Compare the end of the walk with the chain head and the checkpoint."""
        result = self.result
        result.head_seq = self.seq
        if (
            not self.broken
            and self.keyring.signed
            and self.latest_scheme is not None
            and self.latest_scheme != SIGNED
        ):
            self._fail(
                f"the newest event (event {self.last_event_id}) is not signed "
                f"({self.latest_scheme}) though a public keyring is configured: the chain was "
                "rewritten without a writer's key (or no event was appended since signing "
                "was configured)"
            )
        if (
            not self.broken
            and self.keyring.keyed
            and self.latest_scheme is not None
            and self.latest_scheme not in (KEYED, SIGNED)
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
            result.problems.extend(
                trail_problems(
                    rotation_id, self.trails[rotation_id], self.keyring, check_each=False
                )
            )
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
        problem = row_problems(what, recorded, actual)
        if problem:
            self.result.problems.append(problem)
        else:
            self.result.replayed += 1
