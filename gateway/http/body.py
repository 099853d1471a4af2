"""Reading a request body within limits, decompressed.

The application is created with ``auto_decompress=False``: aiohttp hands over the body as sent
and it is inflated here, in bounded steps (``zlib``'s ``max_length``), so that the cap counts the
*decompressed* bytes as they stream and a compression bomb is refused with 413 after at most
``limit`` bytes, never inflated into memory. Doing it here rather than in aiohttp's parser also
keeps every encoding error in the dialect's envelope: aiohttp answers an encoding it cannot
decode (``br`` without Brotli) with a plain-text 400 before any handler runs.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator

from aiohttp import web

from gateway.errors import MalformedBody, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

IDENTITY = frozenset({"", "identity"})
ENCODINGS = IDENTITY | {"gzip", "x-gzip", "deflate"}
_CHUNK = 64 * 1024


class _Inflater:
    """A streaming gzip / deflate decoder whose every step yields at most ``_CHUNK`` bytes."""

    def __init__(self, encoding: str) -> None:
        self.gzip = encoding != "deflate"
        self._decoder: zlib._Decompress | None = None
        self._head = b""  # deflate: the first bytes, until there are two to sniff

    def _start(self, data: bytes) -> zlib._Decompress:
        if self.gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is RFC 1950 zlib data, but many clients send a raw RFC 1951 stream.
        zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed pieces of ``data``, produced lazily: the caller stops at its cap."""
        if not self.gzip and self._decoder is None:
            data, self._head = self._head + data, b""
            if len(data) < 2:
                self._head = data
                return
        while data:
            if self._decoder is None or self._decoder.eof:
                # Concatenated gzip members are one gzip body; anything after a deflate stream
                # is not.
                if self._decoder is not None and not self.gzip:
                    raise ValueError("data after the end of the deflate stream")
                self._decoder = self._start(data)
            decoder = self._decoder
            piece = decoder.decompress(data, _CHUNK)
            if piece:
                yield piece
            data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail

    def finish(self) -> None:
        if self._decoder is None or not self._decoder.eof:
            raise ValueError("truncated compressed stream")


async def read_body(request: web.Request, limit: int, deadline_s: float | None = None) -> bytes:
    """The request's body (decompressed), at most ``limit`` bytes, all of it within
    ``deadline_s`` seconds (``RequestTimeout`` past it: nothing of a cut-off body goes further)."""
    try:
        async with asyncio.timeout(deadline_s):
            return await _read_body(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"Request body not received within {deadline_s:g} s") from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ENCODINGS:
        raise UnsupportedMediaType(f"Unsupported Content-Encoding: {encoding}")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes", limit=limit)
    inflater = None if encoding in IDENTITY else _Inflater(encoding)
    what = "Request body" if inflater is None else "Decompressed body"
    chunks: list[bytes] = []
    size = received = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"Request body exceeds {limit} bytes", limit=limit)
            for piece in (chunk,) if inflater is None else inflater.feed(chunk):
                size += len(piece)
                if size > limit:
                    raise PayloadTooLarge(f"{what} exceeds {limit} bytes", limit=limit)
                chunks.append(piece)
        if inflater is not None:
            inflater.finish()
    except PayloadTooLarge:
        raise
    except Exception as exc:  # a broken gzip stream, a truncated chunked body
        raise MalformedBody("Request body could not be read or decompressed") from exc
    return b"".join(chunks)


def media_type(request: web.Request) -> str:
    raw = request.headers.get("Content-Type", "")
    return raw.split(";", 1)[0].strip().lower()
