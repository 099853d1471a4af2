"""Settings: one frozen value built from, in order of precedence, flags, ``EVENTGW_*``
environment variables, an optional TOML file (``--config FILE`` or ``EVENTGW_CONFIG``) and
defaults. Nothing else in the gateway reads ``os.environ``; the environment is injected.

The TOML file holds top-level keys named like the fields below (``http_port = 8080``;
``http-port`` is accepted too); an unknown key or a value of the wrong type is an error, and so is
any value ``Settings`` refuses, named with where it came from. ``describe()`` is the effective
configuration with secrets (passwords and tokens in ``database_url`` and ``nats_url``) masked.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.settings_text import mask_url

DEFAULT_DATABASE_URL = "sqlite:///eventgw.db"
ENV_PREFIX = "EVENTGW_"
CONFIG_ENV = "EVENTGW_CONFIG"
# Settings read from a variable of another name, and only from the environment (or a flag): the
# directory prometheus_client itself reads in multi-process mode (see gateway.metrics).
ENV_ONLY = {"prometheus_multiproc_dir": "PROMETHEUS_MULTIPROC_DIR"}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use (``setting`` names it, when known)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # The operations listener: /metrics, /readyz, /healthz (never on the public HTTP port).
    ops_host: str = "127.0.0.1"
    ops_port: int = 9090
    workers: int = 1
    # TLS (PEM files; reloaded on SIGHUP). gRPC uses the HTTP pair unless given its own; with
    # ``grpc_client_ca`` gRPC clients must present a certificate signed by that CA (mutual TLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    grpc_client_ca: str | None = None
    # Slow and idle clients (see the README's limits table).
    http_header_timeout_seconds: float = 20.0
    http_body_timeout_seconds: float = 60.0
    http_keepalive_timeout_seconds: float = 75.0
    max_connections: int = 10_000
    grpc_keepalive_seconds: float = 60.0
    grpc_keepalive_timeout_seconds: float = 20.0
    grpc_min_ping_interval_seconds: float = 300.0
    grpc_max_connection_age_seconds: float = 3600.0
    grpc_max_connection_age_grace_seconds: float = 60.0
    # Readiness: not ready after this many group commits failed in a row (until one succeeds,
    # or ``readiness_retry_seconds`` after the last failure), nor while an SQLite database has
    # less room left than ``sqlite_min_free_bytes`` (its disk, or ``sqlite_max_bytes``).
    readiness_commit_failures: int = 3
    readiness_retry_seconds: float = 10.0
    sqlite_min_free_bytes: int = 32 * 1024 * 1024
    sqlite_max_bytes: int = 0
    # Request limits (see the README's limits table).
    max_body_bytes: int = 5 * 1024 * 1024
    max_grpc_message_bytes: int = 16 * 1024 * 1024
    max_grpc_batch_events: int = 10_000
    max_event_bytes: int = 1024 * 1024
    # Idempotency keys: how long a completed key is kept, and when an in-flight lock is stale.
    idempotency_retention_seconds: float = 24 * 3600
    idempotency_lock_timeout_seconds: float = 30.0
    # Delivered events are deleted once older than this (0: kept for ever); undelivered never.
    event_retention_seconds: float = 7 * 24 * 3600
    retention_interval_seconds: float = 60.0
    # Refused items kept in the failed-events table: for how long (0: for ever), and at most how
    # many per project (a flood of bad input stops there).
    failed_event_retention_seconds: float = 7 * 24 * 3600
    failed_events_per_project: int = 100_000
    # Group commit: events per transaction, extra wait to fill a group, group commits in flight
    # at once (0: one on SQLite, which has a single writer; four on PostgreSQL), queue bound.
    commit_max_events: int = 10_000
    commit_max_delay_ms: float = 0.0
    commit_writers: int = 0
    queue_max_events: int = 200_000
    queue_wait_seconds: float = 2.0
    # How long a resolved API key or project may be served from memory (revocation latency).
    auth_cache_seconds: float = 1.0
    # SQLite durability: FULL fsyncs every commit (the default); NORMAL trades the last commits on
    # power loss (not on a process crash) for speed.
    sqlite_synchronous: str = "FULL"
    db_pool_size: int = 10
    nats_url: str | None = None
    # The outbox relay: JetStream stream and subject prefix (subjects are
    # ``<prefix>.<project id>.<event type>``), rows per claimed batch, idle poll interval.
    nats_stream: str = "EVENTGW_EVENTS"
    nats_subject_prefix: str = "eventgw.events"
    relay_batch_size: int = 5000
    relay_poll_seconds: float = 0.2
    # Relay processes under ``serve --relay`` (more than one only on PostgreSQL, where they share
    # the outbox by ``SKIP LOCKED``; SQLite has no row locks: one relay per file).
    relay_processes: int = 1
    # The relay publishes the failed events too, each to ``<prefix>.failed.<project id>``.
    relay_failed_events: bool = False
    log_level: str = "info"
    access_log: bool = True
    # "json": one JSON object per line (production); "text": readable lines (a terminal).
    log_format: str = "json"
    # Set by the ``--workers`` supervisor: /metrics then aggregates over all workers.
    prometheus_multiproc_dir: str | None = None

    def __post_init__(self) -> None:
        _validate(self)
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigError("sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA")
        if not 1 <= self.relay_batch_size <= 10_000:
            raise ConfigError("relay_batch_size must be between 1 and 10000")
        for name in ("max_body_bytes", "commit_max_events", "queue_max_events", "max_event_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")

    @classmethod
    def load(
        cls, env: Mapping[str, str], *, config_file: str | Path | None = None, **flags: Any
    ) -> Settings:
        """Flags (non-None values) over ``EVENTGW_<NAME>`` variables over the TOML file
        (``config_file``, else ``$EVENTGW_CONFIG``, else none) over defaults."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        path = config_file or env.get(CONFIG_ENV) or None
        if path is not None:
            for name, value in read_toml(Path(path)).items():
                values[name], sources[name] = value, f"in {path}"
        for field in fields(cls):
            var = ENV_ONLY.get(field.name, ENV_PREFIX + field.name.upper())
            raw = env.get(var)
            if raw is not None:
                values[field.name], sources[field.name] = _coerce(field, raw, var), f"from {var}"
        for name, value in flags.items():
            if value is not None:
                values[name], sources[name] = value, "from the command line"
        try:
            return cls(**values)
        except ConfigError as exc:
            where = sources.get(exc.setting or "")
            raise ConfigError(
                f"{exc} ({where})" if where else str(exc), setting=exc.setting
            ) from None

    def describe(self) -> dict[str, Any]:
        """The effective settings, secrets masked (for ``eventgw serve --print-config``)."""
        described = dataclasses.asdict(self)
        for name in ("database_url", "nats_url"):
            if described[name]:
                described[name] = mask_url(described[name])
        return described

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _coerce(field: dataclasses.Field[Any], raw: str, var: str) -> Any:
    kind = str(field.type)
    try:
        if kind == "bool":
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError(word)
            return word in _TRUE
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(
            f"{var}: {raw!r} is not {_KIND_NAMES[kind]}", setting=field.name
        ) from None
    return raw or None if "None" in kind else raw


def read_toml(path: Path) -> dict[str, Any]:
    """The settings a TOML file sets, type-checked; unknown keys are refused."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = {f.name: f for f in fields(Settings) if f.name not in ENV_ONLY}
    values: dict[str, Any] = {}
    for key, value in document.items():
        name = key.replace("-", "_")
        field = known.get(name)
        if field is None:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"config file {path}: unknown setting {key!r}{hint}", setting=name)
        kind = str(field.type)
        expected: tuple[type, ...] = _KIND_TYPES.get(kind, (str,))
        if (isinstance(value, bool) and kind != "bool") or not isinstance(value, expected):
            raise ConfigError(
                f"config file {path}: {key} must be {_KIND_NAMES.get(kind, 'a string')},"
                f" not {_toml_type(value)}",
                setting=name,
            )
        values[name] = float(value) if isinstance(value, int) and kind == "float" else value
    return values


_KIND_NAMES = {"bool": "true or false", "int": "an integer", "float": "a number"}
_KIND_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (int, float)}


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    return "a number" if isinstance(value, float) else f"a {type(value).__name__}"


_WILDCARDS = {"0.0.0.0", "::", "*"}


def _overlap(host: str, other: str) -> bool:
    return host == other or host in _WILDCARDS or other in _WILDCARDS


def _validate(s: Settings) -> None:
    def fail(setting: str, message: str) -> None:
        raise ConfigError(f"{setting}: {message}", setting=setting)

    for name in ("http_port", "grpc_port", "ops_port"):
        if not 0 <= getattr(s, name) <= 65535:
            fail(name, f"{getattr(s, name)} is not a port (0-65535)")
    for name in ("http_host", "grpc_host", "ops_host"):
        if not getattr(s, name):
            fail(name, "must not be empty")
    # Every listener binds with SO_REUSEPORT (the workers share theirs), so two listeners given
    # one address would not fail to bind: they would silently split its connections.
    listeners = [
        (n, getattr(s, f"{n}_host"), getattr(s, f"{n}_port")) for n in ("http", "grpc", "ops")
    ]
    for i, (name, host, port) in enumerate(listeners):
        for other, other_host, other_port in listeners[:i]:
            if port and port == other_port and _overlap(host, other_host):
                fail(f"{name}_port", f"{port} is {other}_port too; each listener needs its own")
    if s.workers < 1:
        fail("workers", "must be at least 1")
    if s.relay_processes < 1:
        fail("relay_processes", "must be at least 1")
    if s.relay_processes > 1 and s.database_url.lower().startswith("sqlite"):
        fail("relay_processes", "SQLite has no row locks: one relay per database file")
    for name in (
        "max_body_bytes",
        "max_grpc_message_bytes",
        "max_grpc_batch_events",
        "max_event_bytes",
        "commit_max_events",
        "queue_max_events",
        "db_pool_size",
        "idempotency_retention_seconds",
        "idempotency_lock_timeout_seconds",
        "failed_events_per_project",
        "retention_interval_seconds",
        "http_header_timeout_seconds",
        "http_body_timeout_seconds",
        "http_keepalive_timeout_seconds",
        "max_connections",
        "grpc_keepalive_seconds",
        "grpc_keepalive_timeout_seconds",
        "grpc_max_connection_age_seconds",
        "readiness_commit_failures",
    ):
        if getattr(s, name) <= 0:
            fail(name, f"must be positive, not {getattr(s, name)}")
    for name in (
        "commit_max_delay_ms",
        "commit_writers",
        "queue_wait_seconds",
        "auth_cache_seconds",
        "failed_event_retention_seconds",
        "event_retention_seconds",
        "grpc_min_ping_interval_seconds",
        "grpc_max_connection_age_grace_seconds",
        "readiness_retry_seconds",
        "sqlite_min_free_bytes",
        "sqlite_max_bytes",
    ):
        if getattr(s, name) < 0:
            fail(name, f"must not be negative, not {getattr(s, name)}")
    if s.log_level.lower() not in LOG_LEVELS:
        fail("log_level", f"{s.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if s.log_format not in LOG_FORMATS:
        fail("log_format", f"{s.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if (s.tls_cert is None) != (s.tls_key is None):
        fail("tls_cert", "tls_cert and tls_key go together")
    if (s.grpc_tls_cert is None) != (s.grpc_tls_key is None):
        fail("grpc_tls_cert", "grpc_tls_cert and grpc_tls_key go together")
    if s.grpc_client_ca is not None and (s.grpc_tls_cert or s.tls_cert) is None:
        fail("grpc_client_ca", "needs a server certificate (grpc_tls_cert or tls_cert)")
    scheme = s.database_url.partition(":")[0].lower()
    if not scheme.startswith(("sqlite", "postgresql", "postgres")):
        fail("database_url", "must be sqlite:///PATH or postgresql://USER@HOST/DB")
    if s.nats_url is not None and urlsplit(s.nats_url).scheme not in {"nats", "tls"}:
        fail("nats_url", "must be nats://HOST:PORT or tls://HOST:PORT")


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` or ``PORT``."""
    host, _, port = value.rpartition(":")
    try:
        return (host.strip("[]") or default_host), int(port)
    except ValueError:
        raise ConfigError(f"{value!r} is not HOST:PORT") from None
