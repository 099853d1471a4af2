"""Tests of ``eventgw bench``; ``run_bench_cli`` runs it as an operator does, ``pipeline_report``
is a made-up report of a pipeline scenario."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import orjson

from bench.report import Pipeline, Report, figure, targets
from bench.window import Tally
from tests.harness import ROOT


def run_bench_cli(*args: str) -> tuple[Any, bytes]:
    """``python -m gateway bench --json ARGS`` in a process of its own: (report, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return orjson.loads(done.stdout), done.stderr


def pipeline_report(delivered_total: int) -> Report:
    """A run of ``pipeline-relay`` alone whose stream holds ``delivered_total`` of the 12,500
    events acknowledged, with figures chosen here."""
    raw = figure("raw-sqlite", Tally(requests=4, events=2000, elapsed_s=0.01, latencies_ms=[1.0]))
    tally = Tally(
        requests=20, events=10_000, elapsed_s=1.0, latencies_ms=[5.0], acknowledged=12_500
    )
    delivery = Pipeline(
        relay="eventgw relay",
        relays=1,
        delivered=9_000,
        delivered_per_s=9_000.0,
        delivered_ratio=0.9,
        lag_samples=5,
        lag_p50_s=0.2,
        lag_p99_s=0.4,
        lag_max_s=0.4,
        pending_p50=1_000,
        pending_p99=2_000,
        pending_max=2_000,
        drain_s=0.3,
        acknowledged=12_500,
        delivered_total=delivered_total,
        relay_cpu_s=0.5,
        cpu_us_per_event=150.0,
    )
    row = figure("pipeline-relay", tally, peak_rss_mb=100.0, cpu_s=1.0)
    row = dataclasses.replace(row, pipeline=delivery)
    return Report(
        database="sqlite",
        sqlite_synchronous="FULL",
        seconds=1.0,
        warmup_seconds=0.5,
        clients=1,
        cpus=2,
        raw=(raw,),
        scenarios=(row,),
        gateway_peak_rss_mb=100.0,
        targets=targets([row], raw, 100.0),
    )
