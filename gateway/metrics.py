"""Prometheus metrics: one ``Metrics`` object per runtime, rendered by ``GET /metrics``.

Every family lives in the ``CollectorRegistry`` of its ``Metrics`` (not prometheus_client's
global ``REGISTRY``), so two runtimes in one process (tests) count apart. The hot path records
once per request or commit with counts (``observe_request``, ``observe_commit``), never per event.

Families (labels in braces)::

    eventgw_events_total{dialect,project,outcome}       outcome: accepted, duplicate, rejected
    eventgw_requests_total{dialect,endpoint,status}     HTTP status code, or gRPC status name
    eventgw_request_duration_seconds{dialect,endpoint}  histogram
    eventgw_batch_size_events{dialect,endpoint}         histogram: events per request (per batch)
    eventgw_idempotent_replays_total{dialect,endpoint}
    eventgw_rate_limited_total{dialect,endpoint}
    eventgw_commit_group_requests                       histogram: requests per group commit
    eventgw_commit_group_events                         histogram: events per group commit
    eventgw_commit_duration_seconds                     histogram: one group commit
    eventgw_queue_events                                gauge: events waiting for the writer
    eventgw_failed_events_total{dialect,reason}         refused items (the failed-events table)
    eventgw_relay_delivered_total                       events the relay marked delivered
    eventgw_relay_pending_events                        gauge: undelivered events in the outbox
    eventgw_relay_lag_seconds                           gauge: age of the oldest undelivered one
    eventgw_relay_failed_published_total                failed events the relay published

``dialect`` is the adapter name (``databuddy``, ``ours``, ``appizer``, ``vibefollow``), ``grpc``,
``ops`` (``/metrics``, ``/healthz``, ``/readyz``) or ``none`` (a path no dialect owns);
``endpoint`` is the route name, the gRPC method, or ``unmatched``.

Multi-process mode (``eventgw serve --workers N``), the contract with the supervisor:

1. create an empty directory and put its path in the environment as ``PROMETHEUS_MULTIPROC_DIR``
   (the name prometheus_client reads) before starting the workers, so that every worker's
   ``Settings.load`` sees it (``Settings.prometheus_multiproc_dir``); prometheus_client decides
   its storage when first imported, so set it before a worker imports ``gateway.metrics``
   (``Metrics`` switches the storage itself if it was imported earlier, e.g. before a fork);
2. call ``worker_exited(pid, directory)`` when a worker exits (its live gauges then stop
   counting);
3. remove the directory when the supervisor stops.

Each worker then writes its samples to files in that directory and ``render`` (whichever worker
answers the scrape) sums counters and histograms over all workers; ``eventgw_queue_events`` is the
sum over live workers, the relay gauges the maximum. Without the directory everything stays in
the process's memory.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from gateway.access import RequestInfo

if TYPE_CHECKING:
    from gateway.storage.failed import FailedEvent

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client was imported before the supervisor set PROMETHEUS_MULTIPROC_DIR:
            # switch to its file-backed values now, before any family below is created.
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        self.multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
        self.registry = registry = CollectorRegistry()
        self._counters: dict[tuple[int, tuple[str, ...]], Counter] = {}
        self._histograms: dict[tuple[int, tuple[str, ...]], Histogram] = {}
        http = ("dialect", "endpoint")
        self.events = Counter(
            "eventgw_events",
            "Events by outcome: accepted (stored), duplicate (already stored), rejected (invalid).",
            ("dialect", "project", "outcome"),
            registry=registry,
        )
        self.requests = Counter(
            "eventgw_requests",
            "Requests by dialect, endpoint and status (HTTP code or gRPC status name).",
            (*http, "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "eventgw_request_duration_seconds",
            "Time from receiving a request to its response.",
            http,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "eventgw_batch_size_events",
            "Events (valid or not) per request; per batch on a gRPC stream.",
            http,
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.replays = Counter(
            "eventgw_idempotent_replays",
            "Requests answered with the stored response of an earlier one (Idempotency-Key).",
            http,
            registry=registry,
        )
        self.rate_limited = Counter(
            "eventgw_rate_limited",
            "Requests refused by a key's rate limit.",
            http,
            registry=registry,
        )
        self.commit_requests = Histogram(
            "eventgw_commit_group_requests",
            "Requests coalesced into one database transaction (group commit).",
            buckets=GROUP_BUCKETS,
            registry=registry,
        )
        self.commit_events = Histogram(
            "eventgw_commit_group_events",
            "Events written by one group commit.",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            "eventgw_commit_duration_seconds",
            "Time one group commit took (insert, stored responses, commit).",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge(
            "eventgw_queue_events",
            "Events queued for the writer and not yet committed.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.failed_events = Counter(
            "eventgw_failed_events",
            "Items refused after their project was known, by dialect and reason code.",
            ("dialect", "reason"),
            registry=registry,
        )
        self.relay_delivered = Counter(
            "eventgw_relay_delivered",
            "Events the relay published to NATS and marked delivered.",
            registry=registry,
        )
        self.relay_pending = Gauge(
            "eventgw_relay_pending_events",
            "Committed events not yet delivered to NATS.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.relay_lag = Gauge(
            "eventgw_relay_lag_seconds",
            "Age of the oldest committed event not yet delivered to NATS (0: none).",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.relay_failed_published = Counter(
            "eventgw_relay_failed_published",
            "Failed events the relay published to NATS (relay_failed_events).",
            registry=registry,
        )

    def observe_request(self, info: RequestInfo, seconds: float) -> None:
        """Record one finished request (HTTP or gRPC call): a handful of increments."""
        dialect = info.dialect or "none"
        endpoint = info.endpoint or "unmatched"
        self._counter(self.requests, dialect, endpoint, info.status_label).inc()
        self._histogram(self.duration, dialect, endpoint).observe(seconds)
        if info.replays:
            self._counter(self.replays, dialect, endpoint).inc(info.replays)
        if info.rate_limited:
            self._counter(self.rate_limited, dialect, endpoint).inc()
        if info.project:
            for outcome, count in (
                ("accepted", info.accepted),
                ("duplicate", info.duplicates),
                ("rejected", info.rejected),
            ):
                if count:
                    self._counter(self.events, dialect, info.project, outcome).inc(count)

    def observe_batch(self, dialect: str, endpoint: str, events: int) -> None:
        self._histogram(self.batch_size, dialect, endpoint).observe(events)

    # ``family.labels(...)`` validates and locks on every call; the children never change, so
    # the hot path looks them up in a plain dict instead.
    def _counter(self, family: Counter, *labels: str) -> Counter:
        key = (id(family), labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = family.labels(*labels)
        return child

    def _histogram(self, family: Histogram, *labels: str) -> Histogram:
        key = (id(family), labels)
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = family.labels(*labels)
        return child

    def observe_commit(self, requests: int, events: int, seconds: float, queued: int) -> None:
        """One group commit of ``requests`` requests holding ``events`` events; ``queued``
        events are left waiting."""
        self.commit_requests.observe(requests)
        self.commit_events.observe(events)
        self.commit_duration.observe(seconds)
        self.queue.set(queued)

    def observe_refused(self, refused: Sequence[FailedEvent]) -> None:
        """Items the pipeline refused (on their way to the failed-events table)."""
        counts = collections.Counter((item.dialect, item.code) for item in refused)
        for (dialect, reason), n in counts.items():
            self.failed_events.labels(dialect or "none", reason).inc(n)

    def observe_relay(self, *, delivered: int, pending: int, lag_seconds: float) -> None:
        """For the relay, after each step: ``delivered`` events newly marked delivered, and the
        outbox's state (``gateway.delivery.outbox.outbox_lag``)."""
        if delivered:
            self.relay_delivered.inc(delivered)
        self.relay_pending.set(pending)
        self.relay_lag.set(lag_seconds)

    def observe_failed_published(self, published: int) -> None:
        """For the relay publishing failed events: ``published`` rows newly marked published."""
        self.relay_failed_published.inc(published)

    def render(self) -> bytes:
        """The Prometheus text exposition (``CONTENT_TYPE``): this process's families, or every
        worker's aggregated in multi-process mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        aggregate = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregate, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(aggregate)


def worker_exited(pid: int, directory: str) -> None:
    """For the ``--workers`` supervisor: forget the live gauges of an exited worker."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
