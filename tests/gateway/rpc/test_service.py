"""The gRPC API against a real server: partial success, idempotency, dedup, streams, errors."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct, Value
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gateway.config import Settings
from gateway.model import Result
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import (
    Engagement,
    ErrorReport,
    Event,
    EventType,
    Identity,
    WebVital,
)
from gateway.pb.gateway_pb2 import (
    EventStatus,
    GetSubmissionRequest,
    ResultView,
    SubmitBatchRequest,
    SubmitBatchResponse,
)
from gateway.storage.engine import create_engine
from gateway.storage.idempotency import Claim, IdempotencyStore
from gateway.storage.tenants import TenantStore
from tests.harness import Gateway

ACCEPTED = EventStatus.EVENT_STATUS_ACCEPTED
DUPLICATE = EventStatus.EVENT_STATUS_DUPLICATE
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
REJECTED = EventStatus.EVENT_STATUS_REJECTED


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[gateway_pb2_grpc.EventGatewayStub]:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        yield gateway_pb2_grpc.EventGatewayStub(channel)


def auth(gateway: Gateway) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {gateway.api_key}")]


def batch(prefix: str, n: int, key: str = "") -> SubmitBatchRequest:
    return SubmitBatchRequest(
        idempotency_key=key,
        events=[Event(id=f"{prefix}-{i}", name="order_completed") for i in range(n)],
    )


async def test_500_event_batch_is_accepted_replayed_refused_and_deduplicated(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    request = batch("a", 500, key="key-1")
    first = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert (first.accepted, first.duplicates, first.rejected, first.replayed) == (500, 0, 0, False)
    assert [r.index for r in first.results] == list(range(500))
    assert {r.status for r in first.results} == {ACCEPTED}
    assert [r.event_id for r in first.results] == [f"a-{i}" for i in range(500)]

    again = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert again.replayed
    again.replayed = False
    assert again == first

    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await stub.SubmitBatch(batch("b", 3, key="key-1"), metadata=auth(gateway))
    assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    dup = await stub.SubmitBatch(batch("a", 500, key="key-2"), metadata=auth(gateway))
    assert (dup.accepted, dup.duplicates) == (0, 500)
    assert {r.status for r in dup.results} == {DUPLICATE}

    stored = await gateway.stored()
    assert sorted(e.id for e in stored) == sorted(f"a-{i}" for i in range(500))
    assert {e.dialect for e in stored} == {"grpc"}
    assert {e.project_id for e in stored} == {gateway.project_id}

    fetched = await stub.GetSubmission(
        GetSubmissionRequest(idempotency_key="key-1"), metadata=auth(gateway)
    )
    assert fetched.replayed and fetched.accepted == 500


def keyed_batch(key: str, event_id: str, properties: list[tuple[str, str]]) -> bytes:
    """A serialized one-event ``SubmitBatchRequest`` whose properties are on the wire in the
    order given (protobuf serializes a map in an order of its own choosing)."""
    struct = b"".join(
        Struct(fields={name: Value(string_value=value)}).SerializeToString()
        for name, value in properties
    )
    event = Event(id=event_id, name="order_completed").SerializeToString()
    event += b"\x82\x01" + bytes([len(struct)]) + struct  # field 16, properties
    request = SubmitBatchRequest(idempotency_key=key).SerializeToString()
    return request + b"\x12" + bytes([len(event)]) + event  # field 2, events


async def test_what_a_key_is_bound_to(gateway: Gateway) -> None:
    entries = [("a", "1"), ("b", "2"), ("c", "3")]
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary("/eventgw.v1.EventGateway/SubmitBatch", None, None)

        async def submit(request: bytes) -> SubmitBatchResponse:
            raw = await call(request, metadata=auth(gateway))
            return SubmitBatchResponse.FromString(raw)

        async def refused(request: bytes) -> grpc.StatusCode:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await submit(request)
            return error.value.code()

        assert not (await submit(keyed_batch("k", "m-1", entries))).replayed
        # The same batch serialized again with its map entries in another order (as Go's
        # protobuf does on purpose): other bytes, the same batch.
        assert (await submit(keyed_batch("k", "m-1", entries[::-1]))).replayed
        # The client's ids are the batch: the same ids are the same events (stored once however
        # they are sent), so other content under them replays the first answer, storing nothing.
        assert (await submit(keyed_batch("k", "m-1", [("a", "9")]))).replayed
        # Events without ids are bound by their content.
        assert not (await submit(keyed_batch("n", "", entries))).replayed
        assert (await submit(keyed_batch("n", "", entries[::-1]))).replayed
        assert await refused(keyed_batch("n", "", [("a", "9")])) == FAILED_PRECONDITION
        for other in (batch("m", 2, key="k"), SubmitBatchRequest(idempotency_key="k")):
            assert await refused(other.SerializeToString()) == FAILED_PRECONDITION
    stored = await gateway.stored()
    assert len(stored) == 2 and all(e.properties["a"] == "1" for e in stored)


async def test_a_key_stored_by_an_earlier_version_is_still_replayed(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    # Keys used to be bound to the whole request, deterministically serialized.
    request = batch("old", 3, key="from-before")
    earlier = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    result = Result([f"old-{i}" for i in range(3)]).encode()
    engine = create_engine(Settings(database_url=gateway.settings.database_url))
    try:
        store = IdempotencyStore(engine, retention_s=60, lock_timeout_s=30)
        claim = await store.claim(
            gateway.project_id, "from-before", endpoint="grpc SubmitBatch", fingerprint=earlier
        )
        assert isinstance(claim, Claim)
        async with engine.begin() as conn:
            await store.complete(conn, [(claim, result)])
    finally:
        await engine.dispose()
    answer = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert answer.replayed and answer.accepted == 3
    # Those requests had no view to ask for: asking for one changes nothing of the request.
    request.result_view = ResultView.RESULT_VIEW_EXCEPTIONS
    answer = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert answer.replayed and answer.accepted == 3 and not answer.results
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SubmitBatch(batch("new", 3, key="from-before"), metadata=auth(gateway))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await gateway.stored() == []


async def test_invalid_events_are_rejected_by_index_and_the_rest_stored(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    request = SubmitBatchRequest(
        events=[
            Event(id="ok-1", name="a"),
            Event(id="bad-1"),  # no name
            Event(id="x" * 513, name="a"),
            Event(id="ok-2", name="b", project_id="someone-else"),
            Event(id="ok-3", name="c", type=EventType.EVENT_TYPE_PAGE_VIEW),
        ]
    )
    response = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert [r.status for r in response.results] == [
        ACCEPTED,
        REJECTED,
        REJECTED,
        REJECTED,
        ACCEPTED,
    ]
    assert [r.index for r in response.results] == [0, 1, 2, 3, 4]
    assert response.results[1].code == "missing_field" and response.results[1].field == "name"
    assert response.results[3].code == "project_mismatch"
    assert (response.accepted, response.rejected) == (2, 3)
    stored = {e.id: e for e in await gateway.stored()}
    assert set(stored) == {"ok-1", "ok-3"}
    assert stored["ok-3"].type == EventType.EVENT_TYPE_PAGE_VIEW
    assert stored["ok-1"].type == EventType.EVENT_TYPE_TRACK
    assert stored["ok-1"].occurred_at == stored["ok-1"].received_at


async def test_the_exceptions_view_names_only_the_events_not_accepted(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    await stub.SubmitBatch(
        SubmitBatchRequest(events=[Event(id="seen", name="a")]), metadata=auth(gateway)
    )
    events = [
        Event(id="new-1", name="a"),
        Event(id="seen", name="a"),
        Event(id="nameless"),
        Event(id="new-2", name="b"),
    ]
    request = SubmitBatchRequest(
        idempotency_key="v", events=events, result_view=ResultView.RESULT_VIEW_EXCEPTIONS
    )
    answer = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert (answer.accepted, answer.duplicates, answer.rejected) == (2, 1, 1)
    named = [(r.index, r.status, r.event_id, r.code) for r in answer.results]
    assert named == [(1, DUPLICATE, "seen", ""), (2, REJECTED, "nameless", "missing_field")]
    assert {e.id for e in await gateway.stored()} == {"seen", "new-1", "new-2"}
    # The view is not what the key is bound to: asked for every result, the batch is replayed.
    request.result_view = ResultView.RESULT_VIEW_ALL
    replay = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert replay.replayed and [r.index for r in replay.results] == [0, 1, 2, 3]
    assert [r.status for r in replay.results] == [ACCEPTED, DUPLICATE, REJECTED, ACCEPTED]
    request.result_view = ResultView.RESULT_VIEW_EXCEPTIONS
    replay = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert replay.replayed and [r.index for r in replay.results] == [1, 2]
    # A batch all accepted is answered by its counts alone.
    request = SubmitBatchRequest(
        events=[Event(id="new-3", name="c")], result_view=ResultView.RESULT_VIEW_EXCEPTIONS
    )
    answer = await stub.SubmitBatch(request, metadata=auth(gateway))
    assert answer.accepted == 1 and not answer.results


async def test_each_type_with_a_payload_of_its_own_is_validated_by_its_rules(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    identify, alias = EventType.EVENT_TYPE_IDENTIFY, EventType.EVENT_TYPE_ALIAS
    vital, error = EventType.EVENT_TYPE_WEB_VITAL, EventType.EVENT_TYPE_ERROR
    engagement = EventType.EVENT_TYPE_ENGAGEMENT
    good = [
        Event(id="i", name="$identify", type=identify, identity=Identity(profile_id="user-42")),
        Event(id="a", name="alias", type=alias, identity=Identity(previous_id="o", user_id="n")),
        Event(id="v", name="LCP", type=vital, web_vital=WebVital(metric="LCP", value=1234.5)),
        Event(id="e", name="error", type=error, error=ErrorReport(message="boom", line=3)),
        Event(id="g", name="page_exit", type=engagement, engagement=Engagement(exit_type="spa")),
    ]
    bad = [
        Event(id="i!", name="$identify", type=identify),
        Event(id="a!", name="alias", type=alias, identity=Identity(user_id="n")),
        Event(id="v!", name="LCP", type=vital, web_vital=WebVital(value=1.0)),
        Event(id="e!", name="error", type=error, error=ErrorReport(filename="app.js")),
        Event(id="g!", name="page_exit", type=engagement),
    ]
    response = await stub.SubmitBatch(SubmitBatchRequest(events=good + bad), metadata=auth(gateway))
    assert [r.status for r in response.results] == [ACCEPTED] * 5 + [REJECTED] * 5
    assert [r.field for r in response.results[5:]] == [
        "identity",
        "identity",
        "web_vital.metric",
        "error.message",
        "engagement.exit_type",
    ]
    assert {r.code for r in response.results[5:]} == {"missing_field"}
    stored = {e.id: e for e in await gateway.stored()}
    assert set(stored) == {"i", "a", "v", "e", "g"}
    assert stored["v"].web_vital == WebVital(metric="LCP", value=1234.5)
    assert stored["e"].error.line == 3 and stored["e"].error.HasField("line")
    assert stored["a"].identity.previous_id == "o"


async def test_generated_ids_follow_the_idempotency_key(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    no_ids = SubmitBatchRequest(idempotency_key="gen", events=[Event(name="x"), Event(name="y")])
    first = await stub.SubmitBatch(no_ids, metadata=auth(gateway))
    ids = [r.event_id for r in first.results]
    assert len(set(ids)) == 2 and all(ids)
    # Same ids from a different key are not derived: a new key, new ids.
    other = SubmitBatchRequest(idempotency_key="gen-2", events=[Event(name="x"), Event(name="y")])
    second = await stub.SubmitBatch(other, metadata=auth(gateway))
    assert second.accepted == 2 and not set(ids) & {r.event_id for r in second.results}


async def test_submit_stream_answers_20_batches_in_order(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    async def requests() -> AsyncIterator[SubmitBatchRequest]:
        for b in range(20):
            yield batch(f"s{b}", 50 + b)

    responses: list[SubmitBatchResponse] = []
    async for response in stub.SubmitStream(requests(), metadata=auth(gateway)):
        responses.append(response)
    assert len(responses) == 20
    for b, response in enumerate(responses):
        assert response.accepted == 50 + b
        assert response.results[0].event_id == f"s{b}-0"
    assert len(await gateway.stored()) == sum(50 + b for b in range(20))


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ([], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", "Bearer nope")], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", "Basic abc")], grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_bad_credentials_are_unauthenticated(
    stub: gateway_pb2_grpc.EventGatewayStub, metadata: list[tuple[str, str]], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SubmitBatch(batch("u", 1), metadata=metadata)
    assert error.value.code() == code


async def test_revoked_key_is_unauthenticated(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    assert (await stub.SubmitBatch(batch("r", 1), metadata=auth(gateway))).accepted == 1
    engine = create_engine(Settings(database_url=gateway.settings.database_url))
    try:
        assert await TenantStore(engine).revoke_key(gateway.key_id)
    finally:
        await engine.dispose()
    await asyncio.sleep(gateway.settings.auth_cache_seconds + 0.1)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SubmitBatch(batch("r2", 1), metadata=auth(gateway))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (error.value.details() or "")


async def test_malformed_requests_get_invalid_argument_not_internal(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    too_many = batch("m", gateway.settings.max_grpc_batch_events + 1)
    long_key = batch("k", 1, key="k" * 256)
    for request in (too_many, long_key):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.SubmitBatch(request, metadata=auth(gateway))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetSubmission(GetSubmissionRequest(), metadata=auth(gateway))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetSubmission(
            GetSubmissionRequest(idempotency_key="never"), metadata=auth(gateway)
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_garbage_bytes_are_a_client_error(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary(
            "/eventgw.v1.EventGateway/SubmitBatch",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(b"\xff\xff\xff\xff", metadata=auth(gateway))
    assert error.value.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)


async def test_in_flight_key_is_aborted_with_retry_info(
    gateway: Gateway, stub: gateway_pb2_grpc.EventGatewayStub
) -> None:
    # Hold the key's lock as a first request would while it is being processed.
    engine = create_engine(Settings(database_url=gateway.settings.database_url))
    try:
        from gateway.storage.idempotency import IdempotencyStore

        store = IdempotencyStore(engine, retention_s=60, lock_timeout_s=30)
        request = batch("f", 2, key="busy")
        import hashlib

        fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        await store.claim(
            gateway.project_id, "busy", endpoint="grpc SubmitBatch", fingerprint=fingerprint
        )
    finally:
        await engine.dispose()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SubmitBatch(request, metadata=auth(gateway))
    assert error.value.code() == grpc.StatusCode.ABORTED
    status = rpc_status.from_call(error.value)
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.retry_delay.seconds >= 1


async def test_health_and_reflection_are_served(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "eventgw.v1.EventGateway"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for reply in reflect.ServerReflectionInfo(ask()):
            names |= {s.name for s in reply.list_services_response.service}
        assert "eventgw.v1.EventGateway" in names
