"""Settings: one frozen value built from flags, then ``EVENTGW_*`` environment variables, then
defaults. Nothing else in the gateway reads ``os.environ``; the environment is injected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///eventgw.db"
ENV_PREFIX = "EVENTGW_"


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    workers: int = 1
    # Request limits (see the README's limits table).
    max_body_bytes: int = 5 * 1024 * 1024
    max_grpc_message_bytes: int = 16 * 1024 * 1024
    max_grpc_batch_events: int = 10_000
    max_event_bytes: int = 1024 * 1024
    # Idempotency keys: how long a completed key is kept, and when an in-flight lock is stale.
    idempotency_retention_seconds: float = 24 * 3600
    idempotency_lock_timeout_seconds: float = 30.0
    # Group commit: events per transaction, extra wait to fill a group, and the queue bound.
    commit_max_events: int = 10_000
    commit_max_delay_ms: float = 0.0
    queue_max_events: int = 200_000
    queue_wait_seconds: float = 2.0
    # How long a resolved API key or project may be served from memory (revocation latency).
    auth_cache_seconds: float = 1.0
    # SQLite durability: FULL fsyncs every commit (the default); NORMAL trades the last commits on
    # power loss (not on a process crash) for speed.
    sqlite_synchronous: str = "FULL"
    db_pool_size: int = 10
    nats_url: str | None = None
    log_level: str = "info"
    access_log: bool = True

    def __post_init__(self) -> None:
        for port in (self.http_port, self.grpc_port):
            if not 0 <= port <= 65535:
                raise ConfigError(f"port {port} is out of range")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigError("sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA")
        for name in ("max_body_bytes", "commit_max_events", "queue_max_events", "max_event_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")

    @classmethod
    def load(cls, env: Mapping[str, str], **flags: Any) -> Settings:
        """Flags (non-None values) over ``EVENTGW_<NAME>`` variables over defaults."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _coerce(field, raw)
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(field: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(field.type)
    try:
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{field.name.upper()}: {raw!r} is not a {kind}") from None
    return raw or None if "None" in kind else raw


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` or ``PORT``."""
    host, _, port = value.rpartition(":")
    try:
        return (host.strip("[]") or default_host), int(port)
    except ValueError:
        raise ConfigError(f"{value!r} is not HOST:PORT") from None
