"""Running ``eventgw bench``: each scenario against a fresh gateway, one run or a series.

:func:`run_bench` provisions a fresh database, measures the raw limit on it, starts the gateway
under test and drives it from separate load-generator processes, one scenario at a time for
``seconds`` each after ``warmup_s`` of the same load that is not counted, and returns a typed
:class:`~bench.report.Report`; a pipeline scenario (:mod:`bench.pipeline`) gets a fresh database
and gateway of its own, with the outbox relay. :func:`main` runs one or ``runs`` of them (on a
``nats-server`` of its own when the pipeline needs one and no ``--nats-url`` is given) and prints
the table or the JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from bench.broker import nats_server
from bench.load import Target
from bench.options import OPTIONAL_SCENARIOS, PIPELINE_SCENARIOS, SCENARIOS, BenchOptions
from bench.pipeline import run_pipeline
from bench.raw import outbox_ddl, raw_postgres, raw_sqlite
from bench.report import Figure, Report, figure, targets
from bench.scenario import run_scenario
from bench.series import Series, summarize
from bench.table import render_series, render_table
from bench.target import GatewayUnderTest, bench_database, provision

__all__ = ["SCENARIOS", "BenchOptions", "main", "run_bench"]


def _shared_gateway(
    scenarios: list[str],
    options: BenchOptions,
    url: str,
    project_id: str,
    api_key: str,
    workdir: Path,
    env: dict[str, str],
) -> list[Figure]:
    """The scenarios that share the run's gateway (all but the pipeline ones), one after another
    against it."""
    if not scenarios:
        return []
    gateway = GatewayUnderTest(url, workdir, env)
    gateway.start()
    target = Target(
        http_url=f"http://127.0.0.1:{gateway.http_port}",
        grpc_target=f"127.0.0.1:{gateway.grpc_port}",
        project_id=project_id,
        api_key=api_key,
    )
    figures: list[Figure] = []
    try:
        for scenario in scenarios:
            os.sync()
            figures.append(run_scenario(scenario, target, options, gateway)[0])
    finally:
        gateway.stop()
    return figures


def run_bench(options: BenchOptions) -> Report:
    """One run: a fresh database, its raw limit, then every scenario against a fresh gateway
    (each pipeline scenario on a fresh database and gateway of its own, relaying to the NATS
    server of ``options.nats_url``)."""
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
            shared = [s for s in options.scenarios if s not in PIPELINE_SCENARIOS]
            rows = dict(
                zip(
                    shared,
                    _shared_gateway(shared, options, url, project_id, api_key, workdir, env),
                    strict=True,
                )
            )
            for scenario in options.scenarios:
                if scenario in PIPELINE_SCENARIOS:
                    assert options.nats_url is not None, "the pipeline scenarios need NATS"
                    os.sync()
                    rows[scenario] = run_pipeline(scenario, options, options.nats_url, workdir, env)
            figures = [rows[s].with_ratio(limit) for s in options.scenarios]
            # The gateway's peak is that of one `serve` process: not of serve --relay's group
            # (supervisor, worker and relay), whose row has a peak of its own.
            overall_peak = max(
                (f.peak_rss_mb or 0.0 for f in figures if f.name != "pipeline"), default=0.0
            )
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


def _refused(options: BenchOptions, runs: int) -> str:
    """Why these options cannot run ("" when they can)."""
    unknown = set(options.scenarios) - set(SCENARIOS) - set(OPTIONAL_SCENARIOS)
    if unknown:
        return f"unknown scenario(s) {', '.join(sorted(unknown))}"
    if runs < 1:
        return "--runs must be at least 1"
    if options.relays < 1:
        return "--relays must be at least 1"
    postgres = (options.database_url or "").startswith("postgresql")
    if options.relays > 1 and not postgres and "pipeline-relay" in options.scenarios:
        return "--relays above 1 needs PostgreSQL: one relay per SQLite file"
    return ""


def main(options: BenchOptions, *, as_json: bool, out: TextIO, runs: int = 1) -> int:
    """Run the bench once or ``runs`` times and print the table (or ``as_json``, the report);
    with a pipeline scenario and no ``nats_url``, on a ``nats-server`` of its own."""
    refusal = _refused(options, runs)
    if refusal:
        print(f"eventgw: {refusal}", file=sys.stderr)
        return 2
    result: Report | Series
    with contextlib.ExitStack() as stack:
        if set(options.scenarios) & set(PIPELINE_SCENARIOS):
            url = stack.enter_context(nats_server(options.nats_url))
            options = dataclasses.replace(options, nats_url=url)
        if runs == 1:
            result = run_bench(options)
        else:
            reports: list[Report] = []
            for number in range(1, runs + 1):
                reports.append(run_bench(options))
                rates = ", ".join(
                    f"{f.name} {f.events_per_s:,.0f}/s" for f in reports[-1].scenarios
                )
                print(
                    f"eventgw bench: run {number} of {runs}: {rates}", file=sys.stderr, flush=True
                )
            result = Series(runs=tuple(reports), summary=summarize(reports))
    if as_json:
        out.write(result.to_json().decode() + "\n")
    elif isinstance(result, Report):
        render_table(result, out)
    else:
        render_series(result, out)
    return 0
