"""The Segment tracking spec as Segment's libraries send it: ``POST /v1/{identify,track,page,
screen,group,alias}`` for one message, ``/v1/batch`` and ``/v1/import`` for many.

Authentication as the libraries send it: HTTP Basic with the write key as the user name (the
password is ignored), else ``writeKey`` in the body. The write key is a gateway API key. A body
over the spec's limit (32 KB a message, 500 KB a batch request) or one that is not a JSON object
is refused whole with 400; each unusable message is rejected alone and the request still answers
200 (``envelope``). A batch's own ``context``, ``integrations`` and ``sentAt`` apply to each of
its messages; its other keys are kept on every event's extras. ``wire`` holds the message
schema, ``context`` and ``translate`` turn a message into a canonical ``Event``. For browsers,
analytics-next's short paths (``/v1/t``, ``/v1/p``, ...) are served too, every route answers
CORS, and ``GET /v1/projects/{writeKey}/settings`` answers its settings (``settings``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.fields import ENVELOPE_EXTRAS, FieldError, batch_envelope, json_response, parse_json
from adapters.registry import parameters
from adapters.segment.envelope import error_response, render_result
from adapters.segment.settings import settings_document
from adapters.segment.translate import (
    DIALECT,
    Shared,
    message_id,
    message_type,
    translate_message,
)
from adapters.segment.wire import (
    BATCH_KEYS,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    TYPES,
    Batch,
    decode,
    utc,
)
from gateway.errors import GatewayError, InvalidRequest, MalformedBody, PayloadTooLarge
from gateway.model import ApiKey, Result
from gateway.pb.event_pb2 import Event

BATCH_ROUTES = ("batch", "import")
# The single-message routes (the type's name, and analytics-next's first letter) and their type.
ROUTE_TYPES = {**{kind: kind for kind in TYPES}, **{kind[0]: kind for kind in TYPES}}
SETTINGS = "settings"
SETTINGS_PATH = "/v1/projects/{writeKey}/settings"


def basic_key(headers: Mapping[str, str]) -> ApiKey | None:
    """The user name of ``Authorization: Basic base64(<writeKey>:)``; None when absent."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user = base64.b64decode(token.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return ApiKey(user) if user else None


def body_key(body: Any) -> ApiKey | None:
    key = body.get("writeKey") if isinstance(body, dict) else None
    return ApiKey(key) if isinstance(key, str) and key else None


class Segment:
    """Segment's HTTP tracking API."""

    name: str = DIALECT
    prefixes: Sequence[str] = ()
    cors_allow_headers: Sequence[str] = ("Authorization", "Content-Type", "X-Retry-Count")

    def __init__(self) -> None:
        # analytics-next posts each message to the type's first letter: /v1/t, /v1/p, ...
        singles = [
            Route(
                path=f"/v1/{path}",
                name=path,
                max_body_bytes=MAX_MESSAGE_BYTES,
                per_item=True,
                cors=True,
            )
            for path in ROUTE_TYPES
        ]
        batches = [
            Route(
                path=f"/v1/{name}",
                name=name,
                max_body_bytes=MAX_BATCH_BYTES,
                per_item=True,
                cors=True,
            )
            for name in BATCH_ROUTES
        ]
        settings = Route(path=SETTINGS_PATH, name=SETTINGS, method="GET", cors=True)
        self.routes: Sequence[Route] = (*singles, *batches, settings)

    def translate(self, request: RawRequest) -> Translation:
        if request.route.name == SETTINGS:
            # The write key in the path is the credential; the answer carries no events.
            write_key = parameters(request.route, request.path).get("writeKey", "")
            return Translation(credential=ApiKey(write_key) if write_key else None)
        credential = basic_key(request.headers)
        try:
            body = parse_json(request)
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        credential = credential or body_key(body)
        if credential is None:
            # Nothing is translated without a write key: the gateway answers 401.
            return Translation()
        if not isinstance(body, dict):
            failure: GatewayError = MalformedBody("Request body must be a JSON object")
            return Translation(credential=credential, failure=failure)
        limit = MAX_BATCH_BYTES if request.route.name in BATCH_ROUTES else MAX_MESSAGE_BYTES
        if len(request.body) > limit:
            # The front refuses it before reading it all; the same answer for a body read whole.
            failure = PayloadTooLarge(f"Request body exceeds {limit} bytes", limit=limit)
            return Translation(credential=credential, failure=failure)
        try:
            if request.route.name in BATCH_ROUTES:
                items = self._batch(request, body)
            else:
                kind = ROUTE_TYPES[request.route.name]
                items = [self._one(request, body, 0, kind, "", Shared())]
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        return Translation(credential=credential, items=items)

    def _batch(self, request: RawRequest, body: dict[str, Any]) -> list[Event | Rejection]:
        try:
            batch = decode(body, Batch)
            kept = batch_envelope(body, BATCH_KEYS)
        except FieldError as exc:
            raise InvalidRequest(f"{exc.field} {exc.message}", field=exc.field) from exc
        if len(batch.batch) > MAX_BATCH_MESSAGES:
            raise InvalidRequest(
                f"batch has {len(batch.batch)} messages (at most {MAX_BATCH_MESSAGES})",
                field="batch",
            )
        shared = Shared(
            context=batch.context or {},
            integrations=batch.integrations or {},
            sent_at=utc(batch.sent_at),
        )
        items = [
            self._one(request, item, i, None, f"batch[{i}].", shared)
            for i, item in enumerate(batch.batch)
        ]
        for item in items:
            if kept and isinstance(item, Event):
                item.extras[ENVELOPE_EXTRAS] = kept
        return items

    def _one(
        self,
        request: RawRequest,
        item: Any,
        index: int,
        kind: str | None,
        prefix: str,
        shared: Shared,
    ) -> Event | Rejection:
        try:
            return translate_message(
                request, item, index, route_type=kind, prefix=prefix, shared=shared
            )
        except FieldError as exc:
            if exc.message.startswith("exceeds"):
                # The spec refuses a request with a message over 32 KB whole, with 400.
                raise PayloadTooLarge(
                    f"{exc.field} {exc.message}", limit=MAX_MESSAGE_BYTES
                ) from exc
            return Rejection(
                index=index,
                message=f"{exc.field} {exc.message}",
                field=exc.field,
                event_id=message_id(item),
                kind=kind or message_type(item),
            )

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        if request.route.name == SETTINGS:
            write_key = parameters(request.route, request.path)["writeKey"]
            return json_response(200, settings_document(request, write_key))
        return render_result(result)

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        return error_response(error)
