"""A threaded client left open when its program ends is flushed at interpreter exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.harness import ROOT, Gateway

PROGRAM = """
import sys
from gateway.client import EventClient

client = EventClient(sys.argv[1], sys.argv[2], max_age=60)  # nothing leaves by age
for i in range(250):
    client.track("left_open", event_id=f"exit-{i}")
print(client.counters.accepted)
"""


async def test_events_left_in_an_open_client_are_sent_at_exit(gateway: Gateway) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", PROGRAM, gateway.grpc_target, gateway.api_key],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # nothing was sent before the program ended
    assert sorted(e.id for e in await gateway.stored()) == sorted(f"exit-{i}" for i in range(250))
