"""The events the gateway refused, kept for a while: ``failed_events``.

Each row is one item the gateway refused after it knew the item's project (a per-item rejection,
or one item of an all-or-nothing batch refused whole): its project, dialect, endpoint, receive
time, the reason (code, message, field) and its bytes as sent (the first 64 KiB, with the whole
size). Downgrade drops the table and what it holds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "failed_events",
        sa.Column("seq", BigIntId, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("dialect", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("field", sa.String(255), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_failed_events"),
    )
    op.create_index(
        "ix_failed_events_project_id_received_at",
        "failed_events",
        ["project_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_failed_events_project_id_received_at", table_name="failed_events")
    op.drop_table("failed_events")
