"""Who a Databuddy request speaks for: the tracker's public website id (``client_id`` or
``website_id`` in the query, or the ``databuddy-client-id`` header), or a server's API key
(``Authorization: Bearer`` or ``X-Api-Key``), as each endpoint takes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.base import RawRequest
from gateway.model import ApiKey, Credential, ProjectRef


def _first(values: Sequence[str | None]) -> str | None:
    for value in values:
        if value is not None and value.strip():
            return value.strip()
    return None


def client_id(request: RawRequest) -> Credential | None:
    """The tracker's endpoints: the website id from the query or the tracker's header."""
    q, h = request.query, request.headers
    found = _first([q.get("website_id"), q.get("client_id"), h.get("databuddy-client-id")])
    return ProjectRef(found) if found else None


def api_key(headers: Mapping[str, str]) -> ApiKey | None:
    """A Bearer or X-Api-Key key."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    key = _first([token if scheme.lower() == "bearer" else None, headers.get("x-api-key")])
    return ApiKey(key) if key else None


def track_credential(request: RawRequest, first_event: Any) -> Credential | None:
    """/track: an API key; else ``website_id`` (not ``client_id``); else the first event's
    ``websiteId``."""
    key = api_key(request.headers)
    if key is not None:
        return key
    claimed = first_event.get("websiteId") if isinstance(first_event, dict) else None
    found = _first([request.query.get("website_id"), claimed if isinstance(claimed, str) else None])
    return ProjectRef(found) if found else None
