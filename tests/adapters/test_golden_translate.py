"""Golden cases through the adapters alone (no server): request → canonical events → response."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from google.protobuf import text_format

from adapters import default_registry
from adapters.base import RawRequest
from gateway.model import Outcome, Status
from tests.adapters.golden import RECEIVED_AT, REQUEST_ID, Case, all_cases, body_bytes, substitute
from tests.adapters.helpers import result_of

REGISTRY = default_registry()
CASES = all_cases()


def raw_request(case: Case) -> RawRequest:
    request = substitute(case.request)
    path = urlsplit(request["path"]).path
    match = REGISTRY.match(request.get("method", "POST"), path)
    assert match.route is not None, f"no route for {path}"
    headers = {k.lower(): v for k, v in request.get("headers", {}).items()}
    media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return RawRequest(
        route=match.route,
        headers=headers,
        query=request.get("query", {}),
        body=body_bytes(request),
        media_type=media,
        received_at=RECEIVED_AT,
        request_id=REQUEST_ID,
        idempotency_key=headers.get("idempotency-key"),
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden_translation(case: Case) -> None:
    request = raw_request(case)
    adapter = REGISTRY.adapters[case.dialect]
    translation = adapter.translate(request)
    events = translation.events
    expected = case.events or []
    assert [text_format.MessageToString(e) for e in events] == [
        text_format.MessageToString(e) for e in expected
    ]
    if translation.failure is not None:
        # The pure runner cannot authenticate: request-level failures render directly.
        response = adapter.render_error(request, translation.failure)
    elif case.response["status"] >= 400 and not events and not translation.items:
        pytest.skip("error decided by the server (authentication, limits): see test_golden_http")
    else:
        statuses = case.outcomes or ["accepted"] * len(events)
        outcomes = [
            Outcome(status=Status(s), event_id=e.id) for s, e in zip(statuses, events, strict=True)
        ]
        response = adapter.render(request, translation, result_of(translation, outcomes))
    assert response.status == case.response["status"]
    assert json.loads(response.body) == substitute(case.response["body"])
