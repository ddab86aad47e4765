"""What the claim's check (issue 27) costs: a rotation with 41 events, on SQLite.

Prints, unsigned and signed (Ed25519): the check alone (the rotation's decisive events
and its credential's newest event against the rows) and a claim + release with it.
Run: python bench/claim_check.py  (figures in docs/operations.md, "What the engine checks")
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, select

from rotator.adapters.db import migrate
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.store import Store
from rotator.adapters.db.tables import rotations
from rotator.audit import keys
from rotator.audit.signing import Keyring
from rotator.domain.model import Trigger

LEASE = timedelta(seconds=30)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="rotator-claim-check-"))
    public = keys.generate_signing_key(folder / "w.key")
    (folder / "ring.toml").write_text(keys.keyring_entry("w", public, ("daemon", "operator")))
    ring = keys.load_keyring(folder / "ring.toml")
    signed = Keyring(public=ring, signer=keys.load_signer(folder / "w.key", ring))
    for name, keyring in (("unsigned", Keyring()), ("signed", signed)):
        engine = create_engine(f"sqlite:///{folder}/{name}.db")
        migrate.upgrade(engine)
        store = Store(engine, audit=AuditLog(keyring))
        store.sync_credentials({"a": "h"})
        rotation = store.start("a", Trigger.MANUAL, actor="ops")
        claim = store.claim("me", LEASE, rotation_id=rotation.id, due_only=False)[0]
        for attempt in range(40):
            new = claim.rotation.evolve(attempts=attempt)
            claim = store.save(claim, new, kind="poll", actor="me", keep_lease=LEASE)
        store.release(claim)
        with engine.connect() as conn:
            row = conn.execute(select(rotations).where(rotations.c.id == rotation.id))
            found = row.mappings().one()
            started = time.perf_counter()
            for _ in range(200):
                problems, _ = store.audit.rotation_problems(conn, found)
                store.audit.credential_problems(conn, "a")
            check = (time.perf_counter() - started) / 200
        assert not problems, problems
        started = time.perf_counter()
        for _ in range(50):
            store.release(store.claim("me", LEASE, rotation_id=rotation.id, due_only=False)[0])
        claimed = (time.perf_counter() - started) / 50
        print(
            f"{name}: 41 events on the rotation; check {check * 1000:.2f} ms; "
            f"claim+release {claimed * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
