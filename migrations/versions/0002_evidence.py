"""evidence that only grows (issue 11)

No schema change: the grow-only record (rotator/domain/evidence.py: the latest use ever seen
of the old secret, the new one and each stray; the run of answers without the old uuid)
is kept in `rotations.evidence`, the JSON column 0001 created for the last poll. Rows
written before keep working: they hold the record's first three keys. The proof of which
uuid AWSCURRENT holds lives in `rotations.detail` ("identity", "identity_probe") and, for
the version it was proven for, in `credentials.current_uuid` / `current_version`.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
