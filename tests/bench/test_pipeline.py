"""The pipeline scenarios of ``eventgw bench``: ``SubmitBatch`` load while the outbox relay
delivers to the real NATS JetStream server (``tests.jetstream.nats_url``), run for a moment as
the operator runs them (a separate process, ``--json``), on SQLite and on PostgreSQL. They check
the report's shape and that every acknowledged event reached the stream once the outbox drained;
the figures themselves depend on the machine and are not asserted. The bench's own
``nats-server`` (no ``--nats-url``) is checked apart."""

from __future__ import annotations

import asyncio
import io
import re
import socket
from typing import Any

import nats
import pytest

from bench.broker import nats_server
from bench.run import BenchOptions, main
from bench.series import Series, summarize
from bench.table import render_series, render_table
from tests.backends import maintenance_url
from tests.bench import pipeline_report, run_bench_cli
from tests.jetstream import nats_url

SHORT = ("--seconds", "1", "--warmup", "0.3", "--clients", "1", "--concurrency", "2")


def _check_pipeline_row(row: dict[str, Any], relay: str, relays: int) -> None:
    assert row["errors"] == 0 and row["first_error"] == "", row
    assert row["events"] > 0 and row["requests"] > 0  # the ingest, inside the window
    pipeline = row["pipeline"]
    assert (pipeline["relay"], pipeline["relays"]) == (relay, relays)
    assert pipeline["delivered"] >= 0 and pipeline["delivered_per_s"] >= 0
    assert pipeline["delivered_ratio"] == round(pipeline["delivered"] / row["events"], 3)
    assert pipeline["lag_samples"] > 0
    assert 0 <= pipeline["lag_p50_s"] <= pipeline["lag_p99_s"] <= pipeline["lag_max_s"]
    assert 0 <= pipeline["pending_p50"] <= pipeline["pending_p99"] <= pipeline["pending_max"]
    assert pipeline["drain_s"] is not None and pipeline["drain_s"] >= 0
    # Every event SubmitBatch acknowledged, warm-up and all, is in the stream once drained.
    assert pipeline["acknowledged"] >= row["events"]
    assert pipeline["delivered_total"] == pipeline["acknowledged"]
    assert pipeline["cpu_us_per_event"] > 0


def _bench_streams() -> set[str]:
    """The streams of the bench's runs now on the server."""

    async def names() -> set[str]:
        nc = await nats.connect(nats_url())
        try:
            infos = await nc.jetstream().streams_info()
            return {s.config.name for s in infos if s.config.name.startswith("EVENTGW_BENCH_")}
        finally:
            await nc.close()

    return asyncio.run(names())


@pytest.mark.slow
@pytest.mark.nats
def test_both_relay_modes_deliver_every_acknowledged_event_on_sqlite() -> None:
    before = _bench_streams()
    report, _ = run_bench_cli(
        *SHORT, "--scenarios", "pipeline,pipeline-relay", "--nats-url", nats_url()
    )

    assert report["database"] == "sqlite"
    served, apart = report["scenarios"]
    assert (served["name"], apart["name"]) == ("pipeline", "pipeline-relay")
    _check_pipeline_row(served, "serve --relay", 1)
    _check_pipeline_row(apart, "eventgw relay", 1)
    assert served["pipeline"]["relay_cpu_s"] is None  # inside the gateway's
    assert apart["pipeline"]["relay_cpu_s"] > 0
    checks = {(t["scenario"], t["target"]): t for t in report["targets"]}
    assert checks[("pipeline", "undelivered at end <= 0")]["met"] is True
    assert checks[("pipeline-relay", "undelivered at end <= 0")]["met"] is True
    assert _bench_streams() <= before  # each run's stream was deleted


@pytest.mark.slow
@pytest.mark.nats
@pytest.mark.postgres
def test_two_relay_processes_share_a_postgresql_outbox() -> None:
    report, _ = run_bench_cli(
        *SHORT,
        *("--scenarios", "pipeline-relay", "--relays", "2"),
        *("--database-url", maintenance_url(), "--nats-url", nats_url()),
    )

    assert report["database"] == "postgresql"
    [row] = report["scenarios"]
    _check_pipeline_row(row, "eventgw relay", 2)


@pytest.mark.slow
def test_without_a_nats_url_the_bench_runs_a_nats_server_of_its_own() -> None:
    with nats_server(None) as url:
        host, port = url.removeprefix("nats://").split(":")

        async def jetstream_answers() -> int:
            nc = await nats.connect(url)
            try:
                return (await nc.jetstream().account_info()).streams
            finally:
                await nc.close()

        assert asyncio.run(jetstream_answers()) == 0
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


def test_several_relays_on_one_sqlite_file_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    options = BenchOptions(scenarios=("pipeline-relay",), relays=2)
    assert main(options, as_json=False, out=io.StringIO()) == 2
    assert "--relays above 1 needs PostgreSQL" in capsys.readouterr().err


def test_the_table_shows_a_pipeline_rows_delivery() -> None:
    out = io.StringIO()
    render_table(pipeline_report(12_500), out)
    text = out.getvalue()

    assert re.search(r"^delivery +relay +delivered/s +x ingest +lag p50 s", text, re.M)
    assert re.search(
        r"^pipeline-relay +eventgw relay +9,000 +0\.90 +0\.20 +0\.40 +0\.40 +2,000 +0\.30"
        r" +12,500/12,500 +150\.0$",
        text,
        re.M,
    )
    assert re.search(r"pipeline-relay +undelivered at end <= 0 +0 +met", text)


def test_the_series_table_shows_a_pipeline_rows_delivery_over_the_runs() -> None:
    runs = (pipeline_report(12_500), pipeline_report(12_000))
    out = io.StringIO()
    render_series(Series(runs=runs, summary=summarize(runs)), out)
    text = out.getvalue()

    assert "pipeline-relay (eventgw relay): delivery, median (min-max)" in text
    assert re.search(r"delivered events/s +9,000 \(9,000-9,000\)", text)
    assert re.search(r"drain s +0\.30 \(0\.30-0\.30\)", text)
    assert re.search(r"undelivered at end <= 0 +met in 1 of 2 runs", text)
