"""liveness: replicas' heartbeats, fleet claims, the shared AWS write budget (issue 29)

Three small tables of their own, no change to the existing ones: `replicas` (each daemon's
heartbeat: the readiness write probe and the live replica count), `fleet_claims` (one
survey per credential across replicas) and `write_budget` (the next free AWS write slot,
shared by the fleet).

Revision ID: 0007_liveness
Revises: 0006_signing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_liveness"
down_revision = "0006_signing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_replicas"),
    )
    op.create_table(
        "fleet_claims",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_fleet_claims"),
    )
    op.create_table(
        "write_budget",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_write_budget"),
    )


def downgrade() -> None:
    op.drop_table("write_budget")
    op.drop_table("fleet_claims")
    op.drop_table("replicas")
