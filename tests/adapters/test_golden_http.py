"""Golden cases through a real HTTP server: request in, stored canonical events, response out.

Every case under ``tests/adapters/<dialect>/golden/<case>/`` is sent with aiohttp to a gateway
serving a fresh SQLite file (the ``gateway`` fixture), its ``setup.json`` requests first. Unlike the
pure runner (``test_golden_translate.py``), nothing is skipped: authentication, limits and dedup are
decided by the server here. What a live server makes differently from the pure runner is normalized
before comparing events: the receive time (the live clock, checked to fall within the request), the
project id (the fixture's), an event time corrected for clock skew (it follows the receive time),
and ids generated from the random per-request id (checked to be UUIDs)
when the case sends no ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from google.protobuf import text_format
from multidict import CIMultiDictProxy

from gateway.pb.event_pb2 import Event
from tests.adapters.golden import Case, all_cases, body_bytes, substitute
from tests.harness import Gateway

CASES = all_cases()


async def send(
    session: aiohttp.ClientSession, gateway: Gateway, spec: dict[str, Any]
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    """One request of a case, with the fixture's key and project id substituted."""
    request = substitute(spec, gateway.project_id, gateway.api_key)
    async with session.request(
        request.get("method", "POST"),
        gateway.http_url + request["path"],
        params=request.get("query") or None,
        data=body_bytes(request),
        headers=request.get("headers", {}),
        # A case without a Content-Type must arrive without one (no octet-stream default).
        skip_auto_headers=("Content-Type",),
    ) as response:
        return response.status, await response.read(), response.headers


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def expected_stored(case: Case) -> list[Event]:
    """The case's events that this request itself stores: those not answered as duplicates."""
    events = case.events or []
    if case.outcomes is None:
        return list(events)
    return [e for e, o in zip(events, case.outcomes, strict=True) if o == "accepted"]


def normalize(
    stored: Event,
    expected: Event,
    *,
    gateway: Gateway,
    keyed: bool,
    window: tuple[datetime, datetime],
) -> tuple[str, str]:
    """Both events in text format, with what a live server decides made comparable."""
    got, want = Event(), Event()
    got.CopyFrom(stored)
    want.CopyFrom(expected)
    assert got.project_id == gateway.project_id
    want.project_id = gateway.project_id
    received = got.received_at.ToDatetime(tzinfo=UTC)
    assert window[0] <= received <= window[1], "received_at is not the time of the request"
    # No client time: stamped with the receive time. (A client time may also happen to equal the
    # pure runner's fixed receive time: then it is kept as sent.)
    if want.occurred_at == want.received_at and got.occurred_at != want.occurred_at:
        assert got.occurred_at == got.received_at
        want.occurred_at.CopyFrom(got.occurred_at)
    if want.HasField("original_occurred_at") and want.HasField("sent_at"):
        # Corrected for the client's clock skew: receipt - (sent - original), on the live clock.
        skew = want.sent_at.ToDatetime(tzinfo=UTC) - want.original_occurred_at.ToDatetime(
            tzinfo=UTC
        )
        want.occurred_at.FromDatetime(received - skew)
    want.received_at.CopyFrom(got.received_at)
    if not keyed and is_uuid(want.id):  # generated from the server's random request id
        assert is_uuid(got.id), got.id
        want.id = got.id
    return text_format.MessageToString(got), text_format.MessageToString(want)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_golden_http(case: Case, gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        for setup in case.setup:
            status, body, _ = await send(session, gateway, setup)
            assert status < 300, f"setup request failed: {status} {body!r}"
        before = {e.id for e in await gateway.stored()}

        started = datetime.now(UTC)
        status, body, headers = await send(session, gateway, case.request)
        finished = datetime.now(UTC)

    assert headers.get("Content-Type", "").startswith("application/json")
    expected = substitute(case.response, gateway.project_id, gateway.api_key)
    assert (status, json.loads(body)) == (expected["status"], expected["body"])
    for name, value in expected.get("headers", {}).items():
        assert headers.get(name) == value, name

    added = [e for e in await gateway.stored() if e.id not in before]
    want = expected_stored(case)
    assert len(added) == len(want), [e.id for e in added]
    keyed = any(k.lower() == "idempotency-key" for k in case.request.get("headers", {}))
    pairs = [
        normalize(got, exp, gateway=gateway, keyed=keyed, window=(started, finished))
        for got, exp in zip(added, want, strict=True)
    ]
    assert [got for got, _ in pairs] == [exp for _, exp in pairs]
    assert len({e.id for e in added}) == len(added), "generated ids must be distinct"
