"""`rotator audit verify` on a database that is being written to (a daemon is running).

Found by the crash matrix: its PostgreSQL cells share one database, and verifying the
chain while other rotator processes appended events reported a break that was not there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from rotator.adapters.db import migrate
from rotator.adapters.db.store import Store, make_engine
from rotator.domain.model import Trigger


def test_verify_is_not_fooled_by_an_event_appended_while_it_reads(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    reader, writer = Store(engine), Store(make_engine(pg_url))
    writer.sync_credentials({"analytics": "h"})
    writer.start("analytics", Trigger.MANUAL, actor="test")
    appended: list[bool] = []

    @event.listens_for(engine, "before_cursor_execute")
    def append_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The moment the reader turns from the events to the chain head, a daemon appends.
        if "FROM chain_head" in statement and "FOR UPDATE" not in statement and not appended:
            appended.append(True)
            writer.adopt("analytics", "0f4a8374ccf04b37888b6bb81dbf165c", "v1", actor="daemon")

    try:
        checked, problem = reader.verify_chain()
    finally:
        engine.dispose()
        writer.engine.dispose()

    assert appended, "the race was not staged"
    assert problem is None, problem
    assert checked >= 1
