"""Running ``eventgw bench``: each scenario against a fresh gateway, one run or a series.

:func:`run_bench` provisions a fresh database, measures the raw limit on it, starts the gateway
under test and drives it from separate load-generator processes, one scenario at a time for
``seconds`` each after ``warmup_s`` of the same load that is not counted, and returns a typed
:class:`~bench.report.Report`. :func:`main` runs one or ``runs`` of them and prints the table or
the JSON.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.queues
import os
import queue
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bench.client import client_worker
from bench.load import Target, load_worker
from bench.raw import outbox_ddl, raw_postgres, raw_sqlite
from bench.report import Figure, Report, figure, targets
from bench.series import Series, summarize
from bench.table import render_series, render_table
from bench.target import GatewayUnderTest, bench_database, provision
from bench.window import Gate, Tally, Window

SCENARIOS = ("grpc-batch", "grpc-stream", "databuddy-batch", "track")  # the default run
OPTIONAL_SCENARIOS = ("grpc-client",)  # the client for internal services: when named
# Requests in flight per load-generator process (streams for grpc-stream, each with
# STREAM_WINDOW batches in flight). A closed loop driven harder than the gateway's throughput
# gains only queueing; SubmitBatch still gains up to 10 in flight, because each group commit then
# carries more events per fsync (~1,700 rather than ~1,250 at 6), with p99 still under 100 ms.
CONCURRENCY = {
    "grpc-batch": 5,
    "grpc-stream": 2,
    "databuddy-batch": 8,
    "track": 24,
    "grpc-client": 5,  # batches in flight per client, as grpc-batch
}
# How long past the window a load process may take to report (in-flight requests finish).
WORKER_GRACE_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    seconds: float = 5.0
    warmup_s: float = 1.0  # load before each measured window, not counted
    database_url: str | None = None
    scenarios: tuple[str, ...] = SCENARIOS
    clients: int = 2  # load-generator processes per scenario
    concurrency: int | None = None  # per process; default: CONCURRENCY
    sqlite_synchronous: str = "FULL"


def run_scenario(
    scenario: str, target: Target, options: BenchOptions, gateway: GatewayUnderTest
) -> Figure:
    """``scenario`` from ``options.clients`` load processes started together: its row, with the
    gateway's peak RSS, CPU time and group commits over the measured window."""
    ctx = multiprocessing.get_context("spawn")
    gate = Gate(ready=ctx.Queue(), go=ctx.Event())
    results: multiprocessing.queues.Queue[Tally] = ctx.Queue()
    concurrency = options.concurrency or CONCURRENCY[scenario]
    window = Window(options.seconds, options.warmup_s)
    workers = [
        ctx.Process(
            target=client_worker if scenario == "grpc-client" else load_worker,
            args=(scenario, target, n, concurrency, window, gate, results),
            daemon=True,
        )
        for n in range(options.clients)
    ]
    for worker in workers:
        worker.start()
    tally = Tally()
    try:
        ready, deadline = 0, time.monotonic() + WORKER_GRACE_SECONDS
        while ready < len(workers) and time.monotonic() < deadline:
            try:
                gate.ready.get(timeout=1.0)
                ready += 1
            except queue.Empty:
                if not all(w.is_alive() for w in workers):
                    break
        gateway.reset_peak()  # the peak includes the warm-up
        gate.go.set()
        time.sleep(options.warmup_s)
        cpu, commits = gateway.cpu_seconds(), gateway.commit_totals()
        time.sleep(options.seconds)
        cpu = gateway.cpu_seconds() - cpu
        commits = gateway.commit_totals() - commits
        reported, deadline = 0, time.monotonic() + options.seconds + WORKER_GRACE_SECONDS
        while reported < len(workers) and time.monotonic() < deadline:
            try:
                tally.merge(results.get(timeout=1.0))
                reported += 1
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    break
        if reported < len(workers):
            missing = len(workers) - reported
            tally.merge(Tally(errors=missing, first_error=f"{missing} load process(es) failed"))
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    peak_rss_mb = round(gateway.peak_rss / 2**20, 1)
    return figure(scenario, tally, peak_rss_mb=peak_rss_mb, cpu_s=cpu).with_commits(commits)


def run_bench(options: BenchOptions) -> Report:
    """One run: a fresh database, its raw limit, then every scenario against a fresh gateway."""
    workdir = Path(tempfile.mkdtemp(prefix="eventgw-bench-"))
    sync = options.sqlite_synchronous.upper()
    try:
        with bench_database(options.database_url, workdir) as url:
            backend = "sqlite" if url.startswith("sqlite") else "postgresql"
            project_id, api_key = provision(url)
            raw_db = str(workdir / "raw.db")
            raw = [
                figure(
                    "raw-sqlite",
                    raw_sqlite(raw_db, outbox_ddl(), project_id, options.seconds, sync),
                )
            ]
            if backend == "postgresql":
                dsn = url.replace("postgresql+asyncpg://", "postgresql://")
                tally = asyncio.run(raw_postgres(dsn, project_id, options.seconds))
                raw.append(figure("raw-postgresql", tally))
            limit = raw[-1].events_per_s
            # What the raw runs wrote is still being written back by the kernel: let it land so
            # that it does not slow the gateway's first commits.
            for leftover in workdir.glob("raw.db*"):
                leftover.unlink()
            os.sync()
            env = {
                **os.environ,
                "EVENTGW_LOG_LEVEL": "warning",
                "EVENTGW_ACCESS_LOG": "false",
                "EVENTGW_SQLITE_SYNCHRONOUS": sync,
            }
            gateway = GatewayUnderTest(url, workdir, env)
            gateway.start()
            target = Target(
                http_url=f"http://127.0.0.1:{gateway.http_port}",
                grpc_target=f"127.0.0.1:{gateway.grpc_port}",
                project_id=project_id,
                api_key=api_key,
            )
            figures: list[Figure] = []
            overall_peak = 0.0
            try:
                for scenario in options.scenarios:
                    os.sync()
                    result = run_scenario(scenario, target, options, gateway)
                    figures.append(result.with_ratio(limit))
                    overall_peak = max(overall_peak, result.peak_rss_mb or 0.0)
            finally:
                gateway.stop()
            return Report(
                database=backend,
                sqlite_synchronous=sync,
                seconds=options.seconds,
                warmup_seconds=options.warmup_s,
                clients=options.clients,
                cpus=os.cpu_count(),
                raw=tuple(raw),
                scenarios=tuple(figures),
                gateway_peak_rss_mb=overall_peak,
                targets=targets(figures, raw[-1], overall_peak),
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(options: BenchOptions, *, as_json: bool, out: TextIO, runs: int = 1) -> int:
    """Run the bench once or ``runs`` times and print the table (or ``as_json``, the report)."""
    unknown = set(options.scenarios) - set(SCENARIOS) - set(OPTIONAL_SCENARIOS)
    if unknown:
        print(f"eventgw: unknown scenario(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if runs < 1:
        print("eventgw: --runs must be at least 1", file=sys.stderr)
        return 2
    result: Report | Series
    if runs == 1:
        result = run_bench(options)
    else:
        reports: list[Report] = []
        for number in range(1, runs + 1):
            reports.append(run_bench(options))
            rates = ", ".join(f"{f.name} {f.events_per_s:,.0f}/s" for f in reports[-1].scenarios)
            print(f"eventgw bench: run {number} of {runs}: {rates}", file=sys.stderr, flush=True)
        result = Series(runs=tuple(reports), summary=summarize(reports))
    if as_json:
        out.write(result.to_json().decode() + "\n")
    elif isinstance(result, Report):
        render_table(result, out)
    else:
        render_series(result, out)
    return 0
