"""The README's client examples run as written against a gateway: each Python block of its
"Client for internal services" section, with only the address swapped for the test gateway's,
prints what its last comment says."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

from tests.harness import ROOT, Gateway

MAKE_RUN_TARGET = "127.0.0.1:50051"


def examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Client for internal services", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_a_sync_and_an_async_example() -> None:
    blocks = examples()
    assert len(blocks) == 2
    assert "EventClient(" in blocks[0] and "AsyncEventClient(" in blocks[1]
    assert all(MAKE_RUN_TARGET in block for block in blocks)


async def test_each_example_runs_and_prints_what_it_says(gateway: Gateway) -> None:
    for block in examples():
        code = block.replace(MAKE_RUN_TARGET, gateway.grpc_target)
        expected = re.findall(r"print\(.*\)\s+# (.+)", block)[-1]
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "KEY": gateway.api_key},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected
    assert len(await gateway.stored()) == 2000
