"""A smoke run of ``eventgw bench``: every scenario for a moment on SQLite, as the operator runs
it (a separate process, ``--json``). It checks the report's shape and that each scenario moved
events without errors; the figures themselves depend on the machine and are not asserted."""

from __future__ import annotations

import pytest

from bench.run import SCENARIOS
from tests.bench import run_bench_cli

FIGURE_KEYS = {
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
}


@pytest.mark.slow
def test_bench_runs_every_scenario_and_reports_json() -> None:
    report, _ = run_bench_cli("--seconds", "1", "--warmup", "0.5", "--clients", "1")

    assert report["database"] == "sqlite"
    assert report["sqlite_synchronous"] == "FULL"
    assert (report["seconds"], report["warmup_seconds"]) == (1, 0.5)
    (raw,) = report["raw"]
    assert raw["name"] == "raw-sqlite" and raw["events"] > 0 and raw["errors"] == 0
    assert [s["name"] for s in report["scenarios"]] == list(SCENARIOS)
    for scenario in report["scenarios"]:
        assert set(scenario) >= FIGURE_KEYS, scenario
        assert scenario["errors"] == 0, scenario
        assert scenario["requests"] > 0 and scenario["events"] > 0, scenario
        assert scenario["events"] >= scenario["requests"]
        assert scenario["p99_ms"] >= scenario["p50_ms"] > 0
        assert scenario["peak_rss_mb"] > 0 and scenario["ratio_to_raw"] > 0
    assert report["gateway_peak_rss_mb"] > 0
    assert {t["scenario"] for t in report["targets"]} >= {"grpc-batch", "track", "gateway"}
    assert all(isinstance(t["met"], bool) for t in report["targets"])


@pytest.mark.slow
def test_bench_runs_the_client_scenario_beside_grpc_batch() -> None:
    report, _ = run_bench_cli(
        *("--seconds", "1", "--warmup", "0.5", "--clients", "1"),
        *("--scenarios", "grpc-batch,grpc-batch-keyed,grpc-client"),
    )
    batch, keyed, client = report["scenarios"]
    assert keyed["name"] == "grpc-batch-keyed" and client["name"] == "grpc-client"
    assert keyed["errors"] == 0 and keyed["events"] == keyed["requests"] * 500 > 0
    assert client["errors"] == 0 and client["events"] > 0 and client["requests"] > 0
    assert client["loadgen_cpu_us_per_event"] > 0
    [check] = [t for t in report["targets"] if t["scenario"] == "grpc-client"]
    assert check["target"] == "x grpc-batch >= 0.80"
    assert check["value"] == round(client["events_per_s"] / batch["events_per_s"], 3)
