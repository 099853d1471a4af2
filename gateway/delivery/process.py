"""``eventgw relay``: the outbox relay as a process. It connects to NATS (retrying until the broker
answers; a connection lost later is made again by the next publish), and runs
``gateway.delivery.outbox.Relay`` until SIGTERM/SIGINT, or with ``--once`` until the outbox is
drained, then prints a summary. With ``relay_failed_events`` it runs
``gateway.delivery.failed.FailedEventRelay`` beside it, on the same connection, which publishes
the failed events to ``<prefix>.failed.<project id>``.

Run it next to the gateway (``eventgw serve --relay`` starts one under the supervisor) or on
its own, as many as wanted on PostgreSQL (they share the outbox, see
``gateway.delivery.outbox``), one per SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import TextIO

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrate
from gateway.config import ConfigError, Settings
from gateway.delivery.failed import FailedEventRelay, failed_relay, running
from gateway.delivery.jetstream import NatsError, Publisher
from gateway.delivery.outbox import Lag, Relay, outbox_lag
from gateway.settings_text import mask_url
from gateway.storage.engine import create_engine

__all__ = ["Lag", "Relay", "connect", "outbox_lag", "serve_relay"]

log = logging.getLogger(__name__)

ONCE_CONNECT_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 0.5


async def connect(
    url: str, *, stop: asyncio.Event, give_up_after: float | None = None
) -> Publisher | None:
    """Connect to NATS, retrying until it answers (None: ``stop`` was set first; TimeoutError:
    ``give_up_after`` passed). A connection lost later is made again by the next publish; the
    relay retries what failed meanwhile."""
    publisher, last_error, shown = Publisher(url), "", mask_url(url)
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    while not stop.is_set():
        try:
            await publisher.connect()
            return publisher
        except (OSError, TimeoutError, NatsError) as exc:
            if repr(exc) != last_error:
                log.warning("NATS %s: %r", shown, exc)
            last_error = repr(exc)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"no NATS server answered at {shown} within {give_up_after:g}s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
    return None


def _metrics(settings: Settings) -> Callable[[int, Lag], None] | None:
    """Under ``serve --relay`` the relay's samples join the workers' (multi-process metrics), so
    their ``/metrics`` shows the relay's progress and lag."""
    if settings.prometheus_multiproc_dir is None:
        return None
    from gateway.metrics import Metrics

    metrics = Metrics(multiprocess_dir=settings.prometheus_multiproc_dir)

    def observe(delivered: int, lag: Lag) -> None:
        metrics.observe_relay(delivered=delivered, pending=lag.pending, lag_seconds=lag.lag_seconds)

    return observe


async def _summary(
    engine: AsyncEngine,
    relay: Relay | None,
    out: TextIO | None,
    failed: FailedEventRelay | None = None,
) -> None:
    """``--once``: what this run delivered, and what is left (and the failed events it
    published, when it publishes them)."""
    lag = await outbox_lag(engine)
    summary: dict[str, float] = {
        "delivered": relay.stats.delivered if relay else 0,
        "duplicates": relay.stats.duplicates if relay else 0,
        "pending": lag.pending,
        "lag_seconds": round(lag.lag_seconds, 3),
    }
    if failed is not None:
        summary["failed_published"] = failed.stats.published
    if out is not None:
        out.write(orjson.dumps(summary).decode() + "\n")
        out.flush()


async def serve_relay(
    settings: Settings,
    *,
    once: bool = False,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> int:
    """``eventgw relay``: deliver until SIGTERM/SIGINT (or ``stop``); with ``once``, drain the
    outbox, then write ``{"delivered", "duplicates", "pending", "lag_seconds"}`` as JSON (with
    ``relay_failed_events``: the failed events too, and ``"failed_published"``)."""
    if not settings.nats_url:
        raise ConfigError("the relay needs a NATS URL: --nats-url or EVENTGW_NATS_URL")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals and not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings)
    try:
        revision, head = await migrate.current_revision(engine), migrate.head_revision()
        if revision != head:
            raise SystemExit(
                f"eventgw: the database schema is at {revision or 'nothing'}, head is {head}:"
                " run `eventgw db upgrade` first"
            )
        try:
            publisher = await connect(
                settings.nats_url,
                stop=stop,
                give_up_after=ONCE_CONNECT_TIMEOUT_SECONDS if once else None,
            )
        except TimeoutError as exc:
            log.error("%s", exc)
            await _summary(engine, None, out)
            return 1
        if publisher is None:
            return 0
        try:
            relay = Relay(
                engine,
                publisher,
                stream=settings.nats_stream,
                subject_prefix=settings.nats_subject_prefix,
                batch_size=settings.relay_batch_size,
            )
            failed = failed_relay(settings, engine, publisher, ensure_stream=relay.ensure_stream)
            if not once:
                where = mask_url(settings.nats_url)
                log.info("relaying the outbox to %s (%s)", where, settings.nats_stream)
                async with running(failed, stop, settings):
                    await relay.run(
                        stop, poll_s=settings.relay_poll_seconds, on_progress=_metrics(settings)
                    )
                return 0
            code = 0
            try:
                await relay.drain()
                if failed is not None:
                    await failed.drain()
            except Exception as exc:
                log.error("relay gave up: %r", exc)
                code = 1
            await _summary(engine, relay, out, failed)
            return code
        finally:
            await publisher.close()
    finally:
        await engine.dispose()
        if handle_signals and not once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
