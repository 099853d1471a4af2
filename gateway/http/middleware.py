"""The HTTP front's middleware: every request gets a ``RequestInfo`` and leaves one access line.

``access_middleware`` takes or makes the request id, echoes it in ``X-Request-Id``, and when the
response leaves records the request's metrics and access line (``gateway.access``). An error no
handler caught leaves as a 500 in ``generic_error``'s envelope, the one for paths no dialect owns.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from adapters.base import Response
from gateway.access import REQUEST_ID_HEADER, RequestInfo, finish, request_id
from gateway.errors import GatewayError
from gateway.runtime import RUNTIME, Runtime

log = logging.getLogger(__name__)


def generic_error(error: GatewayError) -> Response:
    """The envelope for paths no dialect owns."""
    body = {"error": {"code": error.code, "message": error.message}}
    return Response(status=error.http_status, body=orjson.dumps(body))


def _finish(info: RequestInfo, runtime: Runtime | None) -> None:
    if runtime is None:
        finish(info, None)
    else:
        finish(info, runtime.metrics.observe_request, log_line=runtime.settings.access_log)


REQUEST_INFO = web.RequestKey("request_info", RequestInfo)


def request_info(request: web.Request) -> RequestInfo:
    """The request's ``RequestInfo`` (a detached one when no middleware made it)."""
    info = request.get(REQUEST_INFO)
    if info is None:
        info = RequestInfo(
            request_id=request_id(None), transport="http", method=request.method, path=request.path
        )
        request[REQUEST_INFO] = info
    return info


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    info = RequestInfo(
        request_id=request_id(request.headers.get(REQUEST_ID_HEADER)),
        transport="http",
        method=request.method,
        path=request.path,
    )
    request[REQUEST_INFO] = info
    runtime = request.app.get(RUNTIME)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = info.request_id
        info.status = exc.status
        _finish(info, runtime)
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        rendered = generic_error(GatewayError("Internal server error"))
        response = web.Response(
            status=rendered.status, body=rendered.body, content_type=rendered.content_type
        )
    response.headers[REQUEST_ID_HEADER] = info.request_id
    info.status = response.status
    _finish(info, runtime)
    return response
