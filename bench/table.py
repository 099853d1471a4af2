"""``eventgw bench``'s tables for people: one run's figures, or a series' medians and ranges.

:func:`render_table` prints a :class:`~bench.report.Report` (a row per scenario and the raw
limit, the pipeline scenarios' delivery, then each target met or not); :func:`render_series`
prints a :class:`~bench.series.Series` (each figure as median (min-max), each target as met in k
of N runs).
"""

from __future__ import annotations

from typing import TextIO

from bench.report import Check, Report
from bench.series import CheckSpread, PipelineSpread, Series, Spread

NAME = 18  # the first column's width, for the longest scenario name (grpc-client-build)


def _heading(report: Report) -> str:
    """What both tables open with: the bench, its database and durability."""
    return f"eventgw bench: {report.database} (sqlite synchronous={report.sqlite_synchronous})"


def _target_label(check: Check | CheckSpread) -> str:
    """A target's row label in both tables, as wide as the longest target."""
    return f"  {check.scenario:<{NAME}}{check.target:<26}"


def render_table(report: Report, out: TextIO) -> None:
    print(
        f"{_heading(report)}, {report.seconds:g} s per scenario"
        f" after {report.warmup_seconds:g} s of warm-up,"
        f" {report.clients} load processes,"
        f" {report.cpus} CPUs",
        file=out,
    )
    header = (
        f"{'scenario':<{NAME}}{'events/s':>11}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'refused':>9}{'peak RSS MB':>13}{'x raw':>8}{'CPU us/ev':>11}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in (*report.raw, *report.scenarios):
        rss = "" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}"
        ratio = "" if row.ratio_to_raw is None else f"{row.ratio_to_raw:.2f}"
        cpu = "" if row.cpu_us_per_event is None else f"{row.cpu_us_per_event:.1f}"
        print(
            f"{row.name:<{NAME}}{row.events_per_s:>11,.0f}{row.requests_per_s:>12,.0f}"
            f"{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}{row.errors:>8}{row.refused:>9}"
            f"{rss:>13}{ratio:>8}{cpu:>11}",
            file=out,
        )
        if row.first_error:
            print(f"  first error: {row.first_error}", file=out)
    _render_pipelines(report, out)
    print(f"gateway peak RSS: {report.gateway_peak_rss_mb:.0f} MB", file=out)
    for check in report.targets:
        mark = "met" if check.met else "NOT MET"
        print(f"{_target_label(check)}{check.value:>12}  {mark}", file=out)


def _render_pipelines(report: Report, out: TextIO) -> None:
    """The delivery side of the pipeline rows (whose events/s above is the ingest)."""
    rows = [(row.name, row.pipeline) for row in report.scenarios if row.pipeline is not None]
    if not rows:
        return
    header = (
        f"{'delivery':<{NAME}}{'relay':<16}{'delivered/s':>12}{'x ingest':>10}{'lag p50 s':>11}"
        f"{'p99 s':>8}{'max s':>8}{'pending p99':>13}{'drain s':>9}{'in stream':>20}"
        f"{'CPU us/ev':>11}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for name, p in rows:
        ratio = "" if p.delivered_ratio is None else f"{p.delivered_ratio:.2f}"
        drain = "never" if p.drain_s is None else f"{p.drain_s:.2f}"
        cpu = "" if p.cpu_us_per_event is None else f"{p.cpu_us_per_event:.1f}"
        relay = p.relay if p.relays == 1 else f"{p.relay} x{p.relays}"
        print(
            f"{name:<{NAME}}{relay:<16}{p.delivered_per_s:>12,.0f}{ratio:>10}{p.lag_p50_s:>11.2f}"
            f"{p.lag_p99_s:>8.2f}{p.lag_max_s:>8.2f}{p.pending_p99:>13,}{drain:>9}"
            f"{f'{p.delivered_total:,}/{p.acknowledged:,}':>20}{cpu:>11}",
            file=out,
        )
    print(
        "  delivered: the stream's gain in the window; lag: the oldest undelivered event's age,"
        " sampled; drain: from the load's end\n  until nothing is undelivered; in stream:"
        " messages / events acknowledged; CPU: gateway and relay per ingested event",
        file=out,
    )


def _cell(spread: Spread | None, fmt: str) -> str:
    if spread is None:
        return ""
    low, mid, high = (format(v, fmt) for v in (spread.min, spread.median, spread.max))
    return f"{mid} ({low}-{high})"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def render_series(series: Series, out: TextIO) -> None:
    summary, first = series.summary, series.runs[0]
    print(
        f"{_heading(first)}, {summary.runs} runs of {first.seconds:g} s per scenario:"
        " median (min-max)",
        file=out,
    )
    header = f"{'scenario':<{NAME}}{'events/s':>26}{'p99 ms':>20}{'x raw':>20}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in summary.figures:
        print(
            f"{row.name:<{NAME}}{_cell(row.events_per_s, ',.0f'):>26}"
            f"{_cell(row.p99_ms, '.1f'):>20}{_cell(row.ratio_to_raw, '.2f'):>20}",
            file=out,
        )
    for row in summary.figures:
        if row.pipeline is not None:
            _render_pipeline_spread(row.name, row.pipeline, out)
    print(f"gateway peak RSS MB: {_cell(summary.gateway_peak_rss_mb, '.0f')}", file=out)
    for check in summary.targets:
        median = "" if check.value is None else _number(check.value.median)
        print(
            f"{_target_label(check)}met in {check.met_runs} of {check.runs} runs"
            f"  (median {median})",
            file=out,
        )


def _render_pipeline_spread(name: str, p: PipelineSpread, out: TextIO) -> None:
    """A pipeline row's delivery figures over the runs, one per line."""
    print(f"{name} ({p.relay}): delivery, median (min-max)", file=out)
    for label, spread, fmt in (
        ("delivered events/s", p.delivered_per_s, ",.0f"),
        ("x ingest", p.delivered_ratio, ".2f"),
        ("outbox lag p50 s", p.lag_p50_s, ".2f"),
        ("outbox lag p99 s", p.lag_p99_s, ".2f"),
        ("outbox lag max s", p.lag_max_s, ".2f"),
        ("pending max", p.pending_max, ",.0f"),
        ("drain s", p.drain_s, ".2f"),
        ("CPU us/ev (gw + relay)", p.cpu_us_per_event, ".1f"),
    ):
        print(f"  {label:<24}{_cell(spread, fmt):>30}", file=out)
