"""The gRPC hot path normalizes events by appending serialized fields to the client's bytes
(``rpc._suffixes``): what is stored must decode to the normalized event whatever the client set."""

from __future__ import annotations

import time

import grpc

from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event, EventType
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from tests.harness import Gateway


async def test_stored_events_carry_the_gateways_fields(gateway: Gateway) -> None:
    before = time.time_ns() // 1000
    client_set = Event(id="c", name="n", dialect="spoofed", type=EventType.EVENT_TYPE_PAGE_VIEW)
    client_set.received_at.seconds, client_set.received_at.nanos = 1_000_000_000, 999
    client_set.occurred_at.seconds = 1_700_000_000
    bare = Event(id="b", name="n", project_id=gateway.project_id)
    request = SubmitBatchRequest(events=[client_set, bare])
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        metadata = (("authorization", f"Bearer {gateway.api_key}"),)
        response = await stub.SubmitBatch(request, metadata=metadata)
    assert response.accepted == 2
    stored = {e.id: e for e in await gateway.stored()}
    after = time.time_ns() // 1000

    c, b = stored["c"], stored["b"]
    for event in (c, b):
        assert event.dialect == "grpc" and event.project_id == gateway.project_id
        assert before <= event.received_at.ToMicroseconds() <= after
    assert c.received_at == b.received_at
    assert c.type == EventType.EVENT_TYPE_PAGE_VIEW and c.occurred_at.seconds == 1_700_000_000
    assert b.type == EventType.EVENT_TYPE_TRACK and b.occurred_at == b.received_at
