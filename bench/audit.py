"""Audit chain cost: appending keyed events, and `audit verify` over a long trail.

A year of a large fleet is about 10^5 events (bench/year.py); verify reads them all in one
snapshot, so its time grows with the trail. This prints:
- append: events appended per second through Store (one transaction each, keyed), and the
  same unkeyed, on SQLite and PostgreSQL;
- verify: seconds to verify N keyed events (links, seq, head, checkpoint, replay).

    .venv/bin/python bench/audit.py                 # 100,000 events, both databases
    .venv/bin/python bench/audit.py --events 20000 --db sqlite
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.pool import NullPool

from rotator.adapters.db import migrate
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import chain_head, credentials, events
from rotator.audit.chain import GENESIS, KEYED, Checkpoint
from rotator.audit.signing import Keyring

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def appended_per_second(store: Store, count: int) -> float:
    started = time.perf_counter()
    for n in range(count):
        store.adopt("bench", f"u{n}", f"v{n}", actor="bench")
    return count / (time.perf_counter() - started)


def bulk_trail(url: str, keyring: Keyring, count: int) -> Checkpoint:
    """`count` keyed events written straight into the table (what years of appends leave)."""
    engine = make_engine(url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    prev, rows = GENESIS, []
    state = {"rotation": None, "credential": {"current_uuid": "u", "current_version": "v"}}
    for seq in range(1, count + 1):
        row: dict[str, Any] = {
            "id": seq,
            "seq": seq,
            "rotation_id": None,
            "credential": "bulk",
            "at": at + timedelta(seconds=seq),
            "actor": "bench",
            "actor_verified": "aws:arn:aws:sts::123456789012:user/bench os:bench(uid 1)",
            "kind": "adopted",
            "from_state": None,
            "to_state": None,
            "detail": {"uuid": "u", "aws_version": "v"},
            "state": state,
            "scheme": KEYED,
            "key_id": "k1",
            "prev_hash": prev,
        }
        row["hash"] = prev = keyring.link(prev, row)
        rows.append(row)
    with engine.begin() as conn:
        conn.execute(
            insert(credentials).values(
                name="bulk", config_hash="h", current_uuid="u", current_version="v", updated_at=at
            )
        )
        for i in range(0, len(rows), 5000):
            conn.execute(insert(events), rows[i : i + 5000])
        conn.execute(update(chain_head).values(hash=prev, last_event_id=count, seq=count))
    engine.dispose()
    last = rows[-1]
    return Checkpoint(count, count, last["hash"], KEYED, "k1", last["at"].isoformat())


def run(db: str, count: int, appends: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if db == "sqlite":
            urls = [f"sqlite:///{Path(tmp) / f'{n}.db'}" for n in range(2)]
            admin = None
        else:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            names = [f"rotator_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
            with admin.connect() as conn:
                for name in names:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            urls = [PG_ADMIN.rsplit("/", 1)[0] + f"/{n}" for n in names]
        try:
            keyring = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
            for url in urls:
                migrate.upgrade(make_engine(url))
            keyed = Store(make_engine(urls[0]), audit=AuditLog(keyring))
            keyed.sync_credentials({"bench": "h"})
            plain = Store(make_engine(urls[0]))
            rate_keyed = appended_per_second(keyed, appends)
            rate_plain = appended_per_second(plain, appends)
            print(f"{db}: append {rate_keyed:.0f} events/s keyed, {rate_plain:.0f}/s unkeyed")
            checkpoint = bulk_trail(urls[1], keyring, count)
            store = Store(make_engine(urls[1]), audit=AuditLog(keyring))
            started = time.perf_counter()
            result = store.verify(checkpoint)
            seconds = time.perf_counter() - started
            assert result.ok, result.problems
            print(
                f"{db}: verify {result.checked} keyed events against a checkpoint, "
                f"{result.replayed} rows replayed: {seconds:.2f} s "
                f"({result.checked / seconds:,.0f} events/s)"
            )
            for s in (keyed, plain, store):
                s.engine.dispose()
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    for name in names:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        run(db, args.events, args.appends)


if __name__ == "__main__":
    main()
