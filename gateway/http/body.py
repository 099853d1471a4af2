"""Reading a request body within limits, decompressed.

aiohttp inflates ``Content-Encoding: gzip`` / ``deflate`` bodies incrementally in bounded chunks;
the cap below counts the *decompressed* bytes as they stream, so a compression bomb is refused
with 413 after at most ``limit`` bytes, never inflated into memory.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType

ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
_CHUNK = 64 * 1024


async def read_body(request: web.Request, limit: int) -> bytes:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ENCODINGS:
        raise UnsupportedMediaType(f"Unsupported Content-Encoding: {encoding}")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                what = "Decompressed body" if encoding not in ("", "identity") else "Request body"
                raise PayloadTooLarge(f"{what} exceeds {limit} bytes", limit=limit)
            chunks.append(chunk)
    except PayloadTooLarge:
        raise
    except Exception as exc:  # a broken gzip stream, a truncated chunked body
        raise MalformedBody("Request body could not be read or decompressed") from exc
    return b"".join(chunks)


def media_type(request: web.Request) -> str:
    raw = request.headers.get("Content-Type", "")
    return raw.split(";", 1)[0].strip().lower()
