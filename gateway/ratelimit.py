"""Per-key rate limits: ``N/s`` or ``N/min`` specifications."""

from __future__ import annotations

import re

from gateway.config import ConfigError

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute)\s*$")


def parse_rate(spec: str) -> tuple[int, float]:
    """``"100/min"`` → (100, 60.0): requests allowed per window of seconds."""
    match = _RATE.match(spec)
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"rate limit {spec!r} is not N/s or N/min")
    window = 1.0 if match.group(2).startswith("s") else 60.0
    return int(match.group(1)), window
