"""Who may write the audit chain: each writer's Ed25519 key, the public keyring, and roles.

Each event written now is signed with Ed25519 by the writer that made it (a daemon, an
operator's CLI), under that writer's own key id: `signature = Ed25519(private key, hash)`
over the link of rotator/audit/chain.py. Verifying needs only the public keyring (key id
-> public key, roles, validity), so an auditor can check the chain without being able to
forge it, and a holder of one key can only speak as that key's writer (a daemon key may
not request: see `role_problem`). Older events keep their scheme: HMAC-SHA256 (verifiable
with the old HMAC key, listed under [audit] keys), plain SHA-256, and rotator 0.1's
"sha256-v1". The signed part begins at the first "ed25519" event; no weaker scheme may
follow it (rotator/audit/verify.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rotator.audit.chain import KEYED, LEGACY, PLAIN, SIGNED, Row, canonical, iso, legacy_hash

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
            return f"event {event_id}: key {listed.id!r} was not valid at {iso(at)}"
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
