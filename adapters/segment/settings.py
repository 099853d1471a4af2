"""The settings document Segment's browser library (analytics-next) loads before anything else.

``GET /v1/projects/{writeKey}/settings`` names the gateway as the only destination
(``integrations["Segment.io"]``, whose ``apiHost`` is this gateway's host with ``/v1``), turns
off the library's own metrics (``metrics.sampleRate = 0``: they would go to Segment's host) and
lists no remote plugins, middleware or device-mode destinations, so a page needs no other host.
The host is the request's ``Host``; the scheme is ``X-Forwarded-Proto`` when a proxy sets it,
else ``http``.
"""

from __future__ import annotations

from typing import Any

from adapters.base import RawRequest


def settings_document(request: RawRequest, write_key: str) -> dict[str, Any]:
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    protocol = request.headers.get("x-forwarded-proto", "http").split(",")[0].strip()
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{host}/v1",
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
