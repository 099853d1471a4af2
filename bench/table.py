"""``eventgw bench``'s tables for people: one run's figures, or a series' medians and ranges.

:func:`render_table` prints a :class:`~bench.report.Report` (a row per scenario and the raw
limit, then each target met or not); :func:`render_series` prints a
:class:`~bench.series.Series` (each figure as median (min-max), each target as met in k of N
runs).
"""

from __future__ import annotations

from typing import TextIO

from bench.report import Check, Report
from bench.series import CheckSpread, Series, Spread


def _heading(report: Report) -> str:
    """What both tables open with: the bench, its database and durability."""
    return f"eventgw bench: {report.database} (sqlite synchronous={report.sqlite_synchronous})"


def _target_label(check: Check | CheckSpread) -> str:
    """A target's row label in both tables, as wide as the longest target."""
    return f"  {check.scenario:<16}{check.target:<26}"


def render_table(report: Report, out: TextIO) -> None:
    print(
        f"{_heading(report)}, {report.seconds:g} s per scenario"
        f" after {report.warmup_seconds:g} s of warm-up,"
        f" {report.clients} load processes,"
        f" {report.cpus} CPUs",
        file=out,
    )
    header = (
        f"{'scenario':<16}{'events/s':>11}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'refused':>9}{'peak RSS MB':>13}{'x raw':>8}{'CPU us/ev':>11}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in (*report.raw, *report.scenarios):
        rss = "" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}"
        ratio = "" if row.ratio_to_raw is None else f"{row.ratio_to_raw:.2f}"
        cpu = "" if row.cpu_us_per_event is None else f"{row.cpu_us_per_event:.1f}"
        print(
            f"{row.name:<16}{row.events_per_s:>11,.0f}{row.requests_per_s:>12,.0f}"
            f"{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}{row.errors:>8}{row.refused:>9}"
            f"{rss:>13}{ratio:>8}{cpu:>11}",
            file=out,
        )
        if row.first_error:
            print(f"  first error: {row.first_error}", file=out)
    print(f"gateway peak RSS: {report.gateway_peak_rss_mb:.0f} MB", file=out)
    for check in report.targets:
        mark = "met" if check.met else "NOT MET"
        print(f"{_target_label(check)}{check.value:>12}  {mark}", file=out)


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
    header = f"{'scenario':<16}{'events/s':>26}{'p99 ms':>20}{'x raw':>20}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in summary.figures:
        print(
            f"{row.name:<16}{_cell(row.events_per_s, ',.0f'):>26}"
            f"{_cell(row.p99_ms, '.1f'):>20}{_cell(row.ratio_to_raw, '.2f'):>20}",
            file=out,
        )
    print(f"gateway peak RSS MB: {_cell(summary.gateway_peak_rss_mb, '.0f')}", file=out)
    for check in summary.targets:
        median = "" if check.value is None else _number(check.value.median)
        print(
            f"{_target_label(check)}met in {check.met_runs} of {check.runs} runs"
            f"  (median {median})",
            file=out,
        )
