"""Exactly once through the client while the gateway dies: 100,000 events through
``EventClient`` (and through ``AsyncEventClient``, and over ``SubmitStream``) while the gateway
process is killed with SIGKILL and restarted twice. Every event is stored once, nothing is
dropped under the blocking policy, and the client's counters add up.

The gateway takes over an idempotency key whose holder died after 2 s (rather than 30), so a
batch whose first attempt was cut off by the kill is retried (``ABORTED`` until then) within the
test's time."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.client import AsyncEventClient, Counters, EventClient, Rejection, track_event
from tests.harness import GatewayProcess, provision, stored_events

pytestmark = pytest.mark.slow

EVENTS = 100_000
KILL_AT = (25_000, 60_000)  # accepted events at which the gateway is killed
OPTIONS = {"max_buffered": 20_000, "max_in_flight": 4, "timeout": 10.0}


@contextlib.contextmanager
def gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, str, str]]:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    project, key, _ = asyncio.run(provision(url))
    server = GatewayProcess(url, env={"EVENTGW_IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "2"})
    server.start()
    try:
        yield server, project, key
    finally:
        with contextlib.suppress(Exception):
            server.terminate()


def killer(server: GatewayProcess, accepted: Callable[[], int], kills: list[int]) -> None:
    """Kill the gateway at each of ``KILL_AT`` accepted events, restart it at once."""
    for mark in KILL_AT:
        deadline = time.monotonic() + 120
        while accepted() < mark and time.monotonic() < deadline:
            time.sleep(0.002)
        server.kill()
        kills.append(accepted())
        time.sleep(0.3)  # calls fail while it is down
        server.start()


def check(url: str, project: str, ids: list[str], counters: Counters, kills: list[int]) -> None:
    assert len(kills) == 2 and all(k < EVENTS for k in kills), f"killed after the end: {kills}"
    stored = [e.id for e in asyncio.run(stored_events(url, project))]
    twice = [i for i, n in collections.Counter(stored).items() if n > 1]
    assert not twice, f"{len(twice)} events stored twice"
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} missing; {counters}, kills at {kills}"
    assert len(stored) == EVENTS
    assert counters.enqueued == counters.sent == EVENTS
    assert counters.accepted + counters.duplicates == EVENTS
    assert (counters.rejected, counters.dropped, counters.abandoned) == (0, 0, 0)
    assert counters.retried > 0, "no batch was retried: the kills missed every call"


def test_event_client_across_two_kills(tmp_path: Path) -> None:
    rejected: list[Rejection] = []
    with gateway(tmp_path) as (server, project, key):
        client = EventClient(server.grpc_target, key, on_rejected=rejected.extend, **OPTIONS)
        kills: list[int] = []
        thread = threading.Thread(
            target=killer, args=(server, lambda: client.counters.accepted, kills)
        )
        thread.start()
        ids = []
        for i in range(EVENTS):
            event = track_event("order_completed", user_id=f"u-{i % 97}", properties={"n": i})
            client.send(event)
            ids.append(event.id)
        thread.join()
        assert client.close(timeout=60)
        assert not rejected
        check(server.database_url, project, ids, client.counters, kills)


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_async_event_client_across_two_kills(tmp_path: Path, transport: str) -> None:
    with gateway(tmp_path) as (server, project, key):
        kills: list[int] = []

        async def produce() -> tuple[list[str], Counters]:
            client = AsyncEventClient(
                server.grpc_target,
                key,
                transport=transport,
                on_rejected=rejected.extend,
                **OPTIONS,
            )
            async with client:
                thread = threading.Thread(
                    target=killer, args=(server, lambda: client.counters.accepted, kills)
                )
                thread.start()
                ids = []
                for i in range(EVENTS):
                    event = track_event("order_completed", properties={"n": i})
                    await client.send(event)
                    ids.append(event.id)
                await asyncio.to_thread(thread.join)
                assert await client.flush(timeout=60)
            return ids, client.counters

        rejected: list[Rejection] = []
        ids, counters = asyncio.run(produce())
        assert not rejected, {(r.code, r.message) for r in rejected}
        check(server.database_url, project, ids, counters, kills)
