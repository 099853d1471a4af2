"""Settings as people read them: URLs with their secrets masked (``mask_url``), and the effective
settings as a TOML document that ``--config`` reads back (``format_toml``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_SECRET_PARAMS = {"password", "token", "pass", "secret"}


def mask_url(url: str) -> str:
    """``url`` with its password (and a token given as the user of a nats:// URL, or in a
    ``password=`` / ``token=`` query parameter) replaced by ``***``; otherwise unchanged."""
    parts = urlsplit(url)
    masked = url
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            userinfo = f"{user}:***"
        elif not parts.scheme.startswith(("postgres", "sqlite")):
            userinfo = "***"  # nats://TOKEN@host
        masked = masked.replace(parts.netloc, f"{userinfo}@{hostport}", 1)
    if parts.query:
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        query = "&".join(
            f"{k}{eq}{'***' if k.lower() in _SECRET_PARAMS else v}" for k, eq, v in pairs
        )
        masked = masked.replace("?" + parts.query, "?" + query, 1)
    return masked


def format_toml(values: Mapping[str, Any]) -> str:
    """``values`` as a TOML document (unset ones as comments): what ``--config`` reads back."""
    lines = []
    for name, value in values.items():
        if value is None:
            lines.append(f"# {name} =  (not set)")
        elif isinstance(value, bool):
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{name} = {value!r}")
        else:
            lines.append(f"{name} = {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"
