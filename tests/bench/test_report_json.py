"""``eventgw bench --json``: the typed report's document keeps its keys, their order and values
(what scripts reading the JSON depend on), for one run and for a series."""

from __future__ import annotations

import orjson

from bench.report import CommitTotals, Report, figure, targets
from bench.series import Series, summarize
from bench.window import Tally
from tests.bench import pipeline_report

FIGURE_KEYS = [
    "name",
    "requests",
    "events",
    "errors",
    "refused",
    "seconds",
    "events_per_s",
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "peak_rss_mb",
    "ratio_to_raw",
    "gateway_cpu_s",
    "cpu_us_per_event",
    "loadgen_cpu_s",
    "loadgen_cpu_us_per_event",
    "commits",
    "events_per_commit",
    "requests_per_commit",
    "commit_ms",
    "first_error",
    "pipeline",
]
PIPELINE_KEYS = [
    "relay",
    "relays",
    "delivered",
    "delivered_per_s",
    "delivered_ratio",
    "lag_samples",
    "lag_p50_s",
    "lag_p99_s",
    "lag_max_s",
    "pending_p50",
    "pending_p99",
    "pending_max",
    "drain_s",
    "acknowledged",
    "delivered_total",
    "relay_cpu_s",
    "cpu_us_per_event",
]
REPORT_KEYS = [
    "database",
    "sqlite_synchronous",
    "seconds",
    "warmup_seconds",
    "clients",
    "cpus",
    "raw",
    "scenarios",
    "gateway_peak_rss_mb",
    "targets",
]
SPREAD_KEYS = ["min", "median", "max"]


def _report(rate: float) -> Report:
    raw = figure("raw-sqlite", Tally(requests=4, events=2000, elapsed_s=0.01, latencies_ms=[1.0]))
    tally = Tally(requests=2, events=int(rate), elapsed_s=1.0, latencies_ms=[2.0, 4.0])
    batch = figure("grpc-batch", tally, peak_rss_mb=120.0, cpu_s=1.5).with_ratio(raw.events_per_s)
    return Report(
        database="sqlite",
        sqlite_synchronous="FULL",
        seconds=3.0,
        warmup_seconds=1.0,
        clients=2,
        cpus=2,
        raw=(raw,),
        scenarios=(batch,),
        gateway_peak_rss_mb=120.0,
        targets=targets([batch], raw, 120.0),
    )


def test_a_run_reports_the_same_keys_and_values() -> None:
    document = orjson.loads(_report(150_000).to_json())

    assert list(document) == REPORT_KEYS
    assert document["seconds"] == 3.0 and document["cpus"] == 2
    [raw] = document["raw"]
    [batch] = document["scenarios"]
    assert list(raw) == list(batch) == FIGURE_KEYS
    assert raw["peak_rss_mb"] is None and raw["ratio_to_raw"] is None
    assert batch["events_per_s"] == 150_000.0 and batch["ratio_to_raw"] == 0.75
    assert batch["p50_ms"] == 4.0 and batch["cpu_us_per_event"] == 10.0
    assert document["targets"][0] == {
        "scenario": "grpc-batch",
        "target": "events/s >= 100000",
        "value": 150_000.0,
        "met": True,
    }


def test_a_series_reports_every_run_and_the_summary() -> None:
    runs = (_report(150_000), _report(90_000))
    document = orjson.loads(Series(runs=runs, summary=summarize(runs)).to_json())

    assert list(document) == ["runs", "summary"]
    assert [list(run) for run in document["runs"]] == [REPORT_KEYS, REPORT_KEYS]
    summary = document["summary"]
    assert list(summary) == ["runs", "figures", "gateway_peak_rss_mb", "targets"]
    raw, batch = summary["figures"]
    assert list(batch) == [
        "name",
        "events_per_s",
        "requests_per_s",
        "p50_ms",
        "p99_ms",
        "ratio_to_raw",
        "peak_rss_mb",
        "pipeline",
    ]
    assert batch["events_per_s"] == {"min": 90_000.0, "median": 120_000.0, "max": 150_000.0}
    assert list(batch["p99_ms"]) == SPREAD_KEYS and raw["peak_rss_mb"] is None
    assert batch["pipeline"] is None
    assert summary["targets"][0] == {
        "scenario": "grpc-batch",
        "target": "events/s >= 100000",
        "value": {"min": 90_000.0, "median": 120_000.0, "max": 150_000.0},
        "met_runs": 1,
        "runs": 2,
    }


def test_a_figure_carries_the_mean_group_commit_of_its_window() -> None:
    row = _report(150_000).scenarios[0]
    before = CommitTotals(commits=10, seconds=0.1, events=5_000, requests=10)
    after = CommitTotals(commits=110, seconds=1.6, events=155_000, requests=310)

    with_commits = row.with_commits(after - before)

    assert (with_commits.commits, with_commits.events_per_commit) == (100, 1500.0)
    assert (with_commits.requests_per_commit, with_commits.commit_ms) == (3.0, 15.0)
    assert row.with_commits(before - before) == row  # no commit in the window: none reported
    assert orjson.loads(orjson.dumps(row))["commits"] is None


def test_a_pipeline_row_carries_its_delivery_and_a_check_that_all_was_delivered() -> None:
    document = orjson.loads(pipeline_report(12_500).to_json())

    [row] = document["scenarios"]
    assert list(row) == FIGURE_KEYS and list(row["pipeline"]) == PIPELINE_KEYS
    assert row["events_per_s"] == 10_000.0  # the ingest
    assert row["pipeline"]["delivered_per_s"] == 9_000.0 and row["pipeline"]["drain_s"] == 0.3
    assert document["raw"][0]["pipeline"] is None
    assert document["targets"][0] == {
        "scenario": "pipeline-relay",
        "target": "undelivered at end <= 0",
        "value": 0,
        "met": True,
    }
    short = orjson.loads(pipeline_report(12_000).to_json())["targets"][0]
    assert (short["value"], short["met"]) == (500, False)


def test_a_series_summarizes_the_delivery_of_a_pipeline_row() -> None:
    runs = (pipeline_report(12_500), pipeline_report(12_500))
    summary = orjson.loads(Series(runs=runs, summary=summarize(runs)).to_json())["summary"]

    pipeline = summary["figures"][1]["pipeline"]
    assert list(pipeline) == [
        "relay",
        "delivered_per_s",
        "delivered_ratio",
        "lag_p50_s",
        "lag_p99_s",
        "lag_max_s",
        "pending_max",
        "drain_s",
        "cpu_us_per_event",
    ]
    assert pipeline["relay"] == "eventgw relay"
    assert pipeline["drain_s"] == {"min": 0.3, "median": 0.3, "max": 0.3}
