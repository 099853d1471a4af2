"""The load generators of ``eventgw bench``, one scenario per call, run in separate processes.

Each worker process opens its own connections, builds its requests from pre-serialized templates
(byte concatenation, so that the generator spends its CPU on sending, not on building messages),
waits for the common start signal, keeps ``concurrency`` requests in flight for a warm-up and
then the scenario's duration, and reports what completed inside the measured window (requests
sent during the warm-up are not counted): requests, events, errors, retryable refusals and each
request's latency. Event ids are unique per run (worker, scenario, counter).
Also here: the raw limit, the same serialized events inserted straight into SQLite (and into
PostgreSQL) with the same durability and no gateway in between.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing.synchronize
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from gateway.pb.event_pb2 import Event, EventType

GRPC_BATCH = 500  # events per gRPC SubmitBatch / SubmitStream message
HTTP_BATCH = 100  # events per Databuddy /batch request (the vendor's maximum)
STREAM_WINDOW = 2  # batches a SubmitStream client keeps in flight on one stream
SERVICE = "/eventgw.v1.EventGateway/"
REQUEST_TIMEOUT_SECONDS = 30.0  # a request slower than this counts as an error


@dataclass(frozen=True, kw_only=True)
class Target:
    http_url: str
    grpc_target: str
    project_id: str
    api_key: str


@dataclass(frozen=True)
class Window:
    """A load run: ``warmup_s`` of load that is not counted, then ``seconds`` that are.

    At the start every client sends at once, so the first requests all queue behind one another
    (and behind a cold process) and a 5-second run's p99 is mostly theirs; the warm-up keeps
    that start out of the figures, which describe the steady state. A request is counted when it
    started inside the window and completed before its end."""

    seconds: float
    warmup_s: float = 0.0

    @contextlib.asynccontextmanager
    async def measure(self, tally: Tally) -> AsyncIterator[tuple[float, float]]:
        """Start the run now: yields (measured from, deadline) on ``time.perf_counter``'s clock;
        on exit ``tally`` gets the measured window's length and this process's CPU time in it."""
        measured_from = time.perf_counter() + self.warmup_s

        async def cpu_at_window_start() -> float:
            await asyncio.sleep(self.warmup_s)
            return time.process_time()

        cpu = asyncio.create_task(cpu_at_window_start())
        yield measured_from, measured_from + self.seconds
        tally.elapsed_s = time.perf_counter() - measured_from
        tally.cpu_s = time.process_time() - await cpu


@dataclass(frozen=True, kw_only=True)
class Gate:
    """Workers report ``ready`` once connected, then all start when ``go`` is set."""

    ready: Any  # multiprocessing Queue
    go: multiprocessing.synchronize.Event

    async def wait(self) -> None:
        self.ready.put(os.getpid())
        await asyncio.to_thread(self.go.wait)


@dataclass(kw_only=True)
class Tally:
    """What one worker (or, summed, one scenario) completed inside the measured window."""

    requests: int = 0
    events: int = 0
    errors: int = 0
    refused: int = 0  # retryable refusals: HTTP 503 / gRPC RESOURCE_EXHAUSTED, UNAVAILABLE
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # the load generators' own CPU time in the window
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str = ""

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.events += other.events
        self.errors += other.errors
        self.refused += other.refused
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.cpu_s += other.cpu_s
        self.latencies_ms.extend(other.latencies_ms)
        self.first_error = self.first_error or other.first_error


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def template_event(project_id: str = "") -> Event:
    """A typical server-side event: name, identity, page, a few properties."""
    event = Event(
        project_id=project_id,
        type=EventType.EVENT_TYPE_TRACK,
        name="order_completed",
        namespace="checkout",
        source="bench",
    )
    event.occurred_at.GetCurrentTime()
    event.identity.user_id = "user-42"
    event.identity.anonymous_id = "anon-4f7d0a1c"
    event.identity.session_id = "sess-9b2e"
    event.page.path = "/checkout/complete"
    event.page.title = "Thank you"
    event.properties.update({"order_id": "ord-123456", "total": 129.5, "currency": "EUR"})
    return event


class EventIds:
    """Fixed-width unique ids, so every serialized event of a run has the same length."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode()
        self.next = 0

    def take(self, n: int) -> list[bytes]:
        start, self.next = self.next, self.next + n
        return [b"%s%010d" % (self.prefix, i) for i in range(start, start + n)]


def batch_request_bytes(ids: list[bytes], tail: bytes) -> bytes:
    """A serialized ``SubmitBatchRequest`` of events ``id + tail`` (field 2, repeated)."""
    body_len = 1 + len(_varint(len(ids[0]))) + len(ids[0]) + len(tail)
    head = b"\x12" + _varint(body_len) + b"\x0a" + _varint(len(ids[0]))
    return b"".join([head + i + tail for i in ids])


# -- the scenarios ------------------------------------------------------------------------------


Send = Callable[[], Awaitable[tuple[int, int, int]]]  # -> (events, errors, refused)


async def drive(send: Send, concurrency: int, window: Window) -> Tally:
    tally = Tally()

    async def loop() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                events, errors, refused = await send()
            except Exception as exc:
                events, errors, refused = 0, 1, 0
                tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"[:300]
            t1 = time.perf_counter()
            if t1 > deadline:
                break
            if t0 >= measured_from:  # sent inside the window
                tally.requests += 1
                tally.events += events
                tally.errors += errors
                tally.refused += refused
                tally.latencies_ms.append((t1 - t0) * 1000)
            if refused:
                await asyncio.sleep(0.05)

    async with window.measure(tally) as (measured_from, deadline):
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return tally


async def _grpc_scenario(
    scenario: str, target: Target, worker: int, concurrency: int, window: Window, gate: Gate
) -> Tally:
    import grpc

    from gateway.pb.gateway_pb2 import SubmitBatchResponse

    tail = template_event().SerializeToString()
    ids = EventIds(f"{scenario}-{worker}-{os.getpid()}-")
    metadata = (("authorization", f"Bearer {target.api_key}"),)
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target.grpc_target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), REQUEST_TIMEOUT_SECONDS)
        if scenario == "grpc-batch":
            call = channel.unary_unary(SERVICE + "SubmitBatch", None, None)

            async def send() -> tuple[int, int, int]:
                request = batch_request_bytes(ids.take(GRPC_BATCH), tail)
                try:
                    raw = await call(request, metadata=metadata, timeout=REQUEST_TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in retryable:
                        return 0, 0, 1
                    raise
                answer = SubmitBatchResponse.FromString(raw)
                return answer.accepted, len(answer.results) - answer.accepted, 0

            await gate.wait()
            return await drive(send, concurrency, window)
        return await _stream_scenario(channel, ids, tail, metadata, concurrency, window, gate)


async def _stream_scenario(
    channel: Any,
    ids: EventIds,
    tail: bytes,
    metadata: Any,
    concurrency: int,
    window: Window,
    gate: Gate,
) -> Tally:
    """``concurrency`` streams, each with up to ``STREAM_WINDOW`` batches in flight; a batch's
    latency runs from its write to its answer."""
    from gateway.pb.gateway_pb2 import SubmitBatchResponse

    open_stream = channel.stream_stream(SERVICE + "SubmitStream", None, None)
    tally = Tally()
    await gate.wait()
    timeout = window.warmup_s + window.seconds + REQUEST_TIMEOUT_SECONDS

    async def one_stream() -> None:
        call = open_stream(metadata=metadata, timeout=timeout)
        window_slots = asyncio.Semaphore(STREAM_WINDOW)
        sent: collections.deque[float] = collections.deque()  # send times, answered in order

        async def writer() -> None:
            while time.perf_counter() < deadline:
                request = batch_request_bytes(ids.take(GRPC_BATCH), tail)
                await window_slots.acquire()
                # Timed once it can go: waiting for a slot in the window is not its latency.
                sent.append(time.perf_counter())
                await call.write(request)
            await call.done_writing()

        task = asyncio.create_task(writer())
        try:
            async for raw in call:
                t1 = time.perf_counter()
                t0 = sent.popleft()
                window_slots.release()
                if t0 < measured_from or t1 > deadline:
                    continue
                answer = SubmitBatchResponse.FromString(raw)
                tally.requests += 1
                tally.events += answer.accepted
                tally.errors += len(answer.results) - answer.accepted
                tally.latencies_ms.append((t1 - t0) * 1000)
            await task
        except Exception as exc:
            task.cancel()
            tally.errors += 1
            tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"[:300]

    async with window.measure(tally) as (measured_from, deadline):
        await asyncio.gather(*(one_stream() for _ in range(concurrency)))
    return tally


# A Databuddy tracker page view, as the browser SDK batches them (the seed's shape).
_BEACON = (
    b'{"type":"track","payload":{"eventId":"%s","name":"page_view","anonymousId":"anon_456",'
    b'"sessionId":"sess_789","sessionStartTime":%d,"timestamp":%d,"path":"/dashboard",'
    b'"title":"Dashboard","referrer":"https://google.com","screen_resolution":"1920x1080",'
    b'"viewport_size":"1440x900","timezone":"America/New_York","language":"en-US",'
    b'"load_time":1200,"ttfb":250}}'
)
# A server-side custom event to /track (the seed's shape).
_CUSTOM = (
    b'{"eventId":"%s","name":"button_clicked","namespace":"ui","properties":{"button_id":'
    b'"signup","page":"/pricing"},"anonymousId":"user-123","sessionId":"session-456"}'
)


async def _http_scenario(
    scenario: str, target: Target, worker: int, concurrency: int, window: Window, gate: Gate
) -> Tally:
    import aiohttp

    ids = EventIds(f"{scenario}-{worker}-{os.getpid()}-")
    now_ms = int(time.time() * 1000)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if scenario == "databuddy-batch":
            url = f"{target.http_url}/batch?website_id={target.project_id}"
            headers = {"Content-Type": "application/json"}

            def body() -> bytes:
                items = [_BEACON % (i, now_ms - 60_000, now_ms) for i in ids.take(HTTP_BATCH)]
                return b"[" + b",".join(items) + b"]"

            def counted(answer: Any) -> int:
                return sum(1 for r in answer["results"] if r["status"] == "success")

        else:
            url = f"{target.http_url}/track"
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {target.api_key}",
            }

            def body() -> bytes:
                return _CUSTOM % ids.take(1)[0]

            def counted(answer: Any) -> int:
                return int(answer["count"])

        async def send() -> tuple[int, int, int]:
            payload = body()
            async with session.post(url, data=payload, headers=headers) as response:
                raw = await response.read()
                if response.status == 503 and "Retry-After" in response.headers:
                    return 0, 0, 1
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {raw[:200]!r}")
            events = counted(orjson.loads(raw))
            expected = HTTP_BATCH if scenario == "databuddy-batch" else 1
            return events, expected - events, 0

        async with session.get(f"{target.http_url}/healthz") as warm:
            await warm.read()
        await gate.wait()
        return await drive(send, concurrency, window)


def load_worker(
    scenario: str,
    target: Target,
    worker: int,
    concurrency: int,
    window: Window,
    gate: Gate,
    results: Any,
) -> None:
    """A load-generator process: run ``scenario`` and put its ``Tally`` (as a dict) on
    ``results``."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner: Callable[[Any], Any] = asyncio.run
    else:
        runner = uvloop.run
    scenario_fn = _grpc_scenario if scenario.startswith("grpc") else _http_scenario
    try:
        tally = runner(scenario_fn(scenario, target, worker, concurrency, window, gate))
    except Exception as exc:
        tally = Tally(errors=1, first_error=f"{type(exc).__name__}: {exc}"[:300])
    results.put(asdict(tally))


# -- the raw limit ------------------------------------------------------------------------------


def stored_payload_tail(project_id: str) -> bytes:
    """The serialized canonical event as the gateway stores it, without its id (field 1)."""
    event = template_event(project_id)
    event.dialect = "grpc"
    event.received_at.GetCurrentTime()
    return event.SerializeToString()


def _stored_rows(ids: list[bytes], project_id: str, tail: bytes) -> list[tuple[Any, ...]]:
    received = time.time_ns() // 1000
    head = b"\x0a" + _varint(len(ids[0]))
    return [(project_id, i.decode(), "grpc", "track", received, head + i + tail) for i in ids]


_RAW_INSERT = (
    "INSERT INTO events (project_id, event_id, dialect, event_type, received_at, payload)"
    " VALUES ({})"
)


def raw_sqlite(path: str, ddl: list[str], project_id: str, seconds: float, sync: str) -> Tally:
    """Batches of ``GRPC_BATCH`` events inserted with ``executemany`` into a table identical to
    the outbox (same indexes), WAL, ``synchronous=sync``, one commit per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        for statement in ddl:
            conn.execute(statement)
        sql = _RAW_INSERT.format(",".join("?" * 6))
        tail = stored_payload_tail(project_id)
        ids = EventIds("raw-")
        tally = Tally()
        started = time.perf_counter()
        deadline = started + seconds
        while (t0 := time.perf_counter()) < deadline:
            rows = _stored_rows(ids.take(GRPC_BATCH), project_id, tail)
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
            tally.requests += 1
            tally.events += len(rows)
        tally.elapsed_s = time.perf_counter() - started
        return tally
    finally:
        conn.close()


async def raw_postgres(dsn: str, project_id: str, seconds: float) -> Tally:
    """The same on PostgreSQL (asyncpg ``executemany``, one transaction per batch, default
    ``synchronous_commit``) into ``events_raw``, created ``LIKE events INCLUDING ALL``."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE events_raw (LIKE events INCLUDING ALL)")
        sql = _RAW_INSERT.replace("events", "events_raw").format(
            ",".join(f"${n}" for n in range(1, 7))
        )
        tail = stored_payload_tail(project_id)
        ids = EventIds("raw-")
        tally = Tally()
        started = time.perf_counter()
        deadline = started + seconds
        while (t0 := time.perf_counter()) < deadline:
            rows = _stored_rows(ids.take(GRPC_BATCH), project_id, tail)
            async with conn.transaction():
                await conn.executemany(sql, rows)
            tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
            tally.requests += 1
            tally.events += len(rows)
        tally.elapsed_s = time.perf_counter() - started
        await conn.execute("DROP TABLE events_raw")
        return tally
    finally:
        await conn.close()
