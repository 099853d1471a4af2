"""The streaming decoder behind ``gateway.http.body.read_body``: gzip (also concatenated members),
zlib-wrapped and raw deflate, truncated and trailing data, and bounded, lazy output."""

from __future__ import annotations

import gzip
import itertools
import zlib

import pytest

from gateway.http.body import _CHUNK, _Inflater

DATA = b'{"events": [' + b'{"name": "x"},' * 5000 + b'{"name": "y"}]}'


def inflate(encoding: str, payload: bytes, step: int = 1000) -> bytes:
    inflater = _Inflater(encoding)
    out = b"".join(
        piece
        for start in range(0, len(payload), step)
        for piece in inflater.feed(payload[start : start + step])
    )
    inflater.finish()
    return out


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("step", [1, 7, 1000, 1 << 20])
def test_decodes_every_form(step: int) -> None:
    assert inflate("gzip", gzip.compress(DATA), step) == DATA
    assert inflate("x-gzip", gzip.compress(DATA), step) == DATA
    assert inflate("gzip", gzip.compress(DATA[:100]) + gzip.compress(DATA[100:]), step) == DATA
    assert inflate("deflate", zlib.compress(DATA), step) == DATA
    assert inflate("deflate", raw_deflate(DATA), step) == DATA


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        ("gzip", gzip.compress(DATA)[:-10]),  # truncated
        ("gzip", b"not gzip at all"),
        ("gzip", b""),
        ("deflate", zlib.compress(DATA) + b"trailing"),
        ("deflate", zlib.compress(DATA)[:20]),
    ],
)
def test_refuses_broken_streams(encoding: str, payload: bytes) -> None:
    with pytest.raises(zlib.error if payload == b"not gzip at all" else ValueError):
        inflate(encoding, payload)


def test_output_is_bounded_and_lazy() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    compressed = bomb.compress(bytes(64 << 20)) + bomb.flush()  # 64 MiB of zeros, ~64 KiB
    pieces = _Inflater("gzip").feed(compressed)
    taken = list(itertools.islice(pieces, 3))  # the caller stops at its cap: nothing more runs
    assert [len(p) for p in taken] == [_CHUNK] * 3
