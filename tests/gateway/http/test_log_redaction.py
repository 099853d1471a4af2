"""Secrets never reach the logs, even from requests too malformed for any dialect to see."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from gateway import logs
from tests.harness import Gateway

SECRET = "egw_do_not_log_this_secret"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    before_handlers, before_level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure("info", "json", stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in before_handlers:
                root.removeHandler(handler)
        root.setLevel(before_level)


async def raw_request(gateway: Gateway, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(gateway.bound.http_host, gateway.bound.http_port)
    writer.write(payload)
    await writer.drain()
    answer = await reader.read(1024)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    "payload",
    [
        # A header line over aiohttp's 8190-byte limit: the parser error quotes the line.
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET.encode()
        + b"A" * 9000
        + b"\r\nContent-Length: 2\r\n\r\n{}",
        # A broken chunked body after a valid credential.
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz-"
        + SECRET.encode()
        + b"\r\n",
    ],
)
async def test_malformed_requests_are_logged_without_their_bytes(
    gateway: Gateway, log_stream: io.StringIO, payload: bytes
) -> None:
    answer = await raw_request(gateway, payload)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    await asyncio.sleep(0.1)
    logged = log_stream.getvalue()
    assert "aiohttp.server" in logged, "the malformed request should still be logged"
    assert "malformed HTTP request" in logged
    assert SECRET not in logged
