"""Event ids the gateway makes up for events that bring none (pure functions, shared by the
fronts and the adapters).

- With an idempotency key, an item's id is a UUIDv5 of the key and the item's index: a retry of
  the request maps to the same ids, and the outbox stores each event once.
- Without one, it is a UUIDv7: the request's receive time in milliseconds, 42 bits drawn from the
  request's own random id, and the item's index in the low 32 bits. Ids of events received
  together sort together, so their entries in the outbox's unique index are appended at its end
  rather than scattered over it (a random id dirties another index page with every insert: on
  SQLite that is most of a commit's cost), and each costs one integer operation.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def uuid5(namespace: bytes, name: str) -> str:
    """``str(uuid.uuid5(UUID(bytes=namespace), name))``, without building ``UUID`` objects."""
    digest = bytearray(hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7(request_id: str, received_at: datetime, index: int) -> str:
    """The time-ordered id of item ``index`` (below 2**32) of the request ``request_id``
    received at ``received_at`` (timezone-aware)."""
    head, tail = _uuid7_parts(request_id, received_at)
    low = f"{tail | index:016x}"
    return f"{head}{low[:4]}-{low[4:]}"


@lru_cache(maxsize=256)
def _uuid7_parts(request_id: str, received_at: datetime) -> tuple[str, int]:
    """What every id of one request shares: the text up to the variant group, and the variant
    group's high 32 bits (the index fills the low 32)."""
    ms = (received_at - _EPOCH) // _MILLISECOND
    digest = int.from_bytes(hashlib.sha1(request_id.encode(), usedforsecurity=False).digest()[:8])
    rand_a = digest >> 52  # 12 bits
    rand_b = (digest >> 22) & ((1 << 30) - 1)  # 30 bits
    high = f"{ms & ((1 << 48) - 1):012x}{0x7000 | rand_a:04x}"
    head = f"{high[:8]}-{high[8:12]}-{high[12:16]}-"
    return head, ((0b10 << 30) | rand_b) << 32
