"""Is a row backed by its signed audit events? The checks made before acting on a row.

Act only on what a verified writer asked for (issue 27): before a write whose event would
snapshot a row, the row must agree with its newest valid event (else rotator's own signed
event would copy a forged field into a valid record); a claimed rotation that does not is
refused (needs_attention, one `refused` event whose notice is the alert) and what its
newest valid events recorded is put back. This is safety code: moved here whole from the
store, not rewritten.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from rotator import redaction
from rotator.adapters.db.audit import NewEvent
from rotator.adapters.db.tables import credentials, events, rotations
from rotator.adapters.db.tx import Tx
from rotator.domain.errors import RequestRefused
from rotator.domain.events import EventKind
from rotator.domain.model import State

log = structlog.get_logger("rotator.store")

REFUSED_RECHECK = timedelta(hours=1)  # an unbacked rotation is looked at again, quietly
_TIMES = frozenset(
    {"created_at", "promoted_at", "finished_at", "secret_created_at", "last_rotated_at", "held_at"}
)


def require_backed(tx: Tx, credential: str, rotation_id: int | None = None) -> None:
    """Before a write whose event would snapshot these rows: refuse (RequestRefused,
    nothing written) when the credential row, or the rotation row, does not agree
    with its newest valid signed event. Otherwise rotator's own signed event would
    copy a forged field into a valid record. Only with a public keyring: without one
    nothing is signed, and the claim's own check is all there is."""
    if not tx.audit.keyring().signed:
        return
    problems, _ = tx.audit.credential_problems(tx.conn, credential)
    if rotation_id is not None:
        row = tx.conn.execute(select(rotations).where(rotations.c.id == rotation_id))
        found = row.mappings().first()
        if found is not None:
            problems += tx.audit.rotation_problems(tx.conn, found)[0]
    if problems:
        raise RequestRefused(
            f"{problems[0]}; refused: the rows are not backed by their signed audit "
            "events (run `rotator audit verify`)"
        )


def claimed_is_backed(tx: Tx, row: Any, now: datetime) -> bool:
    """True if the rotation row and its credential row agree with their newest valid
    events; else refuse the rotation (needs_attention, an alert) and return False."""
    problems, trusted = tx.audit.rotation_problems(tx.conn, row)
    cred_problems, cred_trusted = tx.audit.credential_problems(tx.conn, row["credential"])
    if not problems and not cred_problems:
        return True
    _refuse(tx, row, problems + cred_problems, trusted, cred_trusted, now)
    return False


def _refuse(
    tx: Tx,
    row: Any,
    problems: list[str],
    trusted: dict[str, Any] | None,
    cred_trusted: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Refuse an unbacked rotation: put back what its newest valid events recorded
    (when there is such a record), hold it in needs_attention for a person, and append
    one `refused` event, whose needs_attention notice is the alert. Nothing is acted
    on: the claim that found it returns without it."""
    log.error(
        "rotation refused: not backed by its signed audit events",
        rotation_id=row["id"],
        credential=row["credential"],
        problems=problems,
    )
    wait = {
        "lease_owner": None,
        "lease_expires_at": None,
        "next_attempt_at": now + REFUSED_RECHECK,
    }
    newest = tx.conn.execute(
        select(events.c.kind)
        .where(events.c.rotation_id == row["id"])
        .order_by(events.c.seq.desc())
        .limit(1)
    ).scalar()
    if trusted is None and newest == "refused":
        # Refused before and still unbacked: nothing to put back; one alert is enough.
        tx.conn.execute(update(rotations).where(rotations.c.id == row["id"]).values(**wait))
        return
    values = _refused_values(row, problems, trusted, wait, now)
    tx.conn.execute(update(rotations).where(rotations.c.id == row["id"]).values(**values))
    if cred_trusted is not None:
        _restore_credential(tx, row["credential"], cred_trusted, now)
    tx.record(
        NewEvent(
            rotation_id=row["id"],
            credential=row["credential"],
            actor="rotator",
            kind=EventKind.REFUSED,
            from_state=row["state"],
            to_state=values["state"],
            detail={"problems": problems[:10], "restored": trusted is not None},
            at=now,
        )
    )


def _refused_values(
    row: Any,
    problems: list[str],
    trusted: dict[str, Any] | None,
    wait: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The refused rotation's columns: what its newest valid event recorded (if any),
    held in needs_attention unless it had ended, the lease dropped."""
    values: dict[str, Any] = dict(wait)
    if trusted is not None:
        values.update(_columns(trusted, rotations.c))
    state = values.get("state", row["state"])
    if not State(state).terminal:
        values["resume_state"] = (
            values.get("resume_state", row["resume_state"])
            if state == State.NEEDS_ATTENTION.value
            else (state if trusted is not None else None)
        )
        values["state"] = State.NEEDS_ATTENTION.value
    values["last_error"] = redaction.redact(f"refused: {problems[0]}")[:500]
    if values["state"] != row["state"]:
        values["state_since"] = now
    return values


def refuse_unbacked_credential(tx: Tx, name: str) -> list[str]:
    """Before a scheduled start: the credential row (its hold above all) must agree with
    its newest valid event. If not, put back what that event recorded, append one
    `refused` event (a needs_attention notice: the alert) and return the problems."""
    problems, trusted = tx.audit.credential_problems(tx.conn, name)
    if not problems:
        return []
    now = tx.now()
    log.error(
        "credential refused: not backed by its signed audit events",
        credential=name,
        problems=problems,
    )
    if trusted is not None:
        _restore_credential(tx, name, trusted, now)
    tx.record(
        NewEvent(
            credential=name,
            actor="rotator",
            kind=EventKind.REFUSED,
            to_state=State.NEEDS_ATTENTION.value,
            detail={"problems": problems[:10], "restored": trusted is not None},
            at=now,
        )
    )
    return problems


def _restore_credential(tx: Tx, name: str, snapshot: dict[str, Any], now: datetime) -> None:
    """Put back the credential row its newest valid event recorded."""
    tx.conn.execute(
        update(credentials)
        .where(credentials.c.name == name)
        .values(**_columns(snapshot, credentials.c), updated_at=now)
    )


def _columns(snapshot: dict[str, Any], columns: Any) -> dict[str, Any]:
    """A snapshot recorded in an event, as column values to write back."""
    values: dict[str, Any] = {}
    for name, value in snapshot.items():
        if name not in columns:
            continue  # "detail.inherits" and the like: carried inside `detail`
        if name in _TIMES and isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[name] = value
    return values
