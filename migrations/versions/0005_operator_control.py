"""operator control: credential holds, fast takeover (issue 13)

A cancelled rotation puts its credential on hold until `rotator resume`: three nullable
columns on `credentials`. Fast takeover needs no schema change (a shorter lease and the
claim order live in code).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("held_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("hold_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("hold_reason")
        batch.drop_column("held_by")
        batch.drop_column("held_at")
