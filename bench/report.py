"""The report of one ``eventgw bench`` run, typed: each scenario's figures and the targets.

A :class:`Figure` is one row (a scenario, or the raw limit): events/s, requests/s, p50/p99
latency, the gateway's peak RSS and CPU per event, its group commits, the ratio to the raw limit.
A pipeline scenario's row also carries a :class:`Pipeline`: what the outbox relay delivered to
the stream, the outbox's lag and the drain time. A :class:`Report` is a whole run: its settings,
the rows and each target met or not (:func:`targets`). ``to_json()`` is the ``--json`` document;
its keys are the fields' names, in their order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from bench.window import Tally


@dataclass(frozen=True)
class CommitTotals:
    """The gateway's group-commit counters: commits, their time, events and requests."""

    commits: float = 0.0
    seconds: float = 0.0
    events: float = 0.0
    requests: float = 0.0

    def __sub__(self, earlier: CommitTotals) -> CommitTotals:
        return CommitTotals(
            commits=self.commits - earlier.commits,
            seconds=self.seconds - earlier.seconds,
            events=self.events - earlier.events,
            requests=self.requests - earlier.requests,
        )


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """The delivery side of a pipeline scenario, whose row's events are the ingest: accepted by
    ``SubmitBatch`` inside the measured window."""

    relay: str  # "serve --relay" (the supervisor's relay) or "eventgw relay" (processes apart)
    relays: int
    # Messages the JetStream stream gained inside the window: its state's message count
    # (js.stream_info) read at the window's start and end.
    delivered: int
    delivered_per_s: float
    delivered_ratio: float | None  # delivered / ingested, both inside the window
    # The outbox's lag sampled every LAG_INTERVAL_SECONDS inside the window: the age of the
    # oldest undelivered event (0 when none) and how many are undelivered.
    lag_samples: int
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    pending_p50: int
    pending_p99: int
    pending_max: int
    # Seconds from the window's end (the load stops; its requests in flight finish) until the
    # outbox has nothing undelivered; None when it did not within the bench's patience.
    drain_s: float | None
    acknowledged: int  # events SubmitBatch accepted over the whole load, warm-up included
    delivered_total: int  # messages in the stream once drained
    relay_cpu_s: float | None  # the relay processes' CPU in the window (None: in the gateway's)
    cpu_us_per_event: float | None  # gateway and relay CPU in the window per ingested event


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
    # The gateway's (under serve --relay: its supervisor's, worker's and relay's together).
    peak_rss_mb: float | None = None
    ratio_to_raw: float | None = None
    # The gateway's CPU time (all threads, its child processes too) inside the window, and per
    # event: the figure that stays comparable when other work shares the machine.
    gateway_cpu_s: float | None = None
    cpu_us_per_event: float | None = None
    loadgen_cpu_s: float | None = None
    # The load process's CPU per event counted: for grpc-client, the client's own cost.
    loadgen_cpu_us_per_event: float | None = None
    # From the gateway's /metrics over the window: group commits, their mean size and time.
    commits: int | None = None
    events_per_commit: float | None = None
    requests_per_commit: float | None = None
    commit_ms: float | None = None
    first_error: str = ""
    pipeline: Pipeline | None = None

    def with_commits(self, totals: CommitTotals) -> Figure:
        """This row with the mean group commit of ``totals`` (unchanged when there was none)."""
        if totals.commits <= 0:
            return self
        return dataclasses.replace(
            self,
            commits=int(totals.commits),
            events_per_commit=round(totals.events / totals.commits, 1),
            requests_per_commit=round(totals.requests / totals.commits, 1),
            commit_ms=round(totals.seconds / totals.commits * 1000, 2),
        )

    def with_ratio(self, limit: float) -> Figure:
        """This row with its events/s as a share of ``limit`` (none when there is no limit)."""
        ratio = round(self.events_per_s / limit, 3) if limit else None
        return dataclasses.replace(self, ratio_to_raw=ratio)


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figure(
    name: str, tally: Tally, *, peak_rss_mb: float | None = None, cpu_s: float | None = None
) -> Figure:
    """The row of what ``tally`` counted (with the gateway's peak RSS and CPU time, if any)."""
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
        p50_ms=round(quantile(tally.latencies_ms, 0.50), 2),
        p99_ms=round(quantile(tally.latencies_ms, 0.99), 2),
        peak_rss_mb=peak_rss_mb,
        gateway_cpu_s=None if cpu_s is None else round(cpu_s, 3),
        cpu_us_per_event=per_event,
        loadgen_cpu_s=round(tally.cpu_s, 3) if tally.cpu_s else None,
        loadgen_cpu_us_per_event=(
            round(tally.cpu_s / tally.events * 1e6, 2) if tally.cpu_s and tally.events else None
        ),
        first_error=tally.first_error,
    )


@dataclass(frozen=True, kw_only=True)
class Check:
    """One target checked against a run's figure."""

    scenario: str
    target: str
    value: float
    met: bool


@dataclass(frozen=True, kw_only=True)
class Report:
    """One run: its settings, the raw limit's rows, each scenario's row and the targets."""

    database: str
    sqlite_synchronous: str
    seconds: float
    warmup_seconds: float
    clients: int
    cpus: int | None
    raw: tuple[Figure, ...]
    scenarios: tuple[Figure, ...]
    gateway_peak_rss_mb: float
    targets: tuple[Check, ...]

    def to_json(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_INDENT_2)


def targets(figures: Sequence[Figure], raw: Figure, peak_rss_mb: float) -> tuple[Check, ...]:
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
    for f in figures:
        if f.pipeline is not None:  # every acknowledged event reached the stream
            missing = f.pipeline.acknowledged - f.pipeline.delivered_total
            checks.append((f.name, "undelivered at end <= 0", missing, 0, False))
    if peak_rss_mb:  # none when only serve --relay ran (its peak is its process group's)
        checks.append(("gateway", "peak RSS MB <= 300", peak_rss_mb, 300, False))
    return tuple(
        Check(
            scenario=scenario,
            target=text,
            value=value,
            met=value >= bound if at_least else value <= bound,
        )
        for scenario, text, value, bound, at_least in checks
    )
