"""Databuddy's answers: the per-item results of ``/batch``, the single-event and ``/track``
bodies, and the vendor's error forms, which differ between the tracker's endpoints and
``/track`` (dialects.md §1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import RawRequest, Rejection, Response
from adapters.databuddy.wire import SCHEMA_ERROR
from adapters.fields import FieldError, generated_id, json_response
from gateway.errors import (
    GatewayError,
    InvalidCredential,
    InvalidRequest,
    MissingCredential,
    MissingScope,
    OriginNotAllowed,
    ProjectMismatch,
    RetryableError,
    UnknownProject,
    error_headers,
    lookup,
)
from gateway.model import Outcome, Status
from gateway.pb.event_pb2 import Event, EventType

INVALID_BODY = "Invalid request body"
_OUTGOING_LINK = EventType.EVENT_TYPE_OUTGOING_LINK
_UUID_LENGTH = 36


class InvalidSchema(InvalidRequest):
    """An array endpoint's body failed the schema: 400 ``Invalid event schema`` with the field
    and the reason under ``errors``."""

    def __init__(self, error: FieldError) -> None:
        super().__init__(SCHEMA_ERROR, field=error.field)
        self.detail = error.message


@dataclass(frozen=True, kw_only=True)
class SchemaRejection(Rejection):
    """A rejected item, with the field-level reason the vendor lists under ``errors``."""

    detail: str = ""


def rejection_result(item: Rejection) -> dict[str, Any]:
    if item.code == "unknown_type":
        return {"status": "error", "message": item.message, "eventType": item.kind}
    result: dict[str, Any] = {
        "status": "error",
        "message": item.message,
        "eventType": item.kind or "track",
    }
    if item.event_id is not None:
        result["eventId"] = item.event_id
    detail = item.detail if isinstance(item, SchemaRejection) else item.message
    result["errors"] = [{"field": item.field or "", "message": detail}]
    return result


def event_result(request: RawRequest, index: int, event: Event, outcome: Outcome) -> dict[str, Any]:
    link = event.type == _OUTGOING_LINK
    kind = "outgoing_link" if link else "track"
    result: dict[str, Any] = {"status": "success", "type": kind}
    # Like the vendor, echo `eventId` only when the client sent one (ours are generated ids,
    # UUIDs: an id of another length cannot be one).
    event_id = event.id
    given = link or len(event_id) != _UUID_LENGTH or event_id != generated_id(request, index)
    if outcome.status is Status.REJECTED:
        message = outcome.message or SCHEMA_ERROR
        result = {"status": "error", "message": message, "eventType": kind}
        if outcome.field:
            result["errors"] = [{"field": outcome.field, "message": message}]
    if given:
        result["eventId"] = event_id
    return result


# The vendor's own forms, which differ between the tracker endpoints and /track.
_BEACON_ERRORS: Mapping[type[GatewayError], tuple[int, str] | None] = {
    MissingCredential: (400, "Missing client ID"),
    InvalidCredential: (400, "Invalid or inactive client ID"),
    UnknownProject: (400, "Invalid or inactive client ID"),
}
_TRACK_ERRORS: Mapping[type[GatewayError], tuple[int, str] | None] = {
    MissingCredential: (401, "API key or website_id required"),
    InvalidCredential: (401, "Invalid API key"),
    UnknownProject: (404, "Website not found"),
    InvalidRequest: (400, INVALID_BODY),
}
_COMMON_ERRORS: Mapping[type[GatewayError], tuple[int, str] | None] = {
    MissingScope: (403, "API key missing track:events scope"),
    ProjectMismatch: (403, "Website scope mismatch"),
    OriginNotAllowed: (403, "Origin not authorized"),
}
# Which table a route's errors take (the routes not named: the tracker's).
ERROR_TABLES: dict[str, Mapping[type[GatewayError], tuple[int, str] | None]] = {
    "track": _TRACK_ERRORS
}


def error_response(route: str | None, error: GatewayError) -> Response:
    """``error`` in the vendor's form for ``route`` (None: no route matched)."""
    table = ERROR_TABLES.get(route or "", _BEACON_ERRORS if route is not None else {})
    # The vendor's own form where it has one; else the error's own status and message.
    form = lookup({**_COMMON_ERRORS, **table, GatewayError: None}, error)
    status, message = form if form is not None else (error.http_status, error.message)
    body: dict[str, Any] = {"status": "error", "message": message}
    if isinstance(error, InvalidSchema):
        body["errors"] = [{"field": error.field or "", "message": error.detail}]
    headers = error_headers(error)
    if isinstance(error, RetryableError) and error.retry_after is None:
        # The vendor says when to retry only when it knows: no default Retry-After here.
        headers.pop("Retry-After", None)
    return json_response(status, body, headers)
