"""The one aiohttp handler behind every dialect route.

For a request it finds the adapter and route (``Registry.match``), reads the body within the
route's limit, lets the adapter translate it, then does what no adapter may: authenticates the
credential, checks scope, project and origin, and hands the events to the ``Ingestor`` with the
request's idempotency key. Every error, expected or not, leaves in the dialect's own envelope.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from aiohttp import web

from adapters.base import Adapter, Outcome, RawRequest, Response, Translation
from gateway.auth import Principal
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    MissingCredential,
    MissingScope,
    OriginNotAllowed,
    PayloadTooLarge,
    ProjectMismatch,
    RateLimited,
    RouteNotFound,
)
from gateway.http.body import media_type, read_body
from gateway.ingest import IdempotencyRequest
from gateway.logs import RequestInfo, request_info
from gateway.pb.event_pb2 import Event
from gateway.runtime import RUNTIME, Runtime
from gateway.storage.events import Row
from gateway.storage.idempotency import StoredResponse
from gateway.storage.tenants import TRACK_SCOPE

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255


def generic_error(error: GatewayError) -> Response:
    """The envelope for paths no dialect owns."""
    body = {"error": {"code": error.code, "message": error.message}}
    return Response(status=error.http_status, body=orjson.dumps(body))


async def dispatch(request: web.Request) -> web.StreamResponse:
    """The catch-all route: every dialect path, and the JSON 404/405 for everything else."""
    return await DialectHandler(request.app[RUNTIME])(request)


class DialectHandler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = runtime.registry

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        match = self.registry.match(request.method, request.path)
        adapter = match.adapter
        origin = request.headers.get("Origin")
        info = request_info(request)
        info.dialect = adapter.name if adapter is not None else ""
        if match.route is None:
            if request.method == "OPTIONS" and adapter is not None:
                cors = [r for r in adapter.routes if r.path == request.path and r.cors]
                if cors:
                    return self._preflight(adapter, origin)
            error: GatewayError = (
                MethodNotAllowed(
                    f"Method {request.method} not allowed", allowed=match.allowed_methods
                )
                if match.allowed_methods
                else RouteNotFound(f"No route for {request.method} {request.path}")
            )
            rendered = adapter.render_error(None, error) if adapter else generic_error(error)
            headers = {"Allow": ", ".join(match.allowed_methods)} if match.allowed_methods else {}
            return self._send(rendered, extra=headers)
        assert adapter is not None
        route = match.route
        info.endpoint = route.name
        raw = RawRequest(
            route=route,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query),
            body=b"",
            media_type=media_type(request),
            received_at=datetime.now(UTC),
            request_id=uuid.uuid4().hex,
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        # X-RateLimit-* of a rate-limited key, on every response once it is authenticated.
        limits: dict[str, str] = {}
        try:
            limit = route.max_body_bytes or self.runtime.settings.max_body_bytes
            raw = dataclasses.replace(raw, body=await read_body(request, limit))
            translation = adapter.translate(raw)
            info.events = len(translation.items)
            self.runtime.metrics.observe_batch(adapter.name, route.name, info.events)
            rendered, replayed = await self._process(
                adapter, raw, translation, origin, limits, info=info
            )
        except GatewayError as exc:
            rendered, replayed = adapter.render_error(raw, exc), False
            info.error, info.rate_limited = exc.code, isinstance(exc, RateLimited)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            rendered = adapter.render_error(raw, GatewayError("Internal server error"))
            replayed, info.error = False, "internal"
        extra = {**limits, "Idempotent-Replayed": "true"} if replayed else limits
        if route.cors and origin:
            extra |= _cors_headers(origin)
        return self._send(rendered, extra=extra)

    async def _process(
        self,
        adapter: Adapter,
        raw: RawRequest,
        translation: Translation,
        origin: str | None,
        limits: dict[str, str],
        *,
        info: RequestInfo,
    ) -> tuple[Response, bool]:
        if translation.credential is None:
            raise translation.failure or MissingCredential("Missing credentials")
        principal = await self.runtime.auth.authenticate(translation.credential)
        info.project = principal.project_id
        self._rate_limit(principal, limits)
        if TRACK_SCOPE not in principal.scopes:
            raise MissingScope(f"API key missing {TRACK_SCOPE} scope", scope=TRACK_SCOPE)
        if translation.claimed_projects - {principal.project_id}:
            raise ProjectMismatch("Website scope mismatch")
        if origin and principal.allowed_origins and origin not in principal.allowed_origins:
            raise OriginNotAllowed("Origin not authorized")
        failure = translation.failure
        # Each event is serialized once, here, into its outbox row; its size is checked on those
        # bytes, as on gRPC.
        rows: list[Row] = []
        if failure is None:
            rows = self.runtime.ingestor.rows(principal.project_id, translation.events)
            self._check_event_sizes(translation, rows)
        idempotency = self._idempotency(raw)
        # All items are rejected with an all-or-nothing failure, else the adapter's rejections.
        info.rejected = len(translation.items) - (0 if failure else len(translation.events))
        if failure is not None and idempotency is None:
            raise failure

        def render(outcomes: Sequence[Outcome]) -> StoredResponse:
            response = (
                adapter.render_error(raw, failure)
                if failure is not None
                else adapter.render(raw, translation, outcomes)
            )
            headers = {**response.headers, "Content-Type": response.content_type}
            return StoredResponse(status=response.status, body=response.body, headers=headers)

        ingested = await self.runtime.ingestor.ingest_rows(
            principal.project_id, rows, idempotency=idempotency, render=render
        )
        if ingested.replayed:  # counted when first processed
            info.replays, info.rejected = 1, 0
        elif ingested.outcomes is not None:
            info.accepted = ingested.outcomes.accepted  # counted, not built per event
            info.duplicates = len(ingested.outcomes) - info.accepted
        if ingested.response is not None:
            stored = ingested.response
            headers = dict(stored.headers)
            content_type = headers.pop("Content-Type", "application/json")
            return (
                Response(
                    status=stored.status,
                    body=stored.body,
                    headers=headers,
                    content_type=content_type,
                ),
                ingested.replayed,
            )
        assert ingested.outcomes is not None
        return adapter.render(raw, translation, ingested.outcomes), False

    def _rate_limit(self, principal: Principal, limits: dict[str, str]) -> None:
        """Take a token from the key's bucket (``RateLimited`` when empty) and note the key's
        ``X-RateLimit-*`` headers, which every dialect's responses carry for a limited key."""
        limiter = self.runtime.limiter
        try:
            limiter.acquire(principal.key_id, principal.rate_limit)
        finally:
            quota = limiter.quota(principal.key_id, principal.rate_limit)
            if quota is not None:
                limits.update(quota.headers())

    def _check_event_sizes(self, translation: Translation, rows: Sequence[Row]) -> None:
        """Every event within ``max_event_bytes`` as stored (its serialized row), as on gRPC:
        fields without a typed home (extras) are otherwise bounded only by the body. A request
        holding a bigger event is refused whole (413), which keeps all-or-nothing dialects
        all-or-nothing."""
        limit = self.runtime.settings.max_event_bytes
        for position, row in enumerate(rows):
            if (size := len(row[5])) > limit:
                index = [i for i, item in enumerate(translation.items) if isinstance(item, Event)][
                    position
                ]
                raise PayloadTooLarge(
                    f"Event {index} is {size} bytes encoded; the limit is {limit} bytes per event",
                    limit=limit,
                )

    @staticmethod
    def _idempotency(raw: RawRequest) -> IdempotencyRequest | None:
        key = raw.idempotency_key
        if key is None:
            return None
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(
                f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters"
            )
        endpoint = f"{raw.route.method} {raw.route.path}"
        digest = hashlib.sha256(endpoint.encode() + b"\x00" + raw.body).hexdigest()
        return IdempotencyRequest(key=key, endpoint=endpoint, fingerprint=digest)

    @staticmethod
    def _preflight(adapter: Adapter, origin: str | None) -> web.Response:
        headers = {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ", ".join(adapter.cors_allow_headers),
            "Access-Control-Max-Age": "86400",
        }
        if origin:
            headers |= _cors_headers(origin)
        return web.Response(status=204, headers=headers)

    @staticmethod
    def _send(rendered: Response, *, extra: dict[str, str]) -> web.Response:
        return web.Response(
            status=rendered.status,
            body=rendered.body,
            headers={**rendered.headers, **extra},
            content_type=rendered.content_type,
        )


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
