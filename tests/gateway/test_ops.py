"""The operator's view of a real gateway: /metrics after REST and gRPC traffic (exact counts),
/healthz, /readyz and gRPC health on a migrated and on a behind schema, JSON access-log lines
(with no secret and no payload in them), and request ids in and out."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from gateway import migrate
from gateway.config import Settings
from gateway.logs import JsonFormatter
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from gateway.server import GC_YOUNG_THRESHOLD, Bound, run
from gateway.storage.engine import create_engine
from gateway.storage.tenants import TenantStore
from tests.harness import Gateway, eventually

MARKER = "payload-marker-7f3a"  # an event property value that must never reach a log line


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def scrape(http: aiohttp.ClientSession, gateway: Gateway) -> dict[tuple[str, str], float]:
    """Every sample of /metrics, keyed by (name, sorted labels as text)."""
    async with http.get(gateway.ops_url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, _labels(s.labels))] = s.value
    return samples


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def value(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    return samples.get((name, _labels(labels)), 0.0)


async def post(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with http.post(gateway.http_url + path, json=body, headers=headers or {}) as response:
        return response.status, await response.json(), response.headers


async def rate_limited_key(gateway: Gateway) -> str:
    engine = create_engine(gateway.settings)
    try:
        _, secret = await TenantStore(engine).create_key(gateway.project_id, rate_limit="1/min")
        return secret
    finally:
        await engine.dispose()


async def test_metrics_count_rest_and_grpc_traffic_exactly(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    project = gateway.project_id
    # Ours: 2 accepted + 1 rejected, then 1 duplicate + 1 accepted.
    ours = "/api/v1/batch"
    status, body, _ = await post(
        http,
        gateway,
        ours,
        {
            "token": gateway.api_key,
            "events": [
                {"event": "Viewed", "distinctId": "o-1", "eventProperties": {"m": MARKER}},
                {"event": "Viewed", "distinctId": "o-2"},
                {"event": "Viewed"},  # no distinctId: rejected
            ],
        },
    )
    assert (status, body["accepted"], body["failed"]) == (207, 2, 1)
    status, body, _ = await post(
        http,
        gateway,
        ours,
        {
            "token": gateway.api_key,
            "events": [
                {"event": "Viewed", "distinctId": "o-1"},
                {"event": "Viewed", "distinctId": "o-3"},
            ],
        },
    )
    assert status == 200
    # VibeFollow: one accepted event, then the same request replayed by its Idempotency-Key.
    vibe = {"Authorization": f"Bearer {gateway.api_key}", "Idempotency-Key": "ops-key-1"}
    event = {"external_user_id": "u1", "name": "plan_upgraded", "event_id": "v-1"}
    status, _, headers = await post(http, gateway, "/api/v1/events", event, vibe)
    assert status == 202 and "Idempotent-Replayed" not in headers
    status, _, headers = await post(http, gateway, "/api/v1/events", event, vibe)
    assert status == 202 and headers["Idempotent-Replayed"] == "true"
    # A key limited to 1 request a minute: the second request is refused.
    limited = {"Authorization": f"Bearer {await rate_limited_key(gateway)}"}
    first = {"external_user_id": "u1", "name": "plan_upgraded", "event_id": "v-2"}
    assert (await post(http, gateway, "/api/v1/events", first, limited))[0] == 202
    second = {"external_user_id": "u1", "name": "plan_upgraded", "event_id": "v-3"}
    assert (await post(http, gateway, "/api/v1/events", second, limited))[0] == 429

    # gRPC: 2 accepted + 1 rejected; 1 duplicate (keyed), its replay; one unauthenticated call.
    auth = [("authorization", f"Bearer {gateway.api_key}")]
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        events = [Event(id="g-1", name="order"), Event(id="g-2", name="order"), Event(id="g-3")]
        first_batch = await stub.SubmitBatch(SubmitBatchRequest(events=events), metadata=auth)
        assert (first_batch.accepted, first_batch.rejected) == (2, 1)
        keyed = SubmitBatchRequest(idempotency_key="g-key", events=[Event(id="g-1", name="x")])
        assert (await stub.SubmitBatch(keyed, metadata=auth)).duplicates == 1
        assert (await stub.SubmitBatch(keyed, metadata=auth)).replayed
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.SubmitBatch(SubmitBatchRequest(events=events))

    # grpc.aio sends an aborted call's status before the handler unwinds, and the call is
    # counted as it unwinds: the client can hear UNAUTHENTICATED a moment before the count.
    m: dict[tuple[str, str], float] = {}

    async def unauthenticated_counted() -> bool:
        m.clear()
        m.update(await scrape(http, gateway))
        labels = {"dialect": "grpc", "endpoint": "SubmitBatch", "status": "UNAUTHENTICATED"}
        return value(m, "eventgw_requests_total", **labels) > 0

    await eventually(unauthenticated_counted)
    events_total = "eventgw_events_total"
    assert value(m, events_total, dialect="ours", project=project, outcome="accepted") == 3
    assert value(m, events_total, dialect="ours", project=project, outcome="duplicate") == 1
    assert value(m, events_total, dialect="ours", project=project, outcome="rejected") == 1
    assert value(m, events_total, dialect="vibefollow", project=project, outcome="accepted") == 2
    assert value(m, events_total, dialect="grpc", project=project, outcome="accepted") == 2
    assert value(m, events_total, dialect="grpc", project=project, outcome="duplicate") == 1
    assert value(m, events_total, dialect="grpc", project=project, outcome="rejected") == 1
    assert sum(v for (name, _), v in m.items() if name == events_total) == 11

    requests = "eventgw_requests_total"
    assert value(m, requests, dialect="ours", endpoint="batch", status="207") == 1
    assert value(m, requests, dialect="ours", endpoint="batch", status="200") == 1
    assert value(m, requests, dialect="vibefollow", endpoint="single", status="202") == 3
    assert value(m, requests, dialect="vibefollow", endpoint="single", status="429") == 1
    assert value(m, requests, dialect="grpc", endpoint="SubmitBatch", status="OK") == 3
    assert value(m, requests, dialect="grpc", endpoint="SubmitBatch", status="UNAUTHENTICATED") == 1
    duration = "eventgw_request_duration_seconds_count"
    assert value(m, duration, dialect="vibefollow", endpoint="single") == 4
    assert value(m, duration, dialect="grpc", endpoint="SubmitBatch") == 4

    replays = "eventgw_idempotent_replays_total"
    assert value(m, replays, dialect="vibefollow", endpoint="single") == 1
    assert value(m, replays, dialect="grpc", endpoint="SubmitBatch") == 1
    limited_total = "eventgw_rate_limited_total"
    assert value(m, limited_total, dialect="vibefollow", endpoint="single") == 1

    assert value(m, "eventgw_batch_size_events_count", dialect="ours", endpoint="batch") == 2
    assert value(m, "eventgw_batch_size_events_sum", dialect="ours", endpoint="batch") == 5
    assert value(m, "eventgw_batch_size_events_sum", dialect="grpc", endpoint="SubmitBatch") == 5

    # Group commits: one per request that reached the writer (sequential requests coalesce
    # nothing). A keyed request stores its key there, so its replay reaches it too (and finds the
    # key); refused requests never do.
    assert value(m, "eventgw_commit_group_requests_count") == 8
    assert value(m, "eventgw_commit_group_requests_sum") == 8
    # In request order; the replays' events (the 4th and the last) are not stored again.
    assert value(m, "eventgw_commit_group_events_sum") == 2 + 2 + 1 + 1 + 1 + 2 + 1 + 1
    assert value(m, "eventgw_commit_duration_seconds_count") == 8
    assert value(m, "eventgw_queue_events") == 0
    assert ("eventgw_relay_delivered_total", "") in m


async def test_access_log_lines_are_json_without_secrets_or_payloads(
    gateway: Gateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventgw.access")
    body = {
        "token": gateway.api_key,
        "events": [{"event": "Viewed", "distinctId": "l-1", "eventProperties": {"m": MARKER}}],
    }
    await post(http, gateway, "/api/v1/batch", body, {"X-Request-Id": "trace-abc-123"})
    auth = [("authorization", f"Bearer {gateway.api_key}"), ("x-request-id", "grpc-trace-1")]
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        request = SubmitBatchRequest(events=[Event(id="l-2", name=MARKER)])
        await stub.SubmitBatch(request, metadata=auth)

    records = [r for r in caplog.records if r.name == "eventgw.access"]
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    http_line = next(line for line in lines if line.get("request_id") == "trace-abc-123")
    grpc_line = next(line for line in lines if line.get("request_id") == "grpc-trace-1")
    for line in (http_line, grpc_line):
        required = {"ts", "level", "msg", "request_id", "dialect", "endpoint", "project"}
        assert required | {"status", "events", "accepted", "latency_ms"} <= set(line)
        assert line["project"] == gateway.project_id
        assert line["events"] == 1 and line["accepted"] == 1
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert (http_line["dialect"], http_line["endpoint"], http_line["status"]) == (
        "ours",
        "batch",
        200,
    )
    assert (grpc_line["dialect"], grpc_line["endpoint"], grpc_line["code"]) == (
        "grpc",
        "SubmitBatch",
        "OK",
    )
    everything = caplog.text + "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert gateway.api_key not in everything
    assert MARKER not in everything


# The users endpoints, with one valid body each: (path, dialect, endpoint, status, body).
USERS = [
    ("/v1/users", "appizer", "identify", 200, {"user_id": "u1", "properties": {"m": MARKER}}),
    ("/v1/users/aliases", "appizer", "alias", 200, {"user_id": "u1", "alias_id": MARKER}),
    ("/api/v1/users", "vibefollow", "users", 202, {"external_user_id": "u1"}),
    (
        "/api/v1/users/bulk",
        "vibefollow",
        "users_bulk",
        200,
        {"users": [{"external_user_id": "u1"}]},
    ),
]


async def test_users_endpoints_are_counted_and_logged_by_endpoint(
    gateway: Gateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventgw.access")
    auth = {"Authorization": f"Bearer {gateway.api_key}"}
    for path, _, endpoint, status, body in USERS:
        got, _, _ = await post(http, gateway, path, body, {**auth, "X-Request-Id": endpoint})
        assert got == status
    m = await scrape(http, gateway)
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "eventgw.access"
    ]
    for _, dialect, endpoint, status, _ in USERS:
        labels = {"dialect": dialect, "endpoint": endpoint}
        assert value(m, "eventgw_requests_total", **labels, status=str(status)) == 1
        assert value(m, "eventgw_request_duration_seconds_count", **labels) == 1
        [line] = [line for line in lines if line.get("request_id") == endpoint]
        assert (line["dialect"], line["endpoint"], line["status"]) == (dialect, endpoint, status)
        assert (line["events"], line["accepted"]) == (1, 1)
    assert MARKER not in caplog.text + "\n".join(JsonFormatter().format(r) for r in caplog.records)


async def test_request_id_is_echoed_accepted_or_replaced(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    for path in ("/healthz", "/no/such/path", "/api/v1/batch"):
        async with http.get(gateway.http_url + path, headers={"X-Request-Id": "rid-1"}) as r:
            assert r.headers["X-Request-Id"] == "rid-1", path
    async with http.get(gateway.http_url + "/healthz") as r:
        generated = r.headers["X-Request-Id"]
        assert len(generated) == 32 and int(generated, 16) >= 0
    async with http.get(gateway.http_url + "/healthz", headers={"X-Request-Id": "x" * 129}) as r:
        assert r.headers["X-Request-Id"] != "x" * 129 and len(r.headers["X-Request-Id"]) == 32
    async with http.get(gateway.http_url + "/healthz", headers={"X-Request-Id": "x" * 128}) as r:
        assert r.headers["X-Request-Id"] == "x" * 128

    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        metadata = [("authorization", f"Bearer {gateway.api_key}"), ("x-request-id", "rid-2")]
        call = stub.SubmitBatch(SubmitBatchRequest(), metadata=metadata)
        await call
        assert ("x-request-id", "rid-2") in tuple(await call.initial_metadata() or ())


async def test_healthz_readyz_and_grpc_health_on_a_migrated_database(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway.http_url + "/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    async with http.get(gateway.ops_url + "/readyz") as r:
        assert r.status == 200
        assert await r.json() == {
            "status": "ok",
            "database": "ok",
            "schema": migrate.head_revision(),
            "disk": "ok",
            "writes": "ok",
        }
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_readyz_and_grpc_health_refuse_a_schema_behind_head(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    await asyncio.to_thread(migrate.downgrade, url, "base")
    settings = Settings(database_url=url, http_port=0, grpc_port=0, ops_port=0)
    stop = asyncio.Event()
    ready: asyncio.Future[Bound] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(settings, stop=stop, on_ready=ready.set_result, handle_signals=False)
    )
    try:
        bound = await asyncio.wait_for(ready, 60)
        async with http.get(f"http://127.0.0.1:{bound.ops_port}/readyz") as r:
            assert r.status == 503
            body = await r.json()
        assert body["status"] == "unavailable" and body["database"] == "ok"
        assert "eventgw db upgrade" in body["schema"]
        async with http.get(f"http://127.0.0.1:{bound.http_port}/healthz") as r:
            assert r.status == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        stop.set()
        await task


# A gateway process's startup, then its cyclic collector's frozen objects and thresholds.
_FREEZE_PROBE = """
import asyncio, gc, sys
from gateway.config import Settings
from gateway.server import run

async def main():
    stop = asyncio.Event()
    def ready(bound):
        print(gc.get_freeze_count(), gc.get_threshold()[0], flush=True)
        stop.set()
    settings = Settings(database_url=sys.argv[1], http_port=0, grpc_port=0, ops_port=0)
    await run(settings, stop=stop, on_ready=ready)

asyncio.run(main())
"""


async def test_a_serving_process_tunes_its_garbage_collector_and_in_process_gateways_do_not(
    tmp_path: Path, gateway: Gateway
) -> None:
    # Full collections then leave startup's objects alone: no long event-loop pauses under load.
    url = f"sqlite:///{tmp_path / 'frozen.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FREEZE_PROBE, url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(probe.communicate(), 120)
    assert probe.returncode == 0
    frozen, young = map(int, out.split()[-2:])
    assert frozen > 10_000 and young == GC_YOUNG_THRESHOLD
    # ``gateway`` runs in this process (handle_signals=False): the test process is left alone.
    assert gc.get_freeze_count() == 0 and gc.get_threshold()[0] != GC_YOUNG_THRESHOLD
