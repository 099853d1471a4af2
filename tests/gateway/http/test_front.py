"""The REST front with no vendor in the way: the fake dialect (``adapters.fake``) served by the
real aiohttp application over a real SQLite file. Whatever the dialect, the front authenticates,
submits one ``Submission``, stores what was accepted, renders the ``Result`` in the dialect's
envelope and replays a keyed request from the stored result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from adapters.fake import FakeAdapter
from adapters.registry import Registry
from gateway.app import create_app
from gateway.config import Settings
from tests.harness import provision, stored_events


@dataclass(frozen=True)
class Front:
    url: str
    key: str
    project_id: str
    database_url: str


@pytest.fixture
async def front(sqlite_url: str) -> AsyncIterator[Front]:
    project_id, key, _ = await provision(sqlite_url)
    app = create_app(
        Settings(database_url=sqlite_url), registry=Registry([FakeAdapter()]), grpc_enabled=False
    )
    async with TestServer(app) as server:
        yield Front(str(server.make_url("/fake/events")), key, project_id, sqlite_url)


async def post(front: Front, body: bytes, **headers: str) -> tuple[int, object, dict[str, str]]:
    auth = {"Authorization": f"Bearer {front.key}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(front.url, data=body, headers={**auth, **headers}) as reply,
    ):
        return reply.status, await reply.json(), dict(reply.headers)


async def test_items_are_answered_one_by_one_and_only_the_good_ones_stored(front: Front) -> None:
    status, body, _ = await post(front, b'[{"name":"a","id":"e1"},{"id":"e2"},{"name":"b"}]')
    assert status == 200
    assert body == {
        "accepted": 2,
        "results": [
            {"index": 0, "status": "accepted"},
            {"index": 1, "status": "rejected", "code": "missing_field"},
            {"index": 2, "status": "accepted"},
        ],
    }
    stored = await stored_events(front.database_url, front.project_id)
    assert [(e.name, e.dialect, e.project_id) for e in stored] == [
        ("a", "fake", front.project_id),
        ("b", "fake", front.project_id),
    ]


async def test_a_repeated_id_is_a_duplicate_and_a_keyed_retry_a_replay(front: Front) -> None:
    await post(front, b'[{"name":"a","id":"e1"}]')
    keyed = {"Idempotency-Key": "k-1"}
    first = await post(front, b'[{"name":"a","id":"e1"},{"name":"b","id":"e2"}]', **keyed)
    again = await post(front, b'[{"name":"a","id":"e1"},{"name":"b","id":"e2"}]', **keyed)
    assert first[1] == {
        "accepted": 1,
        "results": [{"index": 0, "status": "duplicate"}, {"index": 1, "status": "accepted"}],
    }
    assert again[:2] == first[:2]
    assert again[2].get("Idempotent-Replayed") == "true"
    assert len(await stored_events(front.database_url, front.project_id)) == 2


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'[{"name":"a"}]', {"Authorization": "Bearer nope"}, 401, "invalid_credential"),
        (b"{not json", {}, 400, "malformed_body"),
        (b'{"name":"a"}', {}, 400, "invalid_request"),
    ],
)
async def test_errors_are_in_the_dialects_envelope(
    front: Front, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    got, answer, _ = await post(front, body, **headers)
    assert got == status
    assert isinstance(answer, dict) and answer["error"] == code and answer["message"]
    assert await stored_events(front.database_url, front.project_id) == []
