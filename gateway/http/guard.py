"""The HTTP listener's guard against slow and greedy clients, below aiohttp.

aiohttp bounds an idle kept-alive connection (``keepalive_timeout``) but has no header read
timeout and no connection cap. ``GuardedSite`` listens like ``web.TCPSite`` and wraps each
connection's aiohttp protocol in a ``_Guard`` that

- refuses a connection at once (``503``, closed) while ``max_connections`` are open;
- closes one whose first request's headers are not complete ``header_timeout`` seconds after
  it opened, so trickled headers hold no descriptor for long (a later request on a kept-alive
  connection must complete its headers within aiohttp's ``keepalive_timeout`` of the previous
  response: aiohttp closes a connection whose next request is still incomplete then).

The body's own deadline (``http_body_timeout_seconds``) is kept where the body is read
(``gateway.http.body``): a request cut off there is answered 408 and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

_REFUSED_BODY = b'{"error":{"code":"unavailable","message":"Too many connections"}}'
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSED_BODY), _REFUSED_BODY)
)
_END = b"\r\n\r\n"


@dataclass(kw_only=True)
class Limits:
    header_timeout: float
    max_connections: int
    open: int = 0
    refused: int = 0


class _Guard(asyncio.Protocol):
    """One connection: aiohttp's protocol behind the cap and the header deadline."""

    def __init__(self, inner: Any, limits: Limits) -> None:
        self.inner = inner
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.counted = False
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""
        self.awaiting_headers = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if self.limits.open >= self.limits.max_connections:
            self.limits.refused += 1
            transport.write(REFUSED)
            transport.close()
            return
        self.limits.open += 1
        self.counted = True
        self._arm()
        self.inner.connection_made(transport)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.limits.header_timeout, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.awaiting_headers and self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        if self.awaiting_headers:
            seen = self.tail + data
            if _END in seen:
                self.awaiting_headers = False
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self.counted:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.counted:
            return
        self.counted = False
        self.limits.open -= 1
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.counted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.counted:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections pass through a ``_Guard`` (shared ``limits``)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: Limits,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(
            runner, host, port, ssl_context=ssl_context, backlog=backlog, reuse_port=True
        )
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limits = self.limits

        def factory() -> _Guard:
            return _Guard(server(), limits)

        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_port=True,
            ssl_handshake_timeout=limits.header_timeout if self._ssl_context else None,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
