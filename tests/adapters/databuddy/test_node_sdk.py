"""The official Databuddy Node SDK (``@databuddy/sdk/node``, pinned in
``tests/adapters/node/package.json``), unchanged, against the gateway: batched ``track`` calls
queue in the client and ``flush`` sends them in one request, which the gateway must answer in a way
the SDK reads as success.

The SDK posts a JSON array to ``<apiUrl>/track`` with ``Authorization: Bearer <key>`` and checks
``status == "success"``. ``tests/adapters/node/databuddy_track.mjs`` drives it and prints what it
returned and sent; this test installs the package (``npm ci``) when ``node_modules`` lacks it, runs
the script against a live gateway and checks the stored events. Skipped, saying why, without node or
npm.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.pb.event_pb2 import EventType
from gateway.storage.engine import create_engine
from gateway.storage.tenants import TenantStore
from tests.harness import Gateway

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).parents[1] / "node"  # the vendors' Node SDKs, pinned
SCRIPT = NODE_DIR / "databuddy_track.mjs"
T0 = 1709251200000


def pinned_version() -> str:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    return str(manifest["dependencies"]["@databuddy/sdk"])


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the pinned SDK installed into ``node/node_modules``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to run the Databuddy Node SDK")
    installed = NODE_DIR / "node_modules" / "@databuddy" / "sdk" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned_version():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    assert json.loads(installed.read_text())["version"] == pinned_version()
    return node


async def run_script(
    node: str, *args: str, script: Path = SCRIPT
) -> tuple[int, dict[str, Any], str]:
    # The gateway serves in this event loop: run node without blocking it.
    proc = await asyncio.create_subprocess_exec(
        node,
        str(script),
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    lines = out.decode().strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    assert proc.returncode is not None
    return proc.returncode, report, err.decode()


async def test_batched_track_then_flush(gateway: Gateway, node: str) -> None:
    code, report, stderr = await run_script(
        node, gateway.http_url, gateway.api_key, gateway.project_id
    )
    assert code == 0, (report, stderr)

    # track() only queued (batching on); flush() sent them together and read success.
    assert report["tracked"] == [{"success": True}] * 3
    assert report["queuedBeforeFlush"] == 0
    assert report["flushed"]["success"] is True
    assert report["flushed"]["processed"] == 3

    [request] = report["wire"]
    assert request["method"] == "POST"
    assert request["url"] == f"{gateway.http_url}/track"
    assert request["headers"]["Authorization"] == f"Bearer {gateway.api_key}"
    assert request["status"] == 200
    assert request["response"] == {"status": "success", "type": "custom_event", "count": 3}
    sent = request["body"]
    assert [e["name"] for e in sent] == ["signup", "upgrade", "export"]
    assert {e["websiteId"] for e in sent} == {gateway.project_id}

    stored = await gateway.stored()
    assert [e.name for e in stored] == ["signup", "upgrade", "export"]
    for index, event in enumerate(stored):
        assert event.dialect == "databuddy"
        assert event.project_id == gateway.project_id
        assert event.id  # the SDK sends no eventId: generated
        assert event.namespace == "compat"
        assert event.source == "node-sdk"
        assert event.identity.anonymous_id == "anon-node"
        assert event.identity.session_id == "sess-node"
        assert event.occurred_at.ToMilliseconds() == T0 + index * 1000
        assert dict(event.properties) == {"index": index, "plan": "pro"}
    assert stored[2].identity.profile_id == "user-node"
    assert len({e.id for e in stored}) == 3


async def test_a_key_without_the_scope_is_reported_as_a_failure(
    gateway: Gateway, node: str
) -> None:
    engine = create_engine(gateway.settings)
    try:
        _, secret = await TenantStore(engine).create_key(
            gateway.project_id, scopes=("read:analytics",), prefix="dbdy_"
        )
    finally:
        await engine.dispose()
    code, report, _ = await run_script(node, gateway.http_url, secret, gateway.project_id)
    assert code == 1
    assert report["flushed"] == {"success": False, "error": "HTTP 403: Forbidden"}
    [request] = report["wire"]
    assert request["response"] == {
        "status": "error",
        "message": "API key missing track:events scope",
    }
    assert await gateway.stored() == []


async def test_identify_is_a_success_and_stores_one_identify_event(
    gateway: Gateway, node: str
) -> None:
    script = NODE_DIR / "databuddy_identify.mjs"
    code, report, stderr = await run_script(
        node, gateway.http_url, gateway.api_key, gateway.project_id, script=script
    )
    assert code == 0, (report, stderr)
    assert report["identified"] == {"success": True}
    [request] = report["wire"]
    assert request["url"] == f"{gateway.http_url}/identify"
    assert request["body"]["websiteId"] == gateway.project_id
    assert request["response"] == {"status": "success", "type": "identify"}
    [event] = await gateway.stored()
    assert (event.type, event.name) == (EventType.EVENT_TYPE_IDENTIFY, "$identify")
    assert (event.identity.profile_id, event.identity.anonymous_id) == ("user-42", "anon_1")
    assert dict(event.user_properties) == {"plan": "pro"}
