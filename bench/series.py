"""A series of ``eventgw bench`` runs (``--runs N``), typed: each figure's median and range.

On a shared machine one run says little: :func:`summarize` turns independent runs' reports into
a :class:`Summary` of each figure's median and range (a pipeline scenario's delivery figures
too) and, for each target, how many runs met it.
:class:`Series` is the ``--json`` document of such a series: every run's report and the summary.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from bench.report import Check, Figure, Pipeline, Report


@dataclass(frozen=True)
class Spread:
    """A figure over the runs that have it."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread | None:
        present = [v for v in values if v is not None]
        if not present:
            return None
        return cls(min(present), statistics.median(present), max(present))


@dataclass(frozen=True, kw_only=True)
class PipelineSpread:
    """A pipeline scenario's delivery figures over the runs (``bench.report.Pipeline``)."""

    relay: str
    delivered_per_s: Spread | None
    delivered_ratio: Spread | None
    lag_p50_s: Spread | None
    lag_p99_s: Spread | None
    lag_max_s: Spread | None
    pending_max: Spread | None
    drain_s: Spread | None
    cpu_us_per_event: Spread | None

    @classmethod
    def of(cls, rows: Sequence[Pipeline]) -> PipelineSpread | None:
        if not rows:
            return None
        return cls(
            relay=rows[0].relay,
            delivered_per_s=Spread.of([r.delivered_per_s for r in rows]),
            delivered_ratio=Spread.of([r.delivered_ratio for r in rows]),
            lag_p50_s=Spread.of([r.lag_p50_s for r in rows]),
            lag_p99_s=Spread.of([r.lag_p99_s for r in rows]),
            lag_max_s=Spread.of([r.lag_max_s for r in rows]),
            pending_max=Spread.of([r.pending_max for r in rows]),
            drain_s=Spread.of([r.drain_s for r in rows]),
            cpu_us_per_event=Spread.of([r.cpu_us_per_event for r in rows]),
        )


@dataclass(frozen=True, kw_only=True)
class FigureSpread:
    """One row's figures over the runs (``None`` where no run has that figure)."""

    name: str
    events_per_s: Spread | None
    requests_per_s: Spread | None
    p50_ms: Spread | None
    p99_ms: Spread | None
    ratio_to_raw: Spread | None
    peak_rss_mb: Spread | None
    pipeline: PipelineSpread | None = None

    @classmethod
    def of(cls, name: str, rows: Sequence[Figure]) -> FigureSpread:
        return cls(
            name=name,
            events_per_s=Spread.of([r.events_per_s for r in rows]),
            requests_per_s=Spread.of([r.requests_per_s for r in rows]),
            p50_ms=Spread.of([r.p50_ms for r in rows]),
            p99_ms=Spread.of([r.p99_ms for r in rows]),
            ratio_to_raw=Spread.of([r.ratio_to_raw for r in rows]),
            peak_rss_mb=Spread.of([r.peak_rss_mb for r in rows]),
            pipeline=PipelineSpread.of([r.pipeline for r in rows if r.pipeline is not None]),
        )


@dataclass(frozen=True, kw_only=True)
class CheckSpread:
    """One target over the runs: its value's spread and how many runs met it."""

    scenario: str
    target: str
    value: Spread | None
    met_runs: int
    runs: int


@dataclass(frozen=True, kw_only=True)
class Summary:
    runs: int
    figures: tuple[FigureSpread, ...]
    gateway_peak_rss_mb: Spread | None
    targets: tuple[CheckSpread, ...]


@dataclass(frozen=True, kw_only=True)
class Series:
    """Every run's report and their summary."""

    runs: tuple[Report, ...]
    summary: Summary

    def to_json(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_INDENT_2)


def summarize(reports: Sequence[Report]) -> Summary:
    """A series of independent runs as each figure's median and range, and how many runs met
    each target."""
    rows: dict[str, list[Figure]] = {}
    checks: dict[tuple[str, str], list[Check]] = {}
    for report in reports:
        for row in (*report.raw, *report.scenarios):
            rows.setdefault(row.name, []).append(row)
        for check in report.targets:
            checks.setdefault((check.scenario, check.target), []).append(check)
    return Summary(
        runs=len(reports),
        figures=tuple(FigureSpread.of(name, found) for name, found in rows.items()),
        gateway_peak_rss_mb=Spread.of([r.gateway_peak_rss_mb for r in reports]),
        targets=tuple(
            CheckSpread(
                scenario=scenario,
                target=target,
                value=Spread.of([c.value for c in found]),
                met_runs=sum(c.met for c in found),
                runs=len(found),
            )
            for (scenario, target), found in checks.items()
        ),
    )
