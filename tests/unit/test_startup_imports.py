"""What a command on SQLite imports: nothing it does not use (bench/emergency.py times it).

Each check runs in a fresh interpreter: this one has imported everything the suite uses.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sqlalchemy.schema import CreateIndex

from rotator.adapters.db import tables
from rotator.adapters.db.store import make_engine


def _modules_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(ran.stdout.split())


def test_a_sqlite_app_does_not_load_the_postgresql_dialect(tmp_path: object) -> None:
    loaded = _modules_after(
        f"""
        from rotator import app
        from rotator.adapters.db.store import make_engine
        import rotator.cli.rotation
        with make_engine("sqlite:///{tmp_path}/x.db").connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        """
    )
    assert "rotator.app" in loaded and "sqlalchemy.dialects.sqlite" in loaded
    assert not {m for m in loaded if m.startswith("sqlalchemy.dialects.postgresql")}


def test_the_one_unfinished_index_is_partial_on_both_databases() -> None:
    """I3's index has the same condition on PostgreSQL as on SQLite once a PostgreSQL
    engine exists (the migrations create it; this is the metadata's description of it)."""
    sqlite = make_engine("sqlite://")
    postgresql = make_engine("postgresql://nobody@127.0.0.1:1/none")  # never connects
    index = next(i for i in tables.rotations.indexes if i.name == "uq_rotations_one_unfinished")
    for engine in (sqlite, postgresql):
        ddl = str(CreateIndex(index).compile(dialect=engine.dialect))
        assert ddl.endswith("ON rotations (credential) WHERE finished_at IS NULL"), ddl
