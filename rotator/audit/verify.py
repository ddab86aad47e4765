"""Verifying the audit chain, pure: the walk over every link, the replay of the recorded
state against the rows, and the checks of one rotation's own events (I11).

The walk (`ChainWalk`) is fed events in sequence order: each link must follow the one
before it, no weaker scheme may follow a stronger one, and a checkpoint's event must be
there unchanged. Replaying the newest state per row and comparing it with the rows
catches a direct edit of `rotations` or `credentials` that wrote no event. What it found,
and how much that proves, is a `Verification`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rotator.audit.chain import (
    CREDENTIAL_FIELDS,
    GENESIS,
    KEYED,
    LEGACY,
    PLAIN,
    SIGNED,
    Checkpoint,
    Row,
    iso,
    rotation_snapshot,
    snapshot,
)
from rotator.audit.signing import (
    HOLD_FIELDS,
    OPERATOR,
    REQUEST_FLAGS,
    Keyring,
    role_problem,
)

# No weaker scheme may follow a stronger one: a rewrite without the key would have to.
_RANK = {LEGACY: 0, PLAIN: 1, KEYED: 2, SIGNED: 3}


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
        """Check one event (the next in sequence order) and keep the state it recorded."""
        if self.broken:
            return
        problem = self._continuity(row) or self._authenticity(row) or self._at_checkpoint(row)
        if problem:
            self._fail(problem)
            return
        self._advance(row)
        self._record_state(row)

    def _continuity(self, row: Row) -> str | None:
        """The event must follow the last one checked: its link, its sequence number, and a
        scheme no weaker than the newest so far."""
        event_id, scheme = row["id"], row["scheme"]
        if row["prev_hash"] != self.prev:
            return (
                f"event {event_id}: the event before it was changed or removed "
                f"(its link does not match)"
            )
        if row["seq"] != self.seq + 1:
            return (
                f"event {event_id}: sequence {row['seq']} follows {self.seq} "
                "(events removed or re-ordered)"
            )
        if self.latest_scheme and _RANK.get(scheme, -1) < _RANK[self.latest_scheme]:
            return (
                f"event {event_id}: linked with {scheme} after {self.latest_scheme} events "
                "(rewritten without the key?)"
            )
        return None

    def _authenticity(self, row: Row) -> str | None:
        """The event's own link and signature (a broken one stops the walk); a writer out of
        its role is a problem, not a broken link."""
        scheme = row["scheme"]
        if scheme == KEYED and row.get("key_id") not in self.keyring.keys and self.keyring.signed:
            # Before the signed part, with only the public keyring: an HMAC link cannot be
            # recomputed without its key. Continuity is still checked (the first signed
            # event signs the last HMAC link, so the older part cannot be swapped wholesale).
            self.result.unverified += 1
        else:
            problem = self.keyring.check(row, roles=False)
            if problem:
                return problem
            roles = self.keyring.roles_of(row)
            wrong = role_problem(row, roles) if roles is not None else None
            if wrong:
                self.result.problems.append(wrong)  # a writer out of its role: not a broken link
        if scheme == SIGNED and self.result.signed_from is None:
            self.result.signed_from = (row["seq"], row["id"])
        return None

    def _at_checkpoint(self, row: Row) -> str | None:
        """The event at the checkpoint's sequence number must be the one it pinned."""
        event_id, cp = row["id"], self.result.checkpoint
        if cp is not None and row["seq"] == cp.seq:
            if event_id != cp.event_id or not hmac.compare_digest(row["hash"], cp.mac):
                return (
                    f"event {event_id}: differs from the checkpoint at seq {cp.seq} "
                    f"(event {cp.event_id}): the chain was rewritten"
                )
            self.result.checkpoint_reached = True
        return None

    def _advance(self, row: Row) -> None:
        """Count a checked event, and keep an incident the engine recorded."""
        event_id, scheme = row["id"], row["scheme"]
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
            self.result.refused.append(f"event {event_id} ({iso(row['at'])}): {first}")

    def _record_state(self, row: Row) -> None:
        """Keep the newest state the event recorded per row, for the replay."""
        event_id, scheme = row["id"], row["scheme"]
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
