"""How a client is configured: one frozen ``Options`` shared by ``EventClient`` and
``AsyncEventClient``, and the gRPC channel it opens (plaintext, TLS or mutual TLS)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc

from gateway.client.buffer import Policy, Rejection
from gateway.client.retry import Backoff

Transport = Literal["unary", "stream"]
Pem = bytes | str | Path  # PEM bytes, or a path to a PEM file


@dataclass(frozen=True, kw_only=True)
class Options:
    """``batch_size`` events (or ``max_batch_bytes``) make a batch, as does ``max_age`` seconds
    since its oldest event; ``max_in_flight`` batches are sent at once (unary calls, or streams
    of ``stream_window`` batches each); each attempt may take ``timeout`` seconds; a batch is
    tried ``max_attempts`` times (None: until it is answered or the client closes)."""

    batch_size: int = 500
    max_age: float = 0.1
    max_batch_bytes: int = 4 << 20
    max_buffered: int = 100_000
    policy: Policy = "block"
    block_timeout: float | None = None
    max_in_flight: int = 4
    transport: Transport = "unary"
    stream_window: int = 4
    timeout: float = 30.0
    max_attempts: int | None = None
    backoff: Backoff = field(default_factory=Backoff)
    tls: bool = False
    root_certificates: Pem | None = None
    certificate_chain: Pem | None = None
    private_key: Pem | None = None
    channel_options: Sequence[tuple[str, Any]] = ()
    on_rejected: Callable[[list[Rejection]], None] | None = None
    # The idempotency key of each new batch (default: "egwc-" and a random UUID).
    key_factory: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        if self.transport not in ("unary", "stream"):
            raise ValueError("transport must be 'unary' or 'stream'")
        if self.batch_size < 1 or self.max_in_flight < 1 or self.stream_window < 1:
            raise ValueError("batch_size, max_in_flight and stream_window must be at least 1")
        if self.max_age <= 0:
            raise ValueError("max_age must be positive")


def _pem(value: Pem | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


# The channel reconnects quickly after the gateway restarts (gRPC's default backoff grows to
# 120 s); messages up to the gateway's own limit.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
)


def open_channel(target: str, options: Options) -> grpc.aio.Channel:
    """An asyncio channel to ``target``: TLS when ``tls`` or any certificate is given (the
    system's roots unless ``root_certificates``), mutual TLS with a client certificate."""
    channel_options = [*CHANNEL_OPTIONS, *options.channel_options]
    secure = options.tls or any(
        x is not None
        for x in (options.root_certificates, options.certificate_chain, options.private_key)
    )
    if not secure:
        return grpc.aio.insecure_channel(target, options=channel_options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(options.root_certificates),
        private_key=_pem(options.private_key),
        certificate_chain=_pem(options.certificate_chain),
    )
    return grpc.aio.secure_channel(target, credentials, options=channel_options)
