"""Scale-out on PostgreSQL: ``eventgw serve --workers 2`` (two processes on one pair of ports)
over one database. Idempotency and event dedup hold across the workers because the database
decides; a dead worker is replaced; SIGTERM stops both without losing an acknowledged event.

The figures (race outcomes, events/s, connections per worker) are printed: ``pytest -s``."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import distinct, func, select

from gateway import migrate
from gateway.config import Settings
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import EventStatus, SubmitBatchRequest
from gateway.storage.engine import create_engine
from gateway.storage.schema import events
from gateway.storage.tenants import TenantStore
from tests.backends import create_database, drop_database
from tests.harness import ROOT, free_ports, provision, stored_events

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ACCEPTED = EventStatus.EVENT_STATUS_ACCEPTED
DUPLICATE = EventStatus.EVENT_STATUS_DUPLICATE
VIBEFOLLOW_BATCH = {
    "events": [
        {"external_user_id": "usr_42", "name": "user_signed_up", "properties": {"plan": "trial"}},
        {"external_user_id": "usr_42", "name": "trial_started", "properties": {"days": 14}},
    ]
}


async def until(check: Callable[[], bool], limit_s: float = 60) -> None:
    """Wait until ``check()`` holds (``limit_s`` only bounds a hang; nothing is timed)."""
    async with asyncio.timeout(limit_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


async def count_stored(database_url: str, project_id: str) -> tuple[int, int]:
    """(events, distinct event ids) stored for ``project_id``."""
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.connect() as conn:
            query = select(func.count(), func.count(distinct(events.c.event_id))).where(
                events.c.project_id == project_id
            )
            n, unique = (await conn.execute(query)).one()
            return int(n), int(unique)
    finally:
        await engine.dispose()


@dataclass
class Cluster:
    """A supervisor with its workers, as a child process of the test."""

    proc: subprocess.Popen[bytes]
    log: Path
    http_port: int
    grpc_port: int
    ops_port: int
    database_url: str
    project_id: str
    api_key: str

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def auth(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.api_key}")]

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def workers(self) -> list[psutil.Process]:
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]

    def connections_per_worker(self, port: int) -> dict[int, int]:
        return {
            w.pid: sum(
                1
                for c in w.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            )
            for w in self.workers()
        }

    def wait_for_log(self, text: str, count: int = 1, limit_s: float = 90) -> None:
        deadline = time.monotonic() + limit_s  # bounds a hang; nothing is timed
        while sum(text in line for line in self.log_lines()) < count:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisor exited {self.proc.returncode}: {self.log_lines()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in the log: {self.log_lines()[-20:]}")
            time.sleep(0.05)

    def stop(self, limit_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(limit_s)


def start_cluster(database_url: str, project_id: str, api_key: str, log: Path) -> Cluster:
    http_port, grpc_port, ops_port = free_ports(3)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "serve", "--workers", "2"),
                *("--database-url", database_url),
                *("--http", f"127.0.0.1:{http_port}", "--grpc", f"127.0.0.1:{grpc_port}"),
                *("--ops", f"127.0.0.1:{ops_port}"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    cluster = Cluster(proc, log, http_port, grpc_port, ops_port, database_url, project_id, api_key)
    try:
        cluster.wait_for_log("2 workers serving")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[str, str, str]]:
    """A PostgreSQL database of this module's own: (URL, project id, API key)."""
    url = asyncio.run(create_database())
    try:
        migrate.upgrade(url)
        project_id, key, _ = asyncio.run(provision(url))
        yield url, project_id, key
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture(scope="module")
def cluster(
    database: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    log = tmp_path_factory.mktemp("scaleout") / "serve.log"
    cluster = start_cluster(*database, log)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def new_project(cluster: Cluster) -> AsyncIterator[Cluster]:
    """The cluster, with a project and key of this test's own (the stores are counted per
    project)."""
    engine = create_engine(Settings(database_url=cluster.database_url))
    try:
        tenants = TenantStore(engine)
        project = await tenants.create_project("scaleout")
        _, secret = await tenants.create_key(project.id)
    finally:
        await engine.dispose()
    yield Cluster(
        cluster.proc,
        cluster.log,
        cluster.http_port,
        cluster.grpc_port,
        cluster.ops_port,
        cluster.database_url,
        project.id,
        secret,
    )


async def test_connections_are_spread_over_both_workers(cluster: Cluster) -> None:
    writers = []
    for _ in range(32):
        _, writer = await asyncio.open_connection("127.0.0.1", cluster.http_port)
        writers.append(writer)
    try:
        # until the workers have accepted them all
        await until(lambda: sum(cluster.connections_per_worker(cluster.http_port).values()) == 32)
        spread = cluster.connections_per_worker(cluster.http_port)
    finally:
        for writer in writers:
            writer.close()
    print(f"\n32 connections per worker: {sorted(spread.values())}")
    assert len(spread) == 2 and sum(spread.values()) == 32
    assert all(n > 0 for n in spread.values())  # all on one: 2 in 2**32


async def test_eight_clients_race_one_idempotency_key(new_project: Cluster) -> None:
    c = new_project
    rounds, outcomes = 10, collections.Counter[str]()
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(8)]
    try:
        for session in sessions:  # connect first, so the race is between the requests
            async with session.get(f"{c.http_url}/healthz") as response:
                assert response.status == 200
        spread = c.connections_per_worker(c.http_port)
        headers = {"Authorization": f"Bearer {c.api_key}"}

        async def send(session: aiohttp.ClientSession, key: str) -> tuple[int, bool, bytes]:
            async with session.post(
                f"{c.http_url}/api/v1/events/batch",
                json=VIBEFOLLOW_BATCH,
                headers={**headers, "Idempotency-Key": key},
            ) as response:
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                return response.status, replayed, await response.read()

        for r in range(rounds):
            results = await asyncio.gather(*(send(s, f"race-{r}") for s in sessions))
            executed = [res for res in results if res[0] == 202 and not res[1]]
            replays = [res for res in results if res[0] == 202 and res[1]]
            conflicts = [res for res in results if res[0] == 409]
            assert len(executed) == 1, results
            assert len(executed) + len(replays) + len(conflicts) == 8, results
            assert all(body == executed[0][2] for _, _, body in replays)
            outcomes.update(executed=1, replayed=len(replays), conflict=len(conflicts))
    finally:
        for session in sessions:
            await session.close()
    stored = await stored_events(c.database_url, c.project_id)
    assert len(stored) == 2 * rounds  # each key's two events, stored by its one execution
    assert len({e.id for e in stored}) == 2 * rounds
    print(
        f"\n{rounds} rounds x 8 racing clients on connections spread {sorted(spread.values())}:"
        f" {dict(outcomes)}"
    )


async def test_grpc_batches_across_two_workers_store_every_event_once(
    new_project: Cluster,
) -> None:
    c = new_project
    clients, batches, size = 4, 25, 200

    def request(client: int, batch: int, key: str) -> SubmitBatchRequest:
        return SubmitBatchRequest(
            idempotency_key=key,
            events=[Event(id=f"c{client}-b{batch}-e{i}", name="purchase") for i in range(size)],
        )

    async def client(n: int, suffix: str) -> collections.Counter[int]:
        statuses = collections.Counter[int]()
        async with grpc.aio.insecure_channel(c.grpc_target) as channel:
            stub = gateway_pb2_grpc.EventGatewayStub(channel)
            for b in range(batches):
                response = await stub.SubmitBatch(
                    request(n, b, f"c{n}-b{b}{suffix}"), metadata=c.auth, timeout=60
                )
                assert not response.replayed
                statuses.update(r.status for r in response.results)
        return statuses

    started = time.perf_counter()
    first = await asyncio.gather(*(client(n, "") for n in range(clients)))
    elapsed = time.perf_counter() - started
    total = clients * batches * size
    assert sum(first, collections.Counter[int]()) == {ACCEPTED: total}

    assert await count_stored(c.database_url, c.project_id) == (total, total)

    again = await asyncio.gather(*(client(n, "-again") for n in range(clients)))
    assert sum(again, collections.Counter[int]()) == {DUPLICATE: total}
    assert await count_stored(c.database_url, c.project_id) == (total, total)
    # The operations listener answers for both workers: whichever takes the scrape counts all.
    for _ in range(4):
        assert await accepted_on_ops(c) == total
    print(f"\n{total} events in {clients}x{batches} gRPC batches: {total / elapsed:,.0f} events/s")


async def accepted_on_ops(c: Cluster) -> float:
    """``eventgw_events_total`` accepted for ``c``'s project, scraped from the ops listener."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{c.ops_port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "eventgw_events_total"
        and s.labels.get("project") == c.project_id
        and s.labels.get("outcome") == "accepted"
    )


async def grpc_load(
    target: str,
    auth: list[tuple[str, str]],
    client: int,
    acked: set[str],
    sent: set[str],
    stop: asyncio.Event,
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        b = 0
        while not stop.is_set():
            ids = [f"load{client}-{b}-{i}" for i in range(100)]
            sent.update(ids)
            try:
                response = await stub.SubmitBatch(
                    SubmitBatchRequest(events=[Event(id=i, name="load") for i in ids]),
                    metadata=auth,
                    timeout=30,
                )
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)  # that worker is gone or going: retry elsewhere
                continue
            acked.update(r.event_id for r in response.results)
            b += 1


async def test_dead_worker_is_replaced_and_sigterm_loses_nothing(
    database: tuple[str, str, str], tmp_path: Path
) -> None:
    url, project_id, key = database
    cluster = await asyncio.to_thread(start_cluster, url, project_id, key, tmp_path / "s.log")
    try:
        first = {w.pid for w in cluster.workers()}
        victim = sorted(first)[0]
        psutil.Process(victim).send_signal(signal.SIGKILL)
        await asyncio.to_thread(cluster.wait_for_log, "serving (pid", 3)
        now = {w.pid for w in cluster.workers()}
        assert len(now) == 2 and victim not in now and now & first
        assert any("exited with -9" in line for line in cluster.log_lines())

        acked: set[str] = set()
        sent: set[str] = set()
        stop = asyncio.Event()
        load = [
            asyncio.create_task(grpc_load(cluster.grpc_target, cluster.auth, n, acked, sent, stop))
            for n in range(4)
        ]
        await until(lambda: len(acked) >= 4_000)
        workers = cluster.workers()
        code = await asyncio.to_thread(cluster.stop)  # SIGTERM while requests are in flight
        stop.set()
        await asyncio.gather(*load)
    finally:
        cluster.stop()
    assert code == 0
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive
    stored = [e.id for e in await stored_events(url, project_id) if e.id.startswith("load")]
    assert len(stored) == len(set(stored))
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert set(stored) <= sent
    log = [json.loads(line) for line in cluster.log_lines() if line.startswith("{")]
    assert any("all workers stopped" in entry.get("msg", "") for entry in log)
