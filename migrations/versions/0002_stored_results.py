"""Idempotency keys store the pipeline's result, not a rendered response.

A key completed from now on holds its request's ``Result`` as the pipeline encoded it (column
``result``); each front renders it on a replay. Keys completed before keep their rendered
status, headers and body, and are replayed byte for byte.

Downgrade drops the column. The keys completed with a result have no rendered response for the
older code to send, so they are deleted first: a client retrying one of them gets its request
processed again, and event-id deduplication still stores no event twice.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("result", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE result IS NOT NULL")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("result")
