"""The REST dialects through a real HTTP server: idempotency on every endpoint, event dedup, body
encodings, JSON errors in each dialect's envelope for whatever aiohttp would otherwise answer,
CORS and origins, Databuddy's scope checks, and lossless translation per dialect.

Each test runs against the ``gateway`` fixture (a real server over a fresh SQLite file) with
``aiohttp.ClientSession`` and reads back what was stored with ``gateway.stored()``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from multidict import CIMultiDictProxy

from adapters import default_registry
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import create_engine
from gateway.storage.idempotency import Claim, IdempotencyStore
from gateway.storage.tenants import TenantStore
from tests.harness import Gateway

JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> Reply:
    async with http.request(
        method,
        gateway.http_url + path,
        data=body,
        headers=dict(headers or {}),
        params=dict(query or {}),
        skip_auto_headers=("Content-Type",),
    ) as response:
        return Reply(response.status, await response.read(), response.headers)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- every endpoint, with a valid body per tag ---------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    dialect: str
    path: str
    # "query" (website / client id), "bearer", "basic" (the key as user name) or "token" (in
    # the body)
    credential: str
    ok: int
    make: Callable[[str, str], Any]  # (api key, tag) -> a valid body storing one event
    query_name: str = "website_id"

    @property
    def id(self) -> str:
        return f"{self.dialect}:{self.path}"

    def body(self, gateway: Gateway, tag: str) -> bytes:
        return dumps(self.make(gateway.api_key, tag))

    def headers(self, gateway: Gateway, **extra: str) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {gateway.api_key}"} if self.credential == "bearer" else {}
        if self.credential == "basic":
            basic = base64.b64encode(f"{gateway.api_key}:".encode()).decode()
            auth = {"Authorization": f"Basic {basic}"}
        return {**JSON, **auth, **extra}

    def query(self, gateway: Gateway) -> dict[str, str]:
        return {self.query_name: gateway.project_id} if self.credential == "query" else {}

    async def post(
        self,
        http: aiohttp.ClientSession,
        gateway: Gateway,
        body: bytes,
        **headers: str,
    ) -> Reply:
        return await call(
            http,
            gateway,
            self.path,
            body,
            headers=self.headers(gateway, **headers),
            query=self.query(gateway),
        )


SITE = "550e8400-e29b-41d4-a716-446655440000"  # the gateway fixture's project
SEGMENT_SETTINGS = "/v1/projects/{writeKey}/settings"  # a GET: its own tests


def _engagement(tag: str) -> dict[str, Any]:
    counts = ["scroll", "click", "key", "interaction", "copy", "rageClick", "deadClick"]
    counts += ["formField", "formSubmit", "error"]
    return {
        "timestamp": 1709294400000,
        "path": f"/{tag}",
        "pageIndex": 0,
        "exitType": "navigation",
        "timeOnPage": 30,
        "activeTime": 20,
        "timeToFirstInteraction": 1500,
        "maxScrollDepth": 75,
        **{f"{name}Count": 1 for name in counts},
    }


def _vf(tag: str) -> dict[str, Any]:
    return {"external_user_id": "usr_42", "name": f"signup_{tag}"}


def _vf_user(tag: str) -> dict[str, Any]:
    return {"external_user_id": "usr_42", "email": "jane@acme.io", "traits": {"plan": tag}}


def _sg(tag: str) -> dict[str, Any]:
    """A Segment message valid on every single-message route, and in a batch."""
    return {"type": "track", "userId": "u1", "event": tag, "groupId": "g1", "previousId": "a1"}


ENDPOINTS = [
    Endpoint(
        "databuddy",
        "/batch",
        "query",
        200,
        lambda _, t: [{"type": "track", "payload": {"name": f"click_{t}", "path": "/"}}],
    ),
    Endpoint("databuddy", "/track", "bearer", 200, lambda _, t: {"name": f"signup_{t}"}),
    Endpoint(
        "databuddy",
        "/",
        "query",
        200,
        lambda _, t: {"type": "track", "name": f"view_{t}", "path": "/"},
        query_name="client_id",
    ),
    Endpoint(
        "databuddy",
        "/identify",
        "bearer",
        200,
        lambda _, t: {"profileId": f"user-{t}", "traits": {"plan": t}, "websiteId": SITE},
    ),
    Endpoint(
        "databuddy",
        "/vitals",
        "query",
        200,
        lambda _, t: [{"path": f"/{t}", "metricName": "LCP", "metricValue": 1200}],
        query_name="client_id",
    ),
    Endpoint(
        "databuddy",
        "/errors",
        "query",
        200,
        lambda _, t: [{"path": "/", "message": f"boom {t}"}],
        query_name="client_id",
    ),
    Endpoint(
        "databuddy",
        "/engagement",
        "query",
        200,
        lambda _, t: [_engagement(t)],
        query_name="client_id",
    ),
    Endpoint(
        "databuddy",
        "/events",
        "query",
        200,
        lambda _, t: [{"eventName": f"e_{t}", "timestamp": 1709294400000, "path": "/"}],
        query_name="client_id",
    ),
    Endpoint("ours", "/api/v1/track", "token", 200, lambda k, t: {"token": k, "event": f"S {t}"}),
    Endpoint(
        "ours",
        "/api/v1/batch",
        "token",
        200,
        lambda k, t: {"token": k, "events": [{"event": f"S {t}", "distinctId": f"d-{t}"}]},
    ),
    Endpoint(
        "ours",
        "/api/v1/identify",
        "token",
        200,
        lambda k, t: {"token": k, "userId": f"u-{t}", "userProperties": {"plan": t}},
    ),
    Endpoint(
        "appizer", "/v1/events", "bearer", 200, lambda _, t: {"event_name": t, "user_id": "u1"}
    ),
    Endpoint(
        "appizer",
        "/v1/events/batch",
        "bearer",
        200,
        lambda _, t: {"events": [{"event_name": t, "user_id": "u1"}]},
    ),
    Endpoint(
        "appizer", "/v1/users", "bearer", 200, lambda _, t: {"user_id": "u1", "properties": {t: 1}}
    ),
    Endpoint(
        "appizer",
        "/v1/users/aliases",
        "bearer",
        200,
        lambda _, t: {"user_id": "u1", "alias_id": f"a-{t}"},
    ),
    Endpoint("vibefollow", "/api/v1/events", "bearer", 202, lambda _, t: _vf(t)),
    Endpoint(
        "vibefollow", "/api/v1/events/batch", "bearer", 202, lambda _, t: {"events": [_vf(t)]}
    ),
    Endpoint("vibefollow", "/api/v1/events/bulk", "bearer", 200, lambda _, t: {"events": [_vf(t)]}),
    Endpoint("vibefollow", "/api/v1/users", "bearer", 202, lambda _, t: _vf_user(t)),
    Endpoint(
        "vibefollow", "/api/v1/users/bulk", "bearer", 200, lambda _, t: {"users": [_vf_user(t)]}
    ),
    *(
        Endpoint("segment", f"/v1/{path}", "basic", 200, lambda _, t: _sg(t))
        for path in ("identify", "track", "page", "screen", "group", "alias", *"itpsga")
    ),
    *(
        Endpoint("segment", f"/v1/{path}", "basic", 200, lambda _, t: {"batch": [_sg(t)]})
        for path in ("batch", "import")
    ),
]
IDS = [e.id for e in ENDPOINTS]


def test_the_table_covers_every_endpoint() -> None:
    routes = {(m, p) for (m, p) in default_registry().routes}
    # Every POST route; the GETs (Databuddy's pixel, Segment's browser settings) have their own.
    assert {r for r in routes if r[0] == "POST"} == {("POST", e.path) for e in ENDPOINTS}
    assert {p for m, p in routes if m == "GET"} == {"/px.jpg", SEGMENT_SETTINGS}


def error_of(dialect: str, reply: Reply) -> tuple[str | None, str]:
    """(code, message) of an error response in ``dialect``'s envelope; fails on any other shape."""
    body = reply.json()
    if dialect == "databuddy":
        assert body["status"] == "error" and isinstance(body["message"], str), body
        assert set(body) <= {"status", "message", "errors"}, body
        return None, body["message"]
    if dialect == "ours":
        assert body["success"] is False and isinstance(body["error"], str), body
        assert set(body) <= {"success", "error", "limit", "retryable", "results"}, body
        return None, body["error"]
    if dialect == "appizer":
        assert set(body) == {"error", "message", "code", "details"}, body
        return body["code"], body["message"]
    if dialect == "vibefollow":
        [error] = body["errors"]
        assert set(error) <= {"code", "message", "field"}, body
        return error["code"], error["message"]
    if dialect == "segment":
        assert body["success"] is False and isinstance(body["message"], str), body
        assert set(body) <= {"success", "code", "message", "field"}, body
        return body["code"], body["message"]
    assert dialect == "generic"
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"], body["error"]["message"]


# -- idempotency on every endpoint ---------------------------------------------------------------


REUSE_CODE = {
    "databuddy": None,  # {"status": "error", "message"}: no code in this envelope
    "ours": None,
    "appizer": "IDEMPOTENCY_KEY_REUSE",
    "vibefollow": "idempotency_key_reuse",
    "segment": "idempotency_key_reused",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_idempotency_key_on_every_endpoint(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    body = endpoint.body(gateway, "a")
    first = await endpoint.post(http, gateway, body, **{"Idempotency-Key": "key-1"})
    assert first.status == endpoint.ok, first.body
    assert "Idempotent-Replayed" not in first.headers
    stored = await gateway.stored()
    assert len(stored) == 1

    # Same key, same request: the stored response byte for byte, nothing stored again.
    again = await endpoint.post(http, gateway, body, **{"Idempotency-Key": "key-1"})
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert await gateway.stored() == stored

    # Same key, another body: 422 in the dialect's envelope.
    reuse = await endpoint.post(
        http, gateway, endpoint.body(gateway, "b"), **{"Idempotency-Key": "key-1"}
    )
    assert reuse.status == 422, reuse.body
    code, _ = error_of(endpoint.dialect, reuse)
    assert code == REUSE_CODE[endpoint.dialect]
    assert "Idempotent-Replayed" not in reuse.headers
    assert await gateway.stored() == stored


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_idempotency_key_in_flight_is_409(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    body = endpoint.body(gateway, "c")
    route = f"POST {endpoint.path}"
    fingerprint = hashlib.sha256(route.encode() + b"\x00" + body).hexdigest()
    engine = create_engine(gateway.settings)
    try:
        store = IdempotencyStore(engine, retention_s=3600, lock_timeout_s=3600)
        claim = await store.claim(
            gateway.project_id, "busy-1", endpoint=route, fingerprint=fingerprint
        )
        assert isinstance(claim, Claim)
        busy = await endpoint.post(http, gateway, body, **{"Idempotency-Key": "busy-1"})
        assert busy.status == 409, busy.body
        error_of(endpoint.dialect, busy)
        assert int(busy.headers["Retry-After"]) >= 1
        assert await gateway.stored() == []

        # Once the holder lets go, the same request goes through.
        await store.release(claim)
        done = await endpoint.post(http, gateway, body, **{"Idempotency-Key": "busy-1"})
        assert done.status == endpoint.ok, done.body
        assert len(await gateway.stored()) == 1
    finally:
        await engine.dispose()


async def test_an_error_response_is_replayed_too(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    headers = {
        **JSON,
        "Authorization": f"Bearer {gateway.api_key}",
        "Idempotency-Key": "bad-batch-1",
    }
    body = dumps({"events": [_vf("x"), {"name": "no_user"}]})
    first = await call(http, gateway, "/api/v1/events/batch", body, headers=headers)
    assert first.status == 422
    assert error_of("vibefollow", first)[0] == "validation_failed"
    again = await call(http, gateway, "/api/v1/events/batch", body, headers=headers)
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await gateway.stored() == []


# -- event-level dedup ---------------------------------------------------------------------------


async def test_databuddy_event_id_is_stored_once_across_requests(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    query = {"website_id": gateway.project_id}

    def item(event_id: str, name: str) -> dict[str, Any]:
        return {"type": "track", "payload": {"eventId": event_id, "name": name, "path": "/"}}

    first = await call(
        http, gateway, "/batch", dumps([item("evt-1", "first")]), headers=JSON, query=query
    )
    assert first.status == 200
    second = await call(
        http,
        gateway,
        "/batch",
        dumps([item("evt-1", "retry"), item("evt-2", "new")]),
        headers=JSON,
        query=query,
    )
    assert second.status == 200
    assert second.json()["results"] == [
        {"status": "success", "type": "track", "eventId": "evt-1"},
        {"status": "success", "type": "track", "eventId": "evt-2"},
    ]
    single = await call(
        http,
        gateway,
        "/",
        dumps({"type": "track", "eventId": "evt-2", "name": "again", "path": "/"}),
        headers=JSON,
        query={"client_id": gateway.project_id},
    )
    assert single.json() == {"status": "success", "type": "track"}
    track = await call(
        http,
        gateway,
        "/track",
        dumps({"name": "again", "eventId": "evt-1"}),
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}"},
    )
    assert track.json() == {"status": "success", "type": "custom_event", "count": 1}

    stored = await gateway.stored()
    assert [(e.id, e.name) for e in stored] == [("evt-1", "first"), ("evt-2", "new")]


async def test_ours_distinct_id_is_stored_once_across_requests(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    key = gateway.api_key
    track = await call(
        http,
        gateway,
        "/api/v1/track",
        dumps({"token": key, "event": "Order", "distinctId": "order-1"}),
        headers=JSON,
    )
    assert (track.status, track.json()) == (200, {"success": True})
    rows = [
        {"event": "Order retried", "distinctId": "order-1"},
        {"event": "Order", "distinctId": "order-2"},
    ]
    batch = await call(
        http, gateway, "/api/v1/batch", dumps({"token": key, "events": rows}), headers=JSON
    )
    assert batch.status == 200
    assert batch.json() == {
        "success": True,
        "accepted": 2,
        "failed": 0,
        "results": [{"index": 0, "success": True}, {"index": 1, "success": True}],
    }
    again = await call(
        http,
        gateway,
        "/api/v1/track",
        dumps({"token": key, "event": "Order", "distinctId": "order-2"}),
        headers=JSON,
    )
    assert (again.status, again.json()) == (200, {"success": True})

    stored = await gateway.stored()
    assert [(e.id, e.name) for e in stored] == [("order-1", "Order"), ("order-2", "Order")]


# -- body encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_without_credentials_nothing_is_stored(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    reply = await call(http, gateway, endpoint.path, dumps(endpoint.make("", "anon")), headers=JSON)
    assert 400 <= reply.status < 500, reply.body
    error_of(endpoint.dialect, reply)
    assert await gateway.stored() == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_text_plain_json_body(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    reply = await endpoint.post(
        http,
        gateway,
        endpoint.body(gateway, "beacon"),
        **{"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert reply.status == endpoint.ok, reply.body
    [event] = await gateway.stored()
    assert event.dialect == endpoint.dialect


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_gzip_body(gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint) -> None:
    body = gzip.compress(endpoint.body(gateway, "zipped"))
    reply = await endpoint.post(http, gateway, body, **{"Content-Encoding": "gzip"})
    assert reply.status == endpoint.ok, reply.body
    [event] = await gateway.stored()
    assert "zipped" in str(event)  # the tag rides in the name, or the identify traits


@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, br"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_unsupported_content_encoding_is_415(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint, encoding: str
) -> None:
    reply = await endpoint.post(
        http, gateway, endpoint.body(gateway, "x"), **{"Content-Encoding": encoding}
    )
    assert reply.status == 415, reply.body
    error_of(endpoint.dialect, reply)
    assert await gateway.stored() == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_broken_gzip_is_400(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    broken = gzip.compress(endpoint.body(gateway, "x"))[:-12] + b"garbage!"
    reply = await endpoint.post(http, gateway, broken, **{"Content-Encoding": "gzip"})
    assert reply.status == 400, reply.body
    error_of(endpoint.dialect, reply)
    assert await gateway.stored() == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_gzip_bomb_is_refused_413(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    route = default_registry().routes["POST", endpoint.path][1]
    limit = route.max_body_bytes or gateway.settings.max_body_bytes
    bomb = gzip.compress(b" " * (limit + 1) + endpoint.body(gateway, "x"))
    assert len(bomb) < limit // 100
    reply = await endpoint.post(http, gateway, bomb, **{"Content-Encoding": "gzip"})
    # The Segment spec answers an oversize request 400, as its libraries expect.
    assert reply.status == (400 if endpoint.dialect == "segment" else 413), reply.body
    error_of(endpoint.dialect, reply)
    assert await gateway.stored() == []


@pytest.mark.parametrize("body", [b"", b"{", b"null", b'{"name": "\xff"}'], ids=repr)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_malformed_bodies_get_the_dialect_envelope(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint, body: bytes
) -> None:
    reply = await endpoint.post(http, gateway, body)
    assert 400 <= reply.status < 500, reply.body
    error_of(endpoint.dialect, reply)
    assert await gateway.stored() == []


# Per-item endpoints: the status and a check that their only row was reported rejected.
PER_ITEM_REJECTED: dict[str, tuple[int, Callable[[Any], bool]]] = {
    "/batch": (200, lambda b: [r["status"] for r in b["results"]] == ["error"]),
    # Ours: no row accepted is a 400 that still lists the rows (dialects.md §2).
    "/api/v1/batch": (400, lambda b: (b["accepted"], b["failed"]) == (0, 1)),
    "/api/v1/events/bulk": (
        200,
        lambda b: (b["data"]["accepted"], b["data"]["rejected"]) == (0, 1),
    ),
    "/api/v1/users/bulk": (
        200,
        lambda b: (b["data"]["accepted"], b["data"]["rejected"]) == (0, 1),
    ),
    # Segment: 200, naming the message it could not use.
    **{
        e.path: (200, lambda b: (b["accepted"], len(b["rejected"])) == (0, 1))
        for e in ENDPOINTS
        if e.dialect == "segment"
    },
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_a_json_body_of_the_wrong_type_is_refused(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    body = endpoint.make(gateway.api_key, "typed")
    # The name field of the (first) event, the traits of an identify or the id an alias adds
    # becomes a number.
    target = body[0].get("payload", body[0]) if isinstance(body, list) else body
    if isinstance(target, dict):
        target = target.get("events", target.get("users", target.get("batch", [target])))[0]
    typed = ("name", "event", "event_name", "userProperties", "traits", "properties", "alias_id")
    typed += ("metricName", "message", "eventName", "exitType", "profileId")
    for name in typed:
        if name in target:
            target[name] = 42
    reply = await endpoint.post(http, gateway, dumps(body))
    assert await gateway.stored() == []
    per_item = PER_ITEM_REJECTED.get(endpoint.path)
    if per_item is not None:  # these endpoints answer row by row
        status, rejected = per_item
        assert reply.status == status, reply.body
        assert rejected(reply.json()), reply.body
    else:
        assert 400 <= reply.status < 500, reply.body
        error_of(endpoint.dialect, reply)
    # Kept as a failed event: what was sent, where, and why.
    kept = await gateway.failed(at_least=len(body) if isinstance(body, list) else 1)
    assert kept, "the refused item is kept"
    assert {(f.dialect, f.endpoint) for f in kept} == {(endpoint.dialect, f"POST {endpoint.path}")}
    assert any(b"42" in f.raw for f in kept) and all(f.code and f.message for f in kept)


@pytest.mark.parametrize(
    ("content_type", "dialect", "path"),
    [
        ("application/xml", "ours", "/api/v1/batch"),
        ("application/x-www-form-urlencoded", "vibefollow", "/api/v1/events"),
        ("multipart/form-data; boundary=x", "appizer", "/v1/events"),
        ("application/xml", "databuddy", "/track"),
    ],
)
async def test_a_non_json_content_type_is_refused(
    gateway: Gateway, http: aiohttp.ClientSession, content_type: str, dialect: str, path: str
) -> None:
    endpoint = next(e for e in ENDPOINTS if e.path == path)
    reply = await endpoint.post(
        http, gateway, endpoint.body(gateway, "x"), **{"Content-Type": content_type}
    )
    assert reply.status in (400, 415), reply.body
    error_of(dialect, reply)
    assert await gateway.stored() == []


# -- unknown routes and methods ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "path"),
    [
        ("ours", "/api/v1/nope"),
        ("ours", "/api/v1"),
        ("appizer", "/v1/users/nope"),
        ("appizer", "/v1/audiences"),
        ("appizer", "/v1/events/batch/extra"),
        ("vibefollow", "/api/v1/events/nope"),
        ("vibefollow", "/api/v1/events/batch/"),
        ("vibefollow", "/api/v1/users/nope"),
        ("vibefollow", "/api/v1/users/bulk/"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_unknown_route_under_a_prefix_is_404_in_its_envelope(
    gateway: Gateway, http: aiohttp.ClientSession, dialect: str, path: str, method: str
) -> None:
    reply = await call(http, gateway, path, b"{}", method=method, headers=JSON)
    assert reply.status == 404, reply.body
    code, _ = error_of(dialect, reply)
    assert code in (None, "not_found", "NOT_FOUND")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_wrong_method_is_405_in_its_envelope(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint, method: str
) -> None:
    reply = await call(http, gateway, endpoint.path, method=method, headers=JSON)
    assert reply.status == 405, reply.body
    error_of(endpoint.dialect, reply)
    assert "POST" in reply.headers["Allow"]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ["/nope", "/v2/events", "/api/v2/track", "/batch/extra"])
async def test_unknown_root_path_is_a_generic_json_404(
    gateway: Gateway, http: aiohttp.ClientSession, path: str, method: str
) -> None:
    reply = await call(http, gateway, path, method=method, headers=JSON)
    assert reply.status == 404, reply.body
    assert error_of("generic", reply)[0] == "not_found"


async def test_options_on_a_route_without_cors_is_405_json(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    reply = await call(http, gateway, "/api/v1/track", method="OPTIONS")
    assert reply.status == 405
    error_of("ours", reply)


# -- CORS and origins (Databuddy's browser endpoints) --------------------------------------------

ORIGIN = "https://shop.example.com"


@pytest.mark.parametrize("path", ["/batch", "/track", "/"])
async def test_cors_preflight(gateway: Gateway, http: aiohttp.ClientSession, path: str) -> None:
    reply = await call(
        http,
        gateway,
        path,
        method="OPTIONS",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,databuddy-client-id",
        },
    )
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in reply.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "authorization", "databuddy-client-id", "databuddy-sdk-name"} <= allowed


async def test_origin_is_echoed_on_post_and_on_errors(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    endpoint = ENDPOINTS[0]
    ok = await endpoint.post(http, gateway, endpoint.body(gateway, "cors"), Origin=ORIGIN)
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in ok.headers["Vary"]
    # An error must be readable by the page too.
    missing = await call(http, gateway, "/batch", b"[]", headers={**JSON, "Origin": ORIGIN})
    assert missing.status == 400
    assert error_of("databuddy", missing)[1] == "Missing client ID"
    assert missing.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_a_project_with_allowed_origins_refuses_other_origins(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    engine = create_engine(gateway.settings)
    try:
        shop = await TenantStore(engine).create_project("shop", allowed_origins=[ORIGIN])
    finally:
        await engine.dispose()
    body = dumps([{"type": "track", "payload": {"name": "view", "path": "/"}}])
    query = {"website_id": shop.id}

    other = await call(
        http,
        gateway,
        "/batch",
        body,
        headers={**JSON, "Origin": "https://evil.example"},
        query=query,
    )
    assert other.status == 403
    assert error_of("databuddy", other)[1] == "Origin not authorized"
    assert await gateway.stored(shop.id) == []

    allowed = await call(
        http, gateway, "/batch", body, headers={**JSON, "Origin": ORIGIN}, query=query
    )
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    [event] = await gateway.stored(shop.id)
    assert event.project_id == shop.id
    assert await gateway.stored() == []  # the fixture's project got nothing


# -- Databuddy's scope checks --------------------------------------------------------------------


async def test_databuddy_track_with_a_key_lacking_the_scope_is_403(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    engine = create_engine(gateway.settings)
    try:
        _, secret = await TenantStore(engine).create_key(
            gateway.project_id, scopes=("read:analytics",), prefix="dbdy_"
        )
    finally:
        await engine.dispose()
    reply = await call(
        http,
        gateway,
        "/track",
        dumps({"name": "signup"}),
        headers={**JSON, "Authorization": f"Bearer {secret}"},
    )
    assert reply.status == 403
    assert error_of("databuddy", reply)[1] == "API key missing track:events scope"
    via_header = await call(
        http, gateway, "/track", dumps({"name": "signup"}), headers={**JSON, "X-Api-Key": secret}
    )
    assert (via_header.status, via_header.body) == (reply.status, reply.body)
    assert await gateway.stored() == []


@pytest.mark.parametrize("shape", ["single", "array"])
async def test_databuddy_track_naming_another_website_is_403(
    gateway: Gateway, http: aiohttp.ClientSession, shape: str
) -> None:
    engine = create_engine(gateway.settings)
    try:
        other = await TenantStore(engine).create_project("other site")
    finally:
        await engine.dispose()
    mine = {"name": "ok", "websiteId": gateway.project_id}
    theirs = {"name": "sneaky", "websiteId": other.id}
    body = theirs if shape == "single" else [mine, theirs]
    reply = await call(
        http,
        gateway,
        "/track",
        dumps(body),
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}"},
    )
    assert reply.status == 403
    assert error_of("databuddy", reply)[1] == "Website scope mismatch"
    assert await gateway.stored() == []
    assert await gateway.stored(other.id) == []


# -- lossless translation per dialect ------------------------------------------------------------

T0 = 1709251200000  # 2024-03-01T00:00:00Z
UNKNOWN = {"custom_flag": True, "nested_unknown": {"a": [1, "two", None], "b": {"c": 1.5}}}


def as_dict(event: Event) -> dict[str, Any]:
    data = MessageToDict(event, preserving_proto_field_name=True)
    data.pop("received_at")
    return data


async def test_lossless_databuddy_batch_track_and_outgoing_link(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    track = {
        "eventId": "evt-ll-1",
        "name": "signup",
        "anonymousId": "anon_1",
        "sessionId": "sess_1",
        "sessionStartTime": T0,
        "timestamp": T0 + 5000,
        "path": "/pricing",
        "title": "Pricing",
        "referrer": "https://google.com",
        "screen_resolution": "1920x1080",
        "viewport_size": "1440x900",
        "timezone": "Europe/Paris",
        "language": "fr-FR",
        "connection_type": "wifi",
        "rtt": 50,
        "downlink": 10.5,
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "spring",
        "utm_term": "shoes",
        "utm_content": "hero",
        "load_time": 1200,
        "dom_ready_time": 800,
        "ttfb": 250,
        "time_on_page": 30.5,
        "scroll_depth": 75,
        "interaction_count": 3,
        "page_count": 2,
        "properties": {"plan": "pro", "seats": 5},
        **UNKNOWN,
    }
    link = {
        "eventId": "evt-ll-2",
        "href": "https://external.example/x",
        "text": "Learn more",
        "anonymousId": "anon_1",
        "sessionId": "sess_1",
        "timestamp": T0 + 6000,
        "properties": {"position": "footer"},
        **UNKNOWN,
    }
    body = [
        {"type": "track", "payload": track, "wrapper_note": "kept"},
        {"type": "outgoing_link", "payload": link},
    ]
    reply = await call(
        http, gateway, "/batch", dumps(body), headers=JSON, query={"website_id": gateway.project_id}
    )
    assert reply.json()["batched"] == {"track": 1, "outgoing_link": 1}
    first, second = await gateway.stored()
    assert as_dict(first) == {
        "id": "evt-ll-1",
        "project_id": gateway.project_id,
        "dialect": "databuddy",
        "type": "EVENT_TYPE_TRACK",
        "name": "signup",
        "occurred_at": "2024-03-01T00:00:05Z",
        "identity": {
            "anonymous_id": "anon_1",
            "session_id": "sess_1",
            "session_started_at": "2024-03-01T00:00:00Z",
        },
        "page": {"path": "/pricing", "title": "Pricing", "referrer": "https://google.com"},
        "device": {
            "screen_resolution": "1920x1080",
            "viewport_size": "1440x900",
            "timezone": "Europe/Paris",
            "language": "fr-FR",
        },
        "network": {"connection_type": "wifi", "rtt_ms": 50.0, "downlink_mbps": 10.5},
        "campaign": {
            "source": "newsletter",
            "medium": "email",
            "name": "spring",
            "term": "shoes",
            "content": "hero",
        },
        "performance": {
            "load_time_ms": 1200.0,
            "dom_ready_time_ms": 800.0,
            "ttfb_ms": 250.0,
            "time_on_page": 30.5,
            "scroll_depth": 75.0,
            "interaction_count": "3",
            "page_count": "2",
        },
        "properties": {"plan": "pro", "seats": 5.0},
        "extras": {**UNKNOWN, "$wrapper": {"wrapper_note": "kept"}},
    }
    assert as_dict(second) == {
        "id": "evt-ll-2",
        "project_id": gateway.project_id,
        "dialect": "databuddy",
        "type": "EVENT_TYPE_OUTGOING_LINK",
        "name": "outgoing_link",
        "occurred_at": "2024-03-01T00:00:06Z",
        "identity": {"anonymous_id": "anon_1", "session_id": "sess_1"},
        "link": {"href": "https://external.example/x", "text": "Learn more"},
        "properties": {"position": "footer"},
        "extras": UNKNOWN,
    }


async def test_lossless_databuddy_track(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    body = {
        "name": "export",
        "namespace": "product",
        "timestamp": "2024-02-29T10:00:00Z",
        "properties": {"format": "csv"},
        "anonymousId": "anon_9",
        "sessionId": "sess_9",
        "websiteId": gateway.project_id,
        "source": "backend",
        "eventId": "evt-track-ll",
        "path": "/reports",
        "profileId": "user_9",
        **UNKNOWN,
    }
    reply = await call(
        http,
        gateway,
        "/track",
        dumps(body),
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}"},
    )
    assert reply.json() == {"status": "success", "type": "custom_event", "count": 1}
    [event] = await gateway.stored()
    assert as_dict(event) == {
        "id": "evt-track-ll",
        "project_id": gateway.project_id,  # websiteId: the project it names
        "dialect": "databuddy",
        "type": "EVENT_TYPE_CUSTOM",
        "name": "export",
        "namespace": "product",
        "source": "backend",
        "occurred_at": "2024-02-29T10:00:00Z",
        "identity": {"anonymous_id": "anon_9", "session_id": "sess_9", "profile_id": "user_9"},
        "page": {"path": "/reports"},
        "properties": {"format": "csv"},
        "extras": UNKNOWN,
    }


async def test_lossless_ours(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    row = {
        "event": "Purchase",
        "distinctId": "pay_123",
        "userId": "visitor_1",
        "externalId": "crm_1",
        "email": "a@example.com",
        "time": T0,
        "eventProperties": {"amount": 49.5, "items": ["a", "b"]},
        "userProperties": {"plan": "pro"},
        "defaultProperties": {"gclid": "g-1", "referrer": "https://x.example"},
        "identityContext": {"ip": "203.0.113.9", "userAgent": "UA/1.0", "country": "FR"},
        **UNKNOWN,
    }
    body = {"token": gateway.api_key, "events": [row], "batch_label": "replay-7"}
    reply = await call(http, gateway, "/api/v1/batch", dumps(body), headers=JSON)
    assert reply.status == 200, reply.body
    [event] = await gateway.stored()
    assert as_dict(event) == {
        "id": "pay_123",
        "project_id": gateway.project_id,
        "dialect": "ours",
        "type": "EVENT_TYPE_TRACK",
        "name": "Purchase",
        "occurred_at": "2024-03-01T00:00:00Z",
        "identity": {
            "distinct_id": "pay_123",
            "user_id": "visitor_1",
            "external_id": "crm_1",
            "email": "a@example.com",
        },
        "device": {"ip": "203.0.113.9", "user_agent": "UA/1.0"},
        "properties": {"amount": 49.5, "items": ["a", "b"]},
        "user_properties": {"plan": "pro"},
        "extras": {
            **UNKNOWN,
            "defaultProperties": {"gclid": "g-1", "referrer": "https://x.example"},
            "identityContext": {"country": "FR"},
            "$batch": {"batch_label": "replay-7"},
        },
    }
    assert "token" not in json.dumps(as_dict(event))  # the secret is never stored


async def test_lossless_appizer(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    row = {
        "event_name": "page_view",
        "user_id": "user_123",
        "properties": {"page": "/dashboard"},
        "ip": "192.168.1.1",
        "ua": "Mozilla/5.0",
        **UNKNOWN,
    }
    reply = await call(
        http,
        gateway,
        "/v1/events/batch",
        dumps({"events": [row]}),
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}", "Idempotency-Key": "ll-1"},
    )
    assert reply.status == 200, reply.body
    [event] = await gateway.stored()
    data = as_dict(event)
    assert data.pop("occurred_at")  # the receive time: Appizer sends none
    assert data.pop("id")
    assert data == {
        "project_id": gateway.project_id,
        "dialect": "appizer",
        "type": "EVENT_TYPE_TRACK",
        "name": "page_view",
        "identity": {"user_id": "user_123"},
        "device": {"ip": "192.168.1.1", "user_agent": "Mozilla/5.0"},
        "properties": {"page": "/dashboard"},
        "extras": UNKNOWN,
    }


async def test_lossless_vibefollow(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    row = {
        "external_user_id": "usr_42",
        "name": "trial_started",
        "properties": {"trialDays": 14},
        "timestamp": "2024-02-29T12:30:00Z",
        **UNKNOWN,
    }
    reply = await call(
        http,
        gateway,
        "/api/v1/events/batch",
        dumps({"events": [row]}),
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}", "Idempotency-Key": "ll-2"},
    )
    assert reply.status == 202, reply.body
    [event] = await gateway.stored()
    data = as_dict(event)
    assert data.pop("id")
    assert data == {
        "project_id": gateway.project_id,
        "dialect": "vibefollow",
        "type": "EVENT_TYPE_TRACK",
        "name": "trial_started",
        "occurred_at": "2024-02-29T12:30:00Z",
        "identity": {"external_id": "usr_42"},
        "properties": {"trialDays": 14.0},
        "extras": UNKNOWN,
    }


USERS = [
    (
        "/v1/users",
        {
            "user_id": "user_123",
            "email": "user@example.com",
            "phone": "+1234567890",
            "properties": {"plan": "premium"},
            "origin": {"channel": "ios-app"},
            **UNKNOWN,
        },
        {
            "dialect": "appizer",
            "type": "EVENT_TYPE_IDENTIFY",
            "name": "$identify",
            "identity": {"user_id": "user_123", "email": "user@example.com"},
            "user_properties": {"plan": "premium"},
            "extras": {"phone": "+1234567890", "origin": {"channel": "ios-app"}, **UNKNOWN},
        },
    ),
    (
        "/v1/users/aliases",
        {"primary_user_id": "0f8f", "alias_id": "legacy_999", **UNKNOWN},
        {
            "dialect": "appizer",
            "type": "EVENT_TYPE_ALIAS",
            "name": "$alias",
            "identity": {"previous_id": "legacy_999"},
            "extras": {"primary_user_id": "0f8f", **UNKNOWN},
        },
    ),
    (
        "/api/v1/users",
        {"external_user_id": "usr_42", "email": "jane@acme.io", "traits": {"seats": 3}, **UNKNOWN},
        {
            "dialect": "vibefollow",
            "type": "EVENT_TYPE_IDENTIFY",
            "name": "$identify",
            "identity": {"external_id": "usr_42", "email": "jane@acme.io"},
            "user_properties": {"seats": 3.0},
            "extras": UNKNOWN,
        },
    ),
]


@pytest.mark.parametrize(("path", "body", "stored"), USERS, ids=[u[0] for u in USERS])
async def test_lossless_users(
    gateway: Gateway, http: aiohttp.ClientSession, path: str, body: Any, stored: Any
) -> None:
    headers = {**JSON, "Authorization": f"Bearer {gateway.api_key}", "Idempotency-Key": "ll-u"}
    reply = await call(http, gateway, path, dumps(body), headers=headers)
    assert reply.status in (200, 202), reply.body
    [event] = await gateway.stored()
    data = as_dict(event)
    assert data.pop("id") and data.pop("occurred_at")  # the receive time: no client time
    assert data == {"project_id": gateway.project_id, **stored}


@pytest.mark.parametrize(
    ("path", "row"),
    [
        ("/v1/events/batch", {"event_name": "e", "user_id": "u"}),
        ("/api/v1/events/batch", {"external_user_id": "u", "name": "e"}),
        ("/api/v1/events/bulk", {"external_user_id": "u", "name": "e"}),
        ("/api/v1/users/bulk", {"external_user_id": "u"}),
        ("/api/v1/batch", {"event": "e", "distinctId": "d"}),
    ],
)
async def test_unknown_batch_envelope_keys_are_kept(
    gateway: Gateway, http: aiohttp.ClientSession, path: str, row: dict[str, Any]
) -> None:
    rows = "users" if path.endswith("/users/bulk") else "events"
    body = {rows: [row], "sent_at": "2024-03-01T12:00:00Z"}
    if path == "/api/v1/batch":
        body["token"] = gateway.api_key  # Ours: the key is the body's token
    reply = await call(
        http,
        gateway,
        path,
        dumps(body),
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}", "Idempotency-Key": "env-1"},
    )
    assert reply.status < 300, reply.body
    [event] = await gateway.stored()
    assert "2024-03-01T12:00:00Z" in json.dumps(MessageToDict(event.extras))


# -- the seeds' documented errors that need a live server -------------------------------------


async def test_seed_error_responses_for_bad_credentials(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    # Ours seed 003: the literal curl body (token "string") is a request-level 401.
    ours = await call(
        http,
        gateway,
        "/api/v1/batch",
        dumps({"token": "string", "events": [{"event": "string", "distinctId": "string"}]}),
        headers=JSON,
    )
    assert (ours.status, ours.json()) == (401, {"success": False, "error": "Invalid token"})
    # Appizer seed 002: the placeholder key of its curl example.
    appizer = await call(
        http,
        gateway,
        "/v1/events/batch",
        dumps({"events": [{"event_name": "page_view", "user_id": "user_123"}]}),
        headers={**JSON, "Authorization": "Bearer YOUR_API_KEY"},
    )
    assert appizer.status == 401
    assert error_of("appizer", appizer)[0] == "INVALID_API_KEY"
    # Databuddy seed 001: the placeholder key on /track.
    databuddy = await call(
        http,
        gateway,
        "/track",
        dumps({"name": "button_clicked"}),
        headers={**JSON, "Authorization": "Bearer YOUR_API_KEY"},
    )
    assert databuddy.status == 401
    assert error_of("databuddy", databuddy)[1] == "Invalid API key"
    # VibeFollow seed 004: a key it never issued.
    vibefollow = await call(
        http,
        gateway,
        "/api/v1/events/batch",
        dumps({"events": [_vf("x")]}),
        headers={**JSON, "Authorization": "Bearer sk_live_unknown", "Idempotency-Key": "s-1"},
    )
    assert vibefollow.status == 401
    assert error_of("vibefollow", vibefollow)[0] == "invalid_api_key"
    assert await gateway.stored() == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
async def test_an_overlong_idempotency_key_is_400_in_the_envelope(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    reply = await endpoint.post(
        http, gateway, endpoint.body(gateway, "x"), **{"Idempotency-Key": "k" * 256}
    )
    assert reply.status == 400, reply.body
    error_of(endpoint.dialect, reply)
    assert await gateway.stored() == []


# -- the per-event size cap, on the event as stored ------------------------------------------------


async def post_streamed(
    gateway: Gateway, http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> tuple[int, bytes]:
    payload = dumps(body).replace(b"{{api_key}}", gateway.api_key.encode())
    assert len(payload) < gateway.settings.max_body_bytes  # only the event is too large
    async with http.post(
        gateway.http_url + path,
        data=io.BytesIO(payload),  # streamed: aiohttp warns on large bytes bodies
        headers={**JSON, "Authorization": f"Bearer {gateway.api_key}"},
    ) as response:
        return response.status, await response.read()


async def test_an_event_over_the_per_event_limit_refuses_an_all_or_nothing_request(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    big = {"event_name": "e", "user_id": "u", "blob": "x" * (1024 * 1024)}
    status, reply = await post_streamed(gateway, http, "/v1/events", big)
    assert status == 413, reply
    assert str(gateway.settings.max_event_bytes).encode() in reply
    assert await gateway.stored() == []


async def test_an_event_over_the_per_event_limit_is_rejected_alone_where_items_answer(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    body = {
        "token": "{{api_key}}",
        "events": [
            {"event": "ok", "distinctId": "small"},
            {"event": "big", "distinctId": "big", "blob": "x" * (1024 * 1024)},
        ],
    }
    status, reply = await post_streamed(gateway, http, "/api/v1/batch", body)
    assert status == 207, reply
    results = orjson.loads(reply)["results"]
    assert results[0] == {"index": 0, "success": True}
    assert (results[1]["success"], results[1]["code"]) == (False, "invalid_event")
    assert str(gateway.settings.max_event_bytes) in results[1]["message"]
    assert [e.id for e in await gateway.stored()] == ["small"]


@pytest.mark.parametrize(
    "endpoint",
    [e for e in ENDPOINTS if e.dialect == "databuddy" and e.path not in ("/batch", "/track", "/")],
    ids=lambda e: e.path,
)
async def test_lossless_databuddy_signals_and_identify(
    gateway: Gateway, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    """Every key sent lands in a typed field or in extras: an unknown one, and the ids kept as
    sent (``anonymizeVisitorIds``) alike."""
    body = endpoint.make(gateway.api_key, "kept")
    item = body[0] if isinstance(body, list) else body
    item.update({"note": {"nested": [1, "two"]}, "anonymousId": "anon_1"})
    if isinstance(body, list):
        item["anonymizeVisitorIds"] = "auto"
    reply = await endpoint.post(http, gateway, dumps(body))
    assert reply.status == 200, reply.body
    [event] = await gateway.stored()
    extras = MessageToDict(event.extras)
    assert extras["note"] == {"nested": [1, "two"]}
    assert event.identity.anonymous_id == "anon_1"
    if isinstance(body, list):
        assert extras["anonymizeVisitorIds"] == "auto"
