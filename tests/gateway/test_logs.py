"""Log lines: request ids taken or made, JSON and text formats."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway import logs
from gateway.access import RequestInfo, request_id
from gateway.logs import JsonFormatter, TextFormatter


@pytest.mark.parametrize("candidate", ["abc", "x" * 128, "trace-1 span/2=3", "~!@#$%^&*()"])
def test_valid_request_ids_are_kept(candidate: str) -> None:
    assert request_id(candidate) == candidate


@pytest.mark.parametrize("candidate", [None, "", "   ", "x" * 129, "a\nb", "a\x00", "é", "\x7f"])
def test_invalid_request_ids_are_replaced(candidate: str | None) -> None:
    made = request_id(candidate)
    assert made != candidate and len(made) == 32 and int(made, 16) >= 0
    assert request_id(candidate) != made


def record(access: dict[str, object] | None = None) -> logging.LogRecord:
    extra = {"access": access} if access is not None else {}
    fields = {"name": "eventgw.access", "msg": "request", "levelno": 20, "levelname": "INFO"}
    return logging.makeLogRecord({**fields, **extra})


def test_json_lines_carry_the_access_fields() -> None:
    info = RequestInfo(request_id="r", transport="http", method="POST", path="/batch")
    info.dialect, info.endpoint, info.project, info.status = "ours", "batch", "p", 207
    info.events, info.accepted, info.rejected = 3, 2, 1
    line = json.loads(JsonFormatter().format(record(info.fields(0.0015))))
    assert line["ts"].endswith("Z") and line["level"] == "info" and line["msg"] == "request"
    assert {k: line[k] for k in ("request_id", "dialect", "endpoint", "project", "status")} == {
        "request_id": "r",
        "dialect": "ours",
        "endpoint": "batch",
        "project": "p",
        "status": 207,
    }
    assert (line["events"], line["accepted"], line["duplicates"], line["rejected"]) == (3, 2, 0, 1)
    assert line["replayed"] is False and line["latency_ms"] == 1.5
    unread = RequestInfo(request_id="r", transport="http", method="GET", path="/x")
    assert "events" not in unread.fields(0.0) and "project" not in unread.fields(0.0)


def test_text_lines_and_configure() -> None:
    text = TextFormatter().format(record({"request_id": "r", "status": 200}))
    assert text.endswith("INFO eventgw.access request request_id=r status=200")
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        logs.configure("warning", "json", stream)
        logs.configure("info", "json", stream)  # again: replaces its handler, keeps the others
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("eventgw.test").info("hello %s", "there")
        assert json.loads(stream.getvalue())["msg"] == "hello there"
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
