"""Failed events the relay published: ``failed_events.published_at``.

With ``relay_failed_events`` on, the relay publishes each refused item to NATS and then sets
``published_at`` (µs since the epoch, like the outbox's ``delivered_at``); NULL is "not published".
A partial index on the unpublished rows keeps the relay's claim cheap. Rows kept before this
revision are unpublished: the relay, once told to, publishes those still within retention.
Downgrade drops the column and the index (and so forgets what was published).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNPUBLISHED = sa.column("published_at").is_(None)


def upgrade() -> None:
    with op.batch_alter_table("failed_events") as batch:
        batch.add_column(sa.Column("published_at", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_failed_events_unpublished",
        "failed_events",
        ["seq"],
        sqlite_where=UNPUBLISHED,
        postgresql_where=UNPUBLISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_failed_events_unpublished", table_name="failed_events")
    with op.batch_alter_table("failed_events") as batch:
        batch.drop_column("published_at")
