"""``eventgw bench``: the ingest throughput of a real gateway, next to the raw database limit.

It provisions a temporary SQLite database (or a fresh PostgreSQL database on the server of
``--database-url``, dropped afterwards), starts ``python -m gateway serve`` as a child process on
free ports, and drives it from separate load-generator processes (``gateway.bench_load``), one
scenario at a time for ``--seconds`` each, after ``--warmup`` seconds of the same load that are
not counted (the clients' synchronized start is not the steady state the figures describe):

- ``grpc-batch``: unary ``SubmitBatch`` of 500 events with unique ids, several calls in flight;
- ``grpc-stream``: ``SubmitStream``, 500-event batches pipelined on a few streams;
- ``databuddy-batch``: Databuddy ``POST /batch``, 100 tracker page views per request;
- ``track``: Databuddy ``POST /track``, one custom event per request;
- ``grpc-client`` (only when named in ``--scenarios``): the same events as ``grpc-batch`` through
  the client for internal services (``gateway.bench_client``), its ratio to ``grpc-batch`` and
  its own CPU per event.

For each it reports events/s, requests/s, p50/p99 latency per request (client side) and the
gateway's peak RSS, and, measured in the same run, the raw limit: the same serialized events
inserted straight into SQLite (WAL, the same ``synchronous``) in batches of 500 with one commit
per batch, and on PostgreSQL straight into the database; each scenario's ratio to it. The
numbers depend on the machine and on whatever else runs on it: compare figures of one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from gateway.bench_client import client_worker
from gateway.bench_load import Gate, Tally, Target, Window, load_worker, raw_postgres, raw_sqlite

SCENARIOS = ("grpc-batch", "grpc-stream", "databuddy-batch", "track")  # the default run
OPTIONAL_SCENARIOS = ("grpc-client",)
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
ROOT = Path(__file__).resolve().parents[1]
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


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One row of the report."""

    name: str
    requests: int
    events: int
    errors: int
    refused: int
    seconds: float
    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float | None = None
    ratio_to_raw: float | None = None
    # The gateway's CPU time (all threads) inside the window, and per event: the figure that
    # stays comparable when other work shares the machine.
    gateway_cpu_s: float | None = None
    cpu_us_per_event: float | None = None
    loadgen_cpu_s: float | None = None
    # The load process's CPU per event counted: for grpc-client, the client's cost.
    loadgen_cpu_us_per_event: float | None = None
    # From the gateway's /metrics over the window: group commits, their mean size and time.
    commits: int | None = None
    events_per_commit: float | None = None
    requests_per_commit: float | None = None
    commit_ms: float | None = None
    first_error: str = ""


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figure(
    name: str, tally: Tally, *, peak_rss_mb: float | None = None, cpu_s: float | None = None
) -> Figure:
    elapsed = tally.elapsed_s or 1e-9
    per_event = None
    if cpu_s is not None and tally.events:
        per_event = round(cpu_s / tally.events * 1e6, 2)
    return Figure(
        name=name,
        requests=tally.requests,
        events=tally.events,
        errors=tally.errors,
        refused=tally.refused,
        seconds=round(tally.elapsed_s, 3),
        events_per_s=round(tally.events / elapsed, 1),
        requests_per_s=round(tally.requests / elapsed, 1),
        p50_ms=round(_quantile(tally.latencies_ms, 0.50), 2),
        p99_ms=round(_quantile(tally.latencies_ms, 0.99), 2),
        peak_rss_mb=peak_rss_mb,
        gateway_cpu_s=None if cpu_s is None else round(cpu_s, 3),
        cpu_us_per_event=per_event,
        loadgen_cpu_s=round(tally.cpu_s, 3) if tally.cpu_s else None,
        loadgen_cpu_us_per_event=(
            round(tally.cpu_s / tally.events * 1e6, 2) if tally.cpu_s and tally.events else None
        ),
        first_error=tally.first_error,
    )


# -- the database -------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(database_url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in ``workdir``, or a new PostgreSQL database on
    the server of ``database_url`` (dropped afterwards)."""
    if database_url is None or database_url.startswith("sqlite"):
        yield database_url or f"sqlite:///{workdir / 'gateway.db'}"
        return
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = f"eventgw_bench_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def provision(database_url: str) -> tuple[str, str]:
    """Migrate and create a project with one key: (project id, key)."""
    from gateway import migrate

    migrate.upgrade(database_url)

    async def create() -> tuple[str, str]:
        from gateway.config import Settings
        from gateway.storage.engine import create_engine
        from gateway.storage.tenants import TenantStore

        engine = create_engine(Settings(database_url=database_url))
        try:
            tenants = TenantStore(engine)
            project = await tenants.create_project("bench")
            _record, secret = await tenants.create_key(project.id)
            return project.id, secret
        finally:
            await engine.dispose()

    return asyncio.run(create())


def outbox_ddl() -> list[str]:
    """``CREATE`` statements of a table identical to the outbox, for the raw SQLite limit."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    from gateway.storage.schema import events

    dialect = sqlite.dialect()
    ddl = [str(CreateTable(events).compile(dialect=dialect))]
    ddl += [str(CreateIndex(index).compile(dialect=dialect)) for index in events.indexes]
    return ddl


# -- the gateway process ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayUnderTest:
    """``python -m gateway serve`` on free ports, with its peak RSS sampled every 20 ms."""

    def __init__(self, database_url: str, workdir: Path, env: dict[str, str]) -> None:
        self.database_url = database_url
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.log_path = workdir / "gateway.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway", "serve"),
                    *("--database-url", self.database_url),
                    *("--http", f"127.0.0.1:{self.http_port}"),
                    *("--grpc", f"127.0.0.1:{self.grpc_port}"),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log_path.read_text()[-2000:]}")
            try:
                for port in (self.http_port, self.grpc_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the gateway did not start listening") from None
                time.sleep(0.05)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        import psutil  # type: ignore[import-untyped]

        assert self.proc is not None
        try:
            process = psutil.Process(self.proc.pid)
            while not self._stop.wait(0.02):
                rss = process.memory_info().rss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)
        except psutil.Error:
            return

    def cpu_seconds(self) -> float:
        """User and system CPU time of the gateway process so far."""
        import psutil

        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def commit_totals(self) -> dict[str, float]:
        """The gateway's group-commit counters (``/metrics``); empty when it has none."""
        import urllib.request

        names = {
            f"eventgw_commit_{name}_{part}"
            for name in ("duration_seconds", "group_events", "group_requests")
            for part in ("sum", "count")
        }
        try:
            url = f"http://127.0.0.1:{self.http_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        totals: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.split("{")[0] in names:
                key = name.split("{")[0]
                totals[key] = totals.get(key, 0.0) + float(value)
        return totals

    def reset_peak(self) -> None:
        self.peak_rss = 0
        time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- running ------------------------------------------------------------------------------------


def run_scenario(
    scenario: str, target: Target, options: BenchOptions, gateway: GatewayUnderTest
) -> Figure:
    ctx = multiprocessing.get_context("spawn")
    gate = Gate(ready=ctx.Queue(), go=ctx.Event())
    results: Any = ctx.Queue()
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
        commits = {k: v - commits.get(k, 0.0) for k, v in gateway.commit_totals().items()}
        reported, deadline = 0, time.monotonic() + options.seconds + WORKER_GRACE_SECONDS
        while reported < len(workers) and time.monotonic() < deadline:
            try:
                tally.merge(Tally(**results.get(timeout=1.0)))
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
    result = figure(scenario, tally, peak_rss_mb=round(gateway.peak_rss / 2**20, 1), cpu_s=cpu)
    count = commits.get("eventgw_commit_duration_seconds_count", 0.0)
    if not count:
        return result
    return Figure(
        **{
            **asdict(result),
            "commits": int(count),
            "events_per_commit": round(commits["eventgw_commit_group_events_sum"] / count, 1),
            "requests_per_commit": round(commits["eventgw_commit_group_requests_sum"] / count, 1),
            "commit_ms": round(commits["eventgw_commit_duration_seconds_sum"] / count * 1000, 2),
        }
    )


def run_bench(options: BenchOptions) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="eventgw-bench-"))
    sync = options.sqlite_synchronous.upper()
    try:
        with bench_database(options.database_url, workdir) as url:
            backend = "sqlite" if url.startswith("sqlite") else "postgresql"
            project_id, api_key = provision(url)
            raw = [
                figure(
                    "raw-sqlite",
                    raw_sqlite(
                        str(workdir / "raw.db"), outbox_ddl(), project_id, options.seconds, sync
                    ),
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
                    ratio = round(result.events_per_s / limit, 3) if limit else None
                    figures.append(_with_ratio(result, ratio))
                    overall_peak = max(overall_peak, result.peak_rss_mb or 0.0)
            finally:
                gateway.stop()
            return {
                "database": backend,
                "sqlite_synchronous": sync,
                "seconds": options.seconds,
                "warmup_seconds": options.warmup_s,
                "clients": options.clients,
                "cpus": os.cpu_count(),
                "raw": [asdict(f) for f in raw],
                "scenarios": [asdict(f) for f in figures],
                "gateway_peak_rss_mb": overall_peak,
                "targets": targets(figures, raw[-1], overall_peak),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _with_ratio(result: Figure, ratio: float | None) -> Figure:
    return Figure(**{**asdict(result), "ratio_to_raw": ratio})


def targets(figures: Sequence[Figure], raw: Figure, peak_rss_mb: float) -> list[dict[str, Any]]:
    """The issue's targets, checked against this run's figures."""
    by_name = {f.name: f for f in figures}
    checks: list[tuple[str, str, float, float, bool]] = []
    for name in ("grpc-batch", "grpc-stream"):
        if (f := by_name.get(name)) is not None:
            checks.append((name, "events/s >= 100000", f.events_per_s, 100_000, True))
            if raw.events_per_s:
                ratio = f.events_per_s / raw.events_per_s
                checks.append((name, f"x {raw.name} >= 0.30", round(ratio, 3), 0.30, True))
            checks.append((name, "p99 ms <= 100", f.p99_ms, 100, False))
    client, batch = by_name.get("grpc-client"), by_name.get("grpc-batch")
    if client is not None and batch is not None and batch.events_per_s:
        ratio = round(client.events_per_s / batch.events_per_s, 3)
        checks.append(("grpc-client", "x grpc-batch >= 0.80", ratio, 0.80, True))
    if (f := by_name.get("databuddy-batch")) is not None:
        checks.append(("databuddy-batch", "events/s >= 30000", f.events_per_s, 30_000, True))
    if (f := by_name.get("track")) is not None:
        checks.append(("track", "requests/s >= 2000", f.requests_per_s, 2_000, True))
        checks.append(("track", "p99 ms <= 50", f.p99_ms, 50, False))
    checks.append(("gateway", "peak RSS MB <= 300", peak_rss_mb, 300, False))
    return [
        {
            "scenario": scenario,
            "target": text,
            "value": value,
            "met": value >= bound if at_least else value <= bound,
        }
        for scenario, text, value, bound, at_least in checks
    ]


def _heading(report: dict[str, Any]) -> str:
    """What both tables open with: the bench, its database and durability."""
    return (
        f"eventgw bench: {report['database']} (sqlite synchronous={report['sqlite_synchronous']})"
    )


def _target_label(check: dict[str, Any]) -> str:
    """A target's row label in both tables, as wide as the longest target."""
    return f"  {check['scenario']:<16}{check['target']:<26}"


def render_table(report: dict[str, Any], out: TextIO) -> None:
    print(
        f"{_heading(report)}, {report['seconds']:g} s per scenario"
        f" after {report['warmup_seconds']:g} s of warm-up,"
        f" {report['clients']} load processes,"
        f" {report['cpus']} CPUs",
        file=out,
    )
    header = (
        f"{'scenario':<16}{'events/s':>11}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'refused':>9}{'peak RSS MB':>13}{'x raw':>8}{'CPU us/ev':>11}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in report["raw"] + report["scenarios"]:
        rss = "" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}"
        ratio = "" if row["ratio_to_raw"] is None else f"{row['ratio_to_raw']:.2f}"
        cpu = "" if row["cpu_us_per_event"] is None else f"{row['cpu_us_per_event']:.1f}"
        print(
            f"{row['name']:<16}{row['events_per_s']:>11,.0f}{row['requests_per_s']:>12,.0f}"
            f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['errors']:>8}{row['refused']:>9}"
            f"{rss:>13}{ratio:>8}{cpu:>11}",
            file=out,
        )
        if row["first_error"]:
            print(f"  first error: {row['first_error']}", file=out)
    for row in report["scenarios"]:
        if row["name"] == "grpc-client" and row["loadgen_cpu_us_per_event"] is not None:
            print(f"client CPU per event: {row['loadgen_cpu_us_per_event']:.1f} us", file=out)
    print(f"gateway peak RSS: {report['gateway_peak_rss_mb']:.0f} MB", file=out)
    for check in report["targets"]:
        mark = "met" if check["met"] else "NOT MET"
        print(f"{_target_label(check)}{check['value']:>12}  {mark}", file=out)


# The figures a series of runs summarizes, each as its median and range.
SERIES_KEYS = (
    "events_per_s",
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "ratio_to_raw",
    "peak_rss_mb",
    "cpu_us_per_event",
    "loadgen_cpu_us_per_event",
)


def _spread(values: Sequence[float | None]) -> dict[str, float] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"min": min(present), "median": statistics.median(present), "max": max(present)}


def summarize(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A series of independent runs (``run_bench`` reports) as each figure's median and range,
    and how many runs met each target: on a shared machine one run says little."""
    rows: dict[str, list[dict[str, Any]]] = {}
    checks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for report in reports:
        for row in report["raw"] + report["scenarios"]:
            rows.setdefault(row["name"], []).append(row)
        for check in report["targets"]:
            checks.setdefault((check["scenario"], check["target"]), []).append(check)
    return {
        "runs": len(reports),
        "figures": [
            {"name": name, **{key: _spread([r[key] for r in runs]) for key in SERIES_KEYS}}
            for name, runs in rows.items()
        ],
        "gateway_peak_rss_mb": _spread([r["gateway_peak_rss_mb"] for r in reports]),
        "targets": [
            {
                "scenario": scenario,
                "target": target,
                "value": _spread([c["value"] for c in found]),
                "met_runs": sum(c["met"] for c in found),
                "runs": len(found),
            }
            for (scenario, target), found in checks.items()
        ],
    }


def render_series(series: dict[str, Any], out: TextIO) -> None:
    summary, first = series["summary"], series["runs"][0]
    print(
        f"{_heading(first)}, {summary['runs']} runs of {first['seconds']:g} s per scenario:"
        " median (min-max)",
        file=out,
    )

    def cell(spread: dict[str, float] | None, fmt: str) -> str:
        if spread is None:
            return ""
        low, mid, high = (format(spread[k], fmt) for k in ("min", "median", "max"))
        return f"{mid} ({low}-{high})"

    header = f"{'scenario':<16}{'events/s':>26}{'p99 ms':>20}{'x raw':>20}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in summary["figures"]:
        print(
            f"{row['name']:<16}{cell(row['events_per_s'], ',.0f'):>26}"
            f"{cell(row['p99_ms'], '.1f'):>20}{cell(row['ratio_to_raw'], '.2f'):>20}",
            file=out,
        )
    for row in summary["figures"]:
        if row["name"] == "grpc-client" and row["loadgen_cpu_us_per_event"] is not None:
            client_cpu = cell(row["loadgen_cpu_us_per_event"], ".1f")
            print(f"client CPU per event, us: {client_cpu}", file=out)
    print(f"gateway peak RSS MB: {cell(summary['gateway_peak_rss_mb'], '.0f')}", file=out)
    for check in summary["targets"]:
        print(
            f"{_target_label(check)}met in {check['met_runs']} of {check['runs']} runs"
            f"  (median {_number(check['value']['median'])})",
            file=out,
        )


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main(options: BenchOptions, *, as_json: bool, out: TextIO, runs: int = 1) -> int:
    unknown = set(options.scenarios) - set(SCENARIOS) - set(OPTIONAL_SCENARIOS)
    if unknown:
        print(f"eventgw: unknown scenario(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if runs < 1:
        print("eventgw: --runs must be at least 1", file=sys.stderr)
        return 2
    result: dict[str, Any]
    render: Callable[[dict[str, Any], TextIO], None]
    if runs == 1:
        result, render = run_bench(options), render_table
    else:
        reports = []
        for number in range(1, runs + 1):
            reports.append(run_bench(options))
            rates = ", ".join(
                f"{row['name']} {row['events_per_s']:,.0f}/s" for row in reports[-1]["scenarios"]
            )
            print(f"eventgw bench: run {number} of {runs}: {rates}", file=sys.stderr, flush=True)
        result, render = {"runs": reports, "summary": summarize(reports)}, render_series
    if as_json:
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render(result, out)
    return 0
