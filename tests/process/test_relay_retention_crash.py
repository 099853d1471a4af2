"""The relay killed with SIGKILL while retention deletes delivered events and new events keep
arriving, then restarted: every stored event is in the stream exactly once (by ``Nats-Msg-Id``),
and retention, which ran throughout, deleted no undelivered event (one it had deleted would never
have reached the stream)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from gateway.config import Settings
from gateway.storage.engine import create_engine, now_us
from gateway.storage.retention import purge_delivered
from gateway.storage.schema import events
from tests.harness import ROOT, eventually
from tests.jetstream import Stream, event_rows, seed
from tests.process.test_relay_crash import assert_one_message_per_event, has_messages

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def test_sigkill_while_retention_deletes_and_load_arrives(
    database_url: str, stream: Stream, tmp_path: Path
) -> None:
    first, wave = 4_000, 500
    seeded = first
    await seed(database_url, event_rows(first))
    engine = create_engine(Settings(database_url=database_url))
    removed: list[int] = []
    killed, purged = asyncio.Event(), asyncio.Event()

    async def load() -> None:
        # Waves arrive until the relay is dead, and one more after: that one it cannot have
        # published, so the kill lands mid-stream however fast the relay is.
        nonlocal seeded
        while True:
            last = killed.is_set()
            await seed(database_url, event_rows(wave, start=seeded))
            seeded += wave
            if last:
                return
            await asyncio.sleep(0.05)

    async def retention() -> None:
        while not purged.is_set():  # all delivered is past the cut-off: retention of zero seconds
            removed.append(await purge_delivered(engine, now_us(), chunk=300))
            await asyncio.sleep(0.02)

    command = [sys.executable, "-m", "gateway", "relay", *stream.cli_args(database_url)]
    purging = asyncio.create_task(retention())
    try:
        with (tmp_path / "relay.log").open("wb") as log:
            relay = await asyncio.create_subprocess_exec(
                *command, "--batch-size", "250", cwd=ROOT, stderr=log
            )
            loading = asyncio.create_task(load())
            try:
                await eventually(functools.partial(has_messages, stream, first // 2))
                await eventually(lambda: _true(sum(removed) > 0))
            finally:
                relay.send_signal(signal.SIGKILL)
                await relay.wait()
                killed.set()
                await loading
        n = seeded
        assert await stream.count() < n  # killed mid-stream

        restarted = await asyncio.create_subprocess_exec(
            *command, "--once", cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        stdout, _ = await restarted.communicate()
        assert restarted.returncode == 0
        assert orjson.loads(stdout)["pending"] == 0
        purged.set()  # let the last purge finish, so that ``removed`` counts every deletion
        await purging
        async with engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
            undelivered = (
                await conn.execute(select(func.count()).where(events.c.delivered_at.is_(None)))
            ).scalar_one()
    finally:
        purging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purging
        await engine.dispose()
    assert undelivered == 0
    assert sum(removed) > 0
    assert left + sum(removed) == n  # each stored event either still there or deleted once
    await assert_one_message_per_event(stream, n)


async def _true(value: bool) -> bool:
    return value
