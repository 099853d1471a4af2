"""The database schema as SQLAlchemy Core tables. Alembic migrations in ``migrations/`` create it;
``tests/gateway/storage/test_migrations.py`` checks the two agree.

Times are integer microseconds since the Unix epoch (UTC): compact, fast to compare, identical on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer, "sqlite")

projects = Table(
    "projects",
    metadata,
    Column("id", String(36), primary_key=True),  # a UUID; Databuddy's website id
    Column("name", String(200), nullable=False),
    Column("allowed_origins", Text, nullable=False, default="[]"),  # JSON list; empty: any
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(36), ForeignKey("projects.id"), nullable=False, index=True),
    Column("prefix", String(32), nullable=False, default=""),  # display prefix, e.g. "dbdy_"
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret
    Column("hint", String(8), nullable=False, default=""),  # last characters, for listings
    Column("scopes", Text, nullable=False),  # JSON list
    Column("rate_limit", String(32), nullable=True),  # "100/min", "50/s"; NULL: unlimited
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

# The outbox: every accepted event, once per (project, event id), in commit order (seq).
events = Table(
    "events",
    metadata,
    Column("seq", BigIntId, primary_key=True, autoincrement=True),
    Column("project_id", String(36), nullable=False),
    Column("event_id", String(512), nullable=False),
    Column("dialect", String(16), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # the serialized canonical Event
    Column("delivered_at", BigInteger, nullable=True),  # set by the relay after the broker's ack
    UniqueConstraint("project_id", "event_id"),
    Index(
        "ix_events_undelivered",
        "seq",
        sqlite_where=Column("delivered_at").is_(None),
        postgresql_where=Column("delivered_at").is_(None),
    ),
    Index("ix_events_project_id_received_at", "project_id", "received_at"),
)

# Events the gateway refused after it knew their project (migration 0003): what was sent and why,
# for a while (``failed_event_retention_seconds``), at most ``failed_events_per_project`` each.
failed_events = Table(
    "failed_events",
    metadata,
    Column("seq", BigIntId, primary_key=True, autoincrement=True),
    Column("project_id", String(36), nullable=False),
    Column("dialect", String(16), nullable=False),
    Column("endpoint", String(64), nullable=False),  # "POST /batch", "grpc SubmitBatch"
    Column("received_at", BigInteger, nullable=False),
    Column("code", String(64), nullable=False),  # the reason, as the client was told it
    Column("message", Text, nullable=False),
    Column("field", String(255), nullable=True),  # the offending field, when one is named
    Column("raw", LargeBinary, nullable=False),  # the item as sent, its first 64 KiB
    Column("raw_size", Integer, nullable=False),  # the item's whole size in bytes
    # Set by the relay after the broker's ack, when it publishes failed events (migration 0004).
    Column("published_at", BigInteger, nullable=True),
    Index("ix_failed_events_project_id_received_at", "project_id", "received_at"),
    Index(
        "ix_failed_events_unpublished",
        "seq",
        sqlite_where=Column("published_at").is_(None),
        postgresql_where=Column("published_at").is_(None),
    ),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("project_id", String(36), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("endpoint", String(64), nullable=False),  # "POST /batch", "grpc SubmitBatch"
    Column("fingerprint", String(64), nullable=False),  # sha256 of method, path and body
    Column("state", String(16), nullable=False),  # "in_flight" | "completed"
    Column("token", String(32), nullable=False),  # the holder of the in-flight lock
    Column("status_code", Integer, nullable=True),
    Column("response_headers", Text, nullable=True),  # JSON object
    Column("response_body", LargeBinary, nullable=True),
    # The pipeline's encoded Result (migration 0002); keys completed before it have the three
    # response columns above instead.
    Column("result", LargeBinary, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("locked_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False, index=True),
)
