"""The client scenarios of ``eventgw bench`` (only when named in ``--scenarios``): events through
the client for internal services (``gateway.client.EventClient``), in a load process.

Each process enqueues, from one thread and as fast as the client takes them, the event
``grpc-batch`` sends (``bench.payloads.template_event``'s fields); the client gives each its
UUIDv7 and time at enqueue, encodes it, and batches 500 at a time with ``concurrency`` calls in
flight.

- ``grpc-client``: the event is built once and sent again and again (the client stamps it anew
  each time), as ``grpc-batch``'s generator splices ids into one serialized event: what is
  counted is the client's own work, set against the raw ``SubmitBatch`` figure.
- ``grpc-client-build``: every event is built first, with ``track_event`` and the same fields,
  as an application does: the client's work and the application's.

Counted: events accepted inside the measured window (from the client's counters), batches as
requests, and the process's CPU time, i.e. the CPU per event of the client (and, in the second,
of building the event). Latency is not measured per event.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.load import Target
from bench.payloads import GRPC_BATCH, template_event
from bench.window import Gate, Tally, Window

CHUNK = 100  # events enqueued between looks at the clock


CLIENT_SCENARIOS = ("grpc-client", "grpc-client-build")


def _run(target: Target, concurrency: int, window: Window, gate: Gate, build: bool) -> Tally:
    from gateway.client import EventClient, track_event

    template = template_event()
    properties = dict(template.properties.items())
    client = EventClient(
        target.grpc_target,
        target.api_key,
        batch_size=GRPC_BATCH,
        max_in_flight=concurrency,
        max_buffered=GRPC_BATCH * concurrency * 4,
    )
    tally = Tally()
    try:
        client.track("warm-up")
        client.flush(timeout=30)
        gate.ready.put(os.getpid())
        gate.go.wait()
        measured_from = time.perf_counter() + window.warmup_s
        deadline = measured_from + window.seconds
        start: tuple[float, float, int, int] | None = None
        while True:
            for _ in range(CHUNK):
                if not build:
                    template.ClearField("id")  # the time is never set on it: see encode
                    client.send(template)
                    continue
                event = track_event(
                    template.name,
                    namespace=template.namespace,
                    source=template.source,
                    user_id=template.identity.user_id,
                    anonymous_id=template.identity.anonymous_id,
                    properties=properties,
                )
                event.identity.session_id = template.identity.session_id
                event.page.path, event.page.title = template.page.path, template.page.title
                client.send(event)
            now = time.perf_counter()
            if start is None and now >= measured_from:
                counters = client.counters
                start = (now, time.process_time(), counters.accepted, counters.batches)
            if now >= deadline:
                break
        counters = client.counters
        assert start is not None
        tally.elapsed_s = now - start[0]
        tally.cpu_s = time.process_time() - start[1]
        tally.events = counters.accepted - start[2]
        tally.requests = counters.batches - start[3]
        tally.errors = counters.rejected
        tally.refused = counters.retried // GRPC_BATCH
    finally:
        client.close(timeout=30)
    return tally


def client_worker(
    scenario: str,
    target: Target,
    worker: int,
    concurrency: int,
    window: Window,
    gate: Gate,
    results: Any,
) -> None:
    """A load process of a client scenario (``bench.load.load_worker``'s signature)."""
    try:
        tally = _run(target, concurrency, window, gate, build=scenario == "grpc-client-build")
    except Exception as exc:
        tally = Tally(errors=1, first_error=f"{type(exc).__name__}: {exc}"[:300])
    results.put(tally)
