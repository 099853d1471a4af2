"""Segment's ``context`` object into the canonical event's typed fields; the rest is kept.

Each key with a typed home (``ip``, ``userAgent``, ``locale``, ``timezone``, ``page``,
``campaign``, ``library``, ``app``, ``screen``, ``device``, ``os``, ``network``) is moved there
when it has the spec's type; anything else, including a known key of another type, stays in the
returned dict, which the translator keeps in ``extras["context"]``: nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.pb.event_pb2 import Event


def _take(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Remove and return ``obj[key]`` when it is a ``kind`` (never a bool for numbers)."""
    value = obj.get(key)
    if value is None or isinstance(value, bool) != (kind is bool):
        return None
    if not isinstance(value, kind):
        return None
    return obj.pop(key)


def _texts(obj: dict[str, Any], target: Any, names: dict[str, str]) -> None:
    for wire, attr in names.items():
        value = _take(obj, wire, str)
        if value is not None:
            setattr(target, attr, value)


def _page(page: dict[str, Any], event: Event) -> None:
    _texts(
        page,
        event.page,
        {
            "path": "path",
            "url": "url",
            "search": "search",
            "title": "title",
            "referrer": "referrer",
        },
    )


def _campaign(campaign: dict[str, Any], event: Event) -> None:
    names = {k: k for k in ("source", "medium", "name", "term", "content")}
    _texts(campaign, event.campaign, names)


def _library(library: dict[str, Any], event: Event) -> None:
    _texts(library, event.library, {"name": "name", "version": "version"})


def _app(app: dict[str, Any], event: Event) -> None:
    names = {k: k for k in ("name", "version", "build", "namespace")}
    _texts(app, event.app, names)


def _screen(screen: dict[str, Any], event: Event) -> None:
    width = _take(screen, "width", int)
    if width is not None:
        event.device.screen_width = width
    height = _take(screen, "height", int)
    if height is not None:
        event.device.screen_height = height
    density = _take(screen, "density", (int, float))
    if density is not None:
        event.device.screen_density = float(density)


def _device(device: dict[str, Any], event: Event) -> None:
    names = {
        "id": "device_id",
        "advertisingId": "advertising_id",
        "manufacturer": "manufacturer",
        "model": "model",
        "name": "device_name",
        "type": "device_type",
    }
    _texts(device, event.device, names)


def _os(os: dict[str, Any], event: Event) -> None:
    _texts(os, event.device, {"name": "os_name", "version": "os_version"})


def _network(network: dict[str, Any], event: Event) -> None:
    for key in ("wifi", "cellular", "bluetooth"):
        value = _take(network, key, bool)
        if value is not None:
            setattr(event.network, key, value)
    carrier = _take(network, "carrier", str)
    if carrier is not None:
        event.network.carrier = carrier


OBJECTS: dict[str, Callable[[dict[str, Any], Event], None]] = {
    "page": _page,
    "campaign": _campaign,
    "library": _library,
    "app": _app,
    "screen": _screen,
    "device": _device,
    "os": _os,
    "network": _network,
}


def apply_context(context: dict[str, Any], event: Event) -> dict[str, Any]:
    """Move what has a typed home from ``context`` onto ``event``; return what is left."""
    rest = dict(context)
    _texts(
        rest,
        event.device,
        {"ip": "ip", "userAgent": "user_agent", "locale": "language", "timezone": "timezone"},
    )
    for key, apply in OBJECTS.items():
        value = rest.get(key)
        if isinstance(value, dict):
            left = dict(value)
            apply(left, event)
            if left:
                rest[key] = left
            else:
                del rest[key]
    return rest
