"""``GET /px.jpg``: the tracker's pixel mode, where an event travels in an image's query string.

The tracker flattens the event into the query (``key=value``, nested values as ``key[sub]`` or as
JSON text, ``properties`` always as JSON text) and adds ``type``, ``client_id``, ``sdk_name`` and
``sdk_version``. ``event_of`` rebuilds the event's object as the vendor's ``parsePixelQuery``
does: integers, decimals and booleans are parsed back from their text, brackets nest. The answer
is always a 1x1 GIF that no cache keeps — for a broken request too, which stores nothing: an
image tag has no use for an error body.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import orjson

from adapters.base import Response

# The smallest transparent GIF, the vendor's own pixel.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
}
_SDK_KEYS = frozenset({"sdk_name", "sdk_version", "client_id"})
_NESTED = re.compile(r"^([^\[]+)((?:\[[^\]]+\])+)$")
_BRACKETS = re.compile(r"\[([^\]]+)\]")
_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?\d*\.\d+$")


def image() -> Response:
    """The pixel's one answer."""
    return Response(status=200, body=GIF, headers=dict(NO_CACHE), content_type="image/gif")


def event_of(query: Mapping[str, str]) -> dict[str, Any]:
    """The event object a pixel's query carries (``type`` included; the SDK's keys dropped)."""
    event: dict[str, Any] = {}
    for key, text in query.items():
        if key in _SDK_KEYS:
            continue
        if key == "properties":
            try:
                event["properties"] = orjson.loads(text)
            except orjson.JSONDecodeError:
                event["properties"] = {}
            continue
        nested = _NESTED.match(key)
        if nested is None:
            event[key] = _value(text)
            continue
        node = event.setdefault(nested.group(1), {})
        if not isinstance(node, dict):
            node = event[nested.group(1)] = {}
        *path, last = _BRACKETS.findall(nested.group(2))
        for part in path:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else node.setdefault(part, {})
        node[last] = _value(text)
    return event


def _value(text: str) -> str | int | float | bool:
    if _INTEGER.match(text):
        return int(text)
    if _DECIMAL.match(text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text
