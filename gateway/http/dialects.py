"""The one aiohttp handler behind every dialect route.

For a request it finds the adapter and route (``Registry.match``), reads the body within the
route's limit, lets the adapter translate it, then does what no adapter may: authenticates the
credential, checks scope, project and origin, and submits the translation to the pipeline
(``Ingestor.submit``) with the request's idempotency key. The adapter renders the ``Result`` (or
the error) in its vendor's envelope; every error, expected or not, leaves in that envelope.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from datetime import UTC, datetime

import orjson
from aiohttp import web

from adapters.base import Adapter, RawRequest, Rejection, Response, Translation
from gateway.access import RequestInfo
from gateway.auth import TRACK_SCOPE, Principal
from gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    MissingCredential,
    MissingScope,
    OriginNotAllowed,
    ProjectMismatch,
    RateLimited,
    RouteNotFound,
)
from gateway.http.body import media_type, read_body
from gateway.http.middleware import generic_error, request_info
from gateway.model import Outcome, Status, Submission
from gateway.runtime import RUNTIME, Runtime

log = logging.getLogger(__name__)


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
            path=request.path,
        )
        # X-RateLimit-* of a rate-limited key, on every response once it is authenticated.
        limits: dict[str, str] = {}
        try:
            settings = self.runtime.settings
            limit = route.max_body_bytes or settings.max_body_bytes
            raw = dataclasses.replace(
                raw, body=await read_body(request, limit, settings.http_body_timeout_seconds)
            )
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
        submission = submission_of(raw, translation, principal.project_id, dialect=adapter.name)
        result = await self.runtime.ingestor.submit(submission)
        if result.replayed:  # counted when first processed
            info.replays = 1
        else:
            info.accepted = result.accepted
            info.duplicates = result.duplicate_count
            info.rejected = result.rejected_count
        if result.rendered is not None:  # a key stored before results were stored whole
            stored = result.rendered
            headers = dict(stored.headers)
            content_type = headers.pop("Content-Type", "application/json")
            response = Response(
                status=stored.status, body=stored.body, headers=headers, content_type=content_type
            )
            return response, True
        if result.error is not None:
            # A replay translated the same request again: its own failure renders as the first
            # answer did (the stored error is the fallback).
            error = failure if failure is not None else result.error
            return adapter.render_error(raw, error), result.replayed
        return adapter.render(raw, translation, result), result.replayed

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


def submission_of(
    raw: RawRequest, translation: Translation, project_id: str, *, dialect: str = ""
) -> Submission:
    """What the pipeline is handed for a translated request of ``project_id``'s."""
    failure = translation.failure
    rejected = {
        item.index: Outcome(
            status=Status.REJECTED,
            event_id=item.event_id or "",
            code=item.code,
            message=item.message,
            field=item.field,
        )
        for item in translation.items
        if isinstance(item, Rejection)
    }
    return Submission(
        project_id=project_id,
        endpoint=f"{raw.route.method} {raw.route.path}",
        size=len(translation.items),
        events=translation.events if failure is None else (),
        rejected=rejected,
        failure=failure,
        idempotency_key=raw.idempotency_key,
        fingerprint=_fingerprint(raw) if raw.idempotency_key is not None else "",
        per_item=raw.route.per_item,
        dialect=dialect,
        items=lambda: request_items(raw),
    )


def request_items(raw: RawRequest) -> list[bytes]:
    """Each item of ``raw``'s JSON body, as JSON, by index (read when one was refused): the
    elements of a top-level array, or of the route's ``items_key`` array in an object; else the
    body itself, one item (also when it is not JSON)."""
    try:
        body = orjson.loads(raw.body)
    except orjson.JSONDecodeError:
        return [raw.body]
    if isinstance(body, dict) and isinstance(body.get(raw.route.items_key), list):
        body = body[raw.route.items_key]
    if isinstance(body, list):
        return [orjson.dumps(item) for item in body]
    return [raw.body]


def _fingerprint(raw: RawRequest) -> str:
    """What an idempotency key is bound to: the route and the body."""
    endpoint = f"{raw.route.method} {raw.route.path}"
    return hashlib.sha256(endpoint.encode() + b"\x00" + raw.body).hexdigest()


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
