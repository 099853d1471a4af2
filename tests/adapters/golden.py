"""Loads golden cases: ``tests/adapters/<dialect>/golden/<case>/`` holding

- ``request.json``: ``{"method": "POST", "path": "/batch", "query": {...}, "headers": {...},
  "body": <any JSON> | "raw": "<exact body text>"}``. The strings ``{{api_key}}`` and
  ``{{project_id}}`` anywhere in it are replaced by the test project's key and id, and
  ``{{api_key_basic}}`` by the key as HTTP Basic credentials (``base64("<key>:")``).
- ``response.json``: ``{"status": 200, "body": <JSON>, "headers": {...subset...}}``.
- ``events.txtpb`` (optional): the expected canonical events, as a ``SubmitBatchRequest`` in
  Protobuf text format (``events { ... }`` blocks), translated with ``RECEIVED_AT`` and
  ``REQUEST_ID`` below. Absent: the request must store no event.
- ``outcomes.json`` (optional): the per-event outcomes the pure runner renders with, a list of
  ``"accepted"`` / ``"duplicate"``; default all accepted.
- ``setup.json`` (optional): requests (same shape as request.json) sent before the case over HTTP.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest

ROOT = Path(__file__).parent  # tests/adapters: one folder per dialect
PROJECT_ID = "550e8400-e29b-41d4-a716-446655440000"  # the Databuddy seed's website id
API_KEY = "egw_golden_test_key_0123456789abcdef"
RECEIVED_AT = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
REQUEST_ID = "golden"


@dataclass(frozen=True)
class Case:
    dialect: str
    name: str
    path: Path
    request: dict[str, Any]
    response: dict[str, Any]
    events: list[Event] | None
    outcomes: list[str] | None
    setup: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.dialect}/{self.name}"


def substitute(value: Any, project_id: str = PROJECT_ID, api_key: str = API_KEY) -> Any:
    if isinstance(value, str):
        basic = base64.b64encode(f"{api_key}:".encode()).decode()
        value = value.replace("{{api_key_basic}}", basic)
        return value.replace("{{project_id}}", project_id).replace("{{api_key}}", api_key)
    if isinstance(value, list):
        return [substitute(v, project_id, api_key) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, project_id, api_key) for k, v in value.items()}
    return value


def body_bytes(request: dict[str, Any]) -> bytes:
    if "raw" in request:
        return str(request["raw"]).encode()
    if "body" in request:
        return json.dumps(request["body"]).encode()
    return b""


def load(path: Path) -> Case:
    def read(name: str) -> Any:
        file = path / name
        return json.loads(file.read_text()) if file.exists() else None

    events = None
    if (path / "events.txtpb").exists():
        batch = text_format.Parse((path / "events.txtpb").read_text(), SubmitBatchRequest())
        events = list(batch.events)
    return Case(
        dialect=path.parent.parent.name,
        name=path.name,
        path=path,
        request=read("request.json"),
        response=read("response.json"),
        events=events,
        outcomes=read("outcomes.json"),
        setup=read("setup.json") or [],
    )


def all_cases() -> list[Case]:
    return [load(p.parent) for p in sorted(ROOT.glob("*/golden/*/request.json"))]
