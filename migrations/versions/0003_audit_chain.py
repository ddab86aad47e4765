"""keyed audit chain, checkpoints, verified actors (issue 12)

Events gain a contiguous sequence number (what a published checkpoint names), the link
scheme and audit key id that made their hash (so the key can be rotated), the verified
identity next to the claimed actor, and the audited state of their rows after the change
(for replay). Events written by 0.1 are numbered in id order and marked "sha256-v1": they
keep verifying as the unkeyed events they are.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("seq", _ID, nullable=True))
        batch.add_column(sa.Column("scheme", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("actor_verified", sa.Text(), nullable=True))
        batch.add_column(sa.Column("state", sa.JSON(), nullable=True))
    with op.batch_alter_table("chain_head") as batch:
        batch.add_column(sa.Column("seq", _ID, server_default="0", nullable=False))

    conn = op.get_bind()
    events = sa.table("events", sa.column("id", _ID), sa.column("seq", _ID))
    ids = [row[0] for row in conn.execute(sa.select(events.c.id).order_by(events.c.id))]
    if ids:
        numbered = sa.table("events", sa.column("id", _ID), sa.column("seq", _ID))
        conn.execute(
            numbered.update()
            .where(numbered.c.id == sa.bindparam("b_id"))
            .values(seq=sa.bindparam("b_seq")),
            [{"b_id": event_id, "b_seq": seq} for seq, event_id in enumerate(ids, 1)],
        )
    conn.execute(sa.text("UPDATE events SET scheme = 'sha256-v1'"))
    conn.execute(sa.text("UPDATE chain_head SET seq = :n"), {"n": len(ids)})

    with op.batch_alter_table("events") as batch:
        batch.alter_column("seq", existing_type=_ID, nullable=False)
        batch.alter_column("scheme", existing_type=sa.String(length=16), nullable=False)
        batch.create_index("uq_events_seq", ["seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("uq_events_seq")
        for name in ("state", "actor_verified", "key_id", "scheme", "seq"):
            batch.drop_column(name)
    with op.batch_alter_table("chain_head") as batch:
        batch.drop_column("seq")
