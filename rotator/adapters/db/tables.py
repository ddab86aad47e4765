"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; a test proves they agree.

Times are stored as timezone-aware UTC timestamps. No column ever holds a secret value:
uuids, AWS version ids and the ClientRequestToken (an idempotency key, not a secret) only.
"""

from __future__ import annotations

from datetime import UTC as _UTC
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on both databases (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: rotator stores UTC only")
        value = value.astimezone(_UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=_UTC) if moment.tzinfo is None else moment.astimezone(_UTC)


UTC = UTCDateTime()
# BigInteger ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for its rowid autoincrement.
Id = BigInteger().with_variant(Integer(), "sqlite")

credentials = Table(
    "credentials",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("config_hash", String(64), nullable=False),
    Column("current_uuid", String(64)),
    # The AWSCURRENT version the uuid above was established for: an adopted uuid is
    # trusted only while AWSCURRENT is still that version.
    Column("current_version", String(64)),
    Column("secret_created_at", UTC),
    Column("last_rotated_at", UTC),
    Column("last_failed_at", UTC),
    Column("surveyed_at", UTC),
    Column("last_error", Text),
    Column("updated_at", UTC, nullable=False),
    # A hold (set by `rotator cancel`, lifted by `rotator resume`): no scheduled rotation
    # starts while held_at is set; emergencies ignore it. Every change is an audit event.
    Column("held_at", UTC),
    Column("held_by", String(128)),
    Column("hold_reason", Text),
)

_UNFINISHED = "finished_at IS NULL"

rotations = Table(
    "rotations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("credential", String(128), ForeignKey("credentials.name"), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("state", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("old_uuid", String(64)),
    Column("new_uuid", String(64)),
    Column("known_uuids", JSON, nullable=False),
    Column("request_token", String(64)),
    Column("previous_version", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTC),
    Column("last_error", Text),
    Column("resume_state", String(32)),
    Column("evidence", JSON),
    Column("detail", JSON, nullable=False),
    Column("emergency_requested", Boolean, nullable=False, server_default=text("false")),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", UTC),
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("created_at", UTC, nullable=False),
    Column("state_since", UTC, nullable=False),
    Column("promoted_at", UTC),
    Column("finished_at", UTC),
    # I3: at most one unfinished rotation per credential, held by the database itself.
    Index(
        "uq_rotations_one_unfinished",
        "credential",
        unique=True,
        sqlite_where=text(_UNFINISHED),
    ),
    Index("ix_rotations_due", "finished_at", "next_attempt_at"),
)


def describe_for_postgresql() -> None:
    """Give the I3 index its PostgreSQL condition (the same as SQLite's).

    Naming a dialect's option loads that dialect, and SQLAlchemy's PostgreSQL dialect costs
    ~20 ms to import (a fifth of rotator's own start-up in `rotate --emergency`), so the
    table definition names SQLite's alone and `make_engine` calls this for a PostgreSQL
    URL, which loads that dialect anyway. The migrations create the index on both.
    """
    index = next(i for i in rotations.indexes if i.name == "uq_rotations_one_unfinished")
    index.dialect_options["postgresql"]["where"] = text(_UNFINISHED)


events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rotation_id", Id, ForeignKey("rotations.id")),
    Column("credential", String(128), nullable=False),
    Column("at", UTC, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("from_state", String(32)),
    Column("to_state", String(32)),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Audit chain (rotator/audit/chain.py): contiguous position, how `hash` was made (hmac-sha256
    # with key `key_id`, unkeyed sha256, or 0.1's sha256-v1), the verified identity beside
    # the claimed `actor`, and the audited fields of the rotation/credential row after it.
    Column("seq", Id, nullable=False),
    Column("scheme", String(16), nullable=False),
    Column("key_id", String(64)),
    Column("actor_verified", Text),
    Column("state", JSON),
    # scheme "ed25519": the writer's signature of `hash` (hex), checked with the public
    # keyring's key `key_id` (issue 27).
    Column("signature", String(128)),
    Index("ix_events_credential_id", "credential", "id"),
    Index("uq_events_seq", "seq", unique=True),
    Index("ix_events_rotation_id", "rotation_id"),
)

# One row: the newest event hash. Updating it in every event's transaction serialises
# appends, so concurrent writers on PostgreSQL cannot fork the chain.
chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_event_id", Id),
    Column("hash", String(64), nullable=False),
    Column("seq", Id, nullable=False, server_default="0"),
)

# Notifications owed, one row per (audit event, webhook receiver), written in the event's own
# transaction (rotator/adapters/db/outbox.py). A row is done once delivered or expired; a
# sender holds it by `claimed_by` until `claim_expires_at`, so replicas never send it twice.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id"), nullable=False),
    Column("receiver", String(64), nullable=False),
    Column("credential", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTC, nullable=False),
    Column("next_attempt_at", UTC, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("claimed_by", String(128)),
    Column("claim_expires_at", UTC),
    Column("delivered_at", UTC),
    Column("expired_at", UTC),
    Column("last_error", Text),
    Index("uq_outbox_event_id_receiver", "event_id", "receiver", unique=True),
    # The order rows go out in: per receiver and credential, oldest first.
    Index("ix_outbox_receiver_credential_id", "receiver", "credential", "id"),
    Index("ix_outbox_pending", "delivered_at", "expired_at", "next_attempt_at"),
)

# Liveness (issue 29; rotator/adapters/db/fleet.py). Each daemon's heartbeat row, written
# every takeover check: its readiness write probe, and the live replica count the fleet sees.
replicas = Table(
    "replicas",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("started_at", UTC, nullable=False),
    Column("seen_at", UTC, nullable=False),
)

# Short claims on fleet-wide chores (one survey per credential and period across replicas):
# taken with a conditional upsert, free again once `until` passed.
fleet_claims = Table(
    "fleet_claims",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("until", UTC, nullable=False),
)

# The AWS write budget shared by every replica: the next free write slot (seconds since the
# epoch on the database's clock), one row per AWS region and endpoint.
write_budget = Table(
    "write_budget",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("next_at", Float, nullable=False),
)
