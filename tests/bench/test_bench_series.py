"""``eventgw bench --runs N``: independent runs summarized as each figure's median and range, and
how many runs met each target. The summary is computed from real ``targets()`` checks of figures
chosen here, so every count below is known in advance."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from bench.report import Figure, Report, targets
from bench.run import BenchOptions, main
from bench.series import Series, Spread, summarize
from bench.table import render_series
from tests.bench import run_bench_cli


def _figure(name: str, events_per_s: float, p99_ms: float, **extra: Any) -> Figure:
    return Figure(
        name=name,
        requests=10,
        events=10,
        errors=0,
        refused=0,
        seconds=1.0,
        events_per_s=events_per_s,
        requests_per_s=events_per_s,
        p50_ms=p99_ms / 2,
        p99_ms=p99_ms,
        **extra,
    )


def _report(
    raw_rate: float, batch_rate: float, batch_p99: float, rss: float, raw: str = "raw-sqlite"
) -> Report:
    raw_figure = _figure(raw, raw_rate, 10.0)
    batch = _figure(
        "grpc-batch", batch_rate, batch_p99, peak_rss_mb=rss, ratio_to_raw=batch_rate / raw_rate
    )
    return Report(
        database="sqlite",
        sqlite_synchronous="FULL",
        seconds=1.0,
        warmup_seconds=0.5,
        clients=1,
        cpus=2,
        raw=(raw_figure,),
        scenarios=(batch,),
        gateway_peak_rss_mb=rss,
        targets=targets([batch], raw_figure, rss),
    )


SERIES = [
    _report(120_000, 110_000, 80.0, 130.0),
    _report(90_000, 70_000, 170.0, 140.0),
    _report(130_000, 104_000, 60.0, 135.0),
]


def test_each_figure_is_its_median_and_range_over_the_runs() -> None:
    summary = summarize(SERIES)

    assert summary.runs == 3
    figures = {row.name: row for row in summary.figures}
    assert list(figures) == ["raw-sqlite", "grpc-batch"]
    batch = figures["grpc-batch"]
    assert batch.events_per_s == Spread(min=70_000, median=104_000, max=110_000)
    assert batch.p99_ms == Spread(min=60.0, median=80.0, max=170.0)
    assert batch.peak_rss_mb == Spread(min=130.0, median=135.0, max=140.0)
    assert figures["raw-sqlite"].peak_rss_mb is None  # no gateway behind the raw limit
    assert summary.gateway_peak_rss_mb == Spread(min=130.0, median=135.0, max=140.0)


def test_each_target_counts_the_runs_that_met_it() -> None:
    checks = {(c.scenario, c.target): c for c in summarize(SERIES).targets}

    rate = checks[("grpc-batch", "events/s >= 100000")]
    assert (rate.met_runs, rate.runs) == (2, 3)
    assert rate.value is not None and rate.value.median == 104_000
    assert checks[("grpc-batch", "p99 ms <= 100")].met_runs == 2
    assert checks[("grpc-batch", "x raw-sqlite >= 0.30")].met_runs == 3
    assert checks[("gateway", "peak RSS MB <= 300")].met_runs == 3


def test_the_table_shows_medians_ranges_and_counts() -> None:
    out = io.StringIO()
    render_series(Series(runs=tuple(SERIES), summary=summarize(SERIES)), out)
    text = out.getvalue()

    assert "3 runs of 1 s per scenario" in text
    assert "104,000 (70,000-110,000)" in text
    assert "80.0 (60.0-170.0)" in text
    assert re.search(r"events/s >= 100000 +met in 2 of 3 runs  \(median 104,000\)", text)


def test_the_longest_target_stays_apart_from_its_count() -> None:
    series = [_report(60_000, 50_000, 200.0, 120.0, raw="raw-postgresql")]
    out = io.StringIO()
    render_series(Series(runs=tuple(series), summary=summarize(series)), out)

    assert re.search(r"x raw-postgresql >= 0\.30 +met in 1 of 1 runs", out.getvalue())


def test_fewer_than_one_run_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(BenchOptions(), as_json=False, out=io.StringIO(), runs=0) == 2
    assert "--runs must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_runs_a_series_and_reports_it_as_json() -> None:
    series, stderr = run_bench_cli(
        *("--runs", "2", "--scenarios", "track"),
        *("--seconds", "0.3", "--warmup", "0.2", "--clients", "1"),
    )

    assert len(series["runs"]) == 2
    assert all(run["scenarios"][0]["name"] == "track" for run in series["runs"])
    assert all(run["scenarios"][0]["requests"] > 0 for run in series["runs"])
    summary = series["summary"]
    assert summary["runs"] == 2
    (raw, track) = summary["figures"]
    assert (raw["name"], track["name"]) == ("raw-sqlite", "track")
    rates = sorted(run["scenarios"][0]["events_per_s"] for run in series["runs"])
    assert track["events_per_s"] == {"min": rates[0], "median": sum(rates) / 2, "max": rates[1]}
    assert {(t["scenario"], t["runs"]) for t in summary["targets"]} == {
        ("track", 2),
        ("gateway", 2),
    }
    assert b"run 2 of 2: track" in stderr
