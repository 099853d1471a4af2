"""Shared builders for the adapter unit tests: a ``RawRequest`` as the HTTP front would make it,
and the small assertions every dialect's tests repeat."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.base import Adapter, RawRequest, Rejection, Route, Translation
from gateway.errors import GatewayError
from gateway.model import Outcome, Result, Status

# The receive time every unit test stamps (the golden cases' too).
RECEIVED = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def encode(body: Any) -> bytes:
    """``body`` as compact JSON; bytes are sent as they are. (``json`` rather than ``orjson``,
    which refuses integers beyond 64 bits that property-based tests generate.)"""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def raw_request(
    route: Route,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    media_type: str = "application/json",
    received_at: datetime = RECEIVED,
    request_id: str = "req-1",
    idempotency_key: str | None = None,
) -> RawRequest:
    """A request on ``route``: ``body`` is a JSON value, or the exact bytes to send."""
    return RawRequest(
        route=route,
        headers=dict(headers or {}),
        query=dict(query or {}),
        body=encode(body),
        media_type=media_type,
        received_at=received_at,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


def bearer(key: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``key`` (lower-case, as the HTTP front passes it)."""
    return {} if key is None else {"authorization": f"Bearer {key}"}


def route_named(adapter: Adapter, name: str) -> Route:
    return next(r for r in adapter.routes if r.name == name)


def failure(translation: Translation) -> GatewayError:
    """The request-level failure of a translation that produced no item."""
    assert translation.failure is not None
    assert not translation.items
    return translation.failure


def rendered(
    adapter: Adapter, request: RawRequest | None, error: GatewayError
) -> tuple[int, Any, dict[str, str]]:
    """``error`` in ``adapter``'s envelope: status, parsed JSON body, headers."""
    response = adapter.render_error(request, error)
    assert response.content_type == "application/json"
    return response.status, orjson.loads(response.body), dict(response.headers)


def result_of(translation: Translation, outcomes: Sequence[Outcome] | None = None) -> Result:
    """The ``Result`` the pipeline answers for ``translation``: ``outcomes`` are its events'
    (in order; all accepted when None), its rejections stay where they were."""
    events = translation.events
    if outcomes is None:
        outcomes = [Outcome(status=Status.ACCEPTED, event_id=e.id) for e in events]
    pending = iter(outcomes)
    ids: list[str] = []
    duplicates: set[int] = set()
    rejected: dict[int, Outcome] = {}
    for index, item in enumerate(translation.items):
        if isinstance(item, Rejection):
            outcome = Outcome(
                status=Status.REJECTED,
                event_id=item.event_id or "",
                code=item.code,
                message=item.message,
                field=item.field,
            )
        else:
            outcome = next(pending)
        ids.append(outcome.event_id)
        if outcome.status is Status.DUPLICATE:
            duplicates.add(index)
        elif outcome.status is Status.REJECTED:
            rejected[index] = outcome
    return Result(ids, duplicates=frozenset(duplicates), rejected=rejected)
