"""Ed25519-signed audit events (issue 27)

Each event gains `signature`: its writer's Ed25519 signature of its link (`hash`), made
with the private key whose public half the keyring lists under the event's `key_id`. Events
already written keep their scheme (hmac-sha256, sha256, sha256-v1) and their link; the first
event written with scheme "ed25519" signs the last of them through its `prev_hash`, and is
where the signed part begins (`rotator audit verify` says which seq that is). Nothing is
re-signed: a migration holds no writer's key.

Revision ID: 0006_signing
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_signing"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("signature", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("signature")
