"""What an ``eventgw bench`` run is asked to do: :class:`BenchOptions`, the scenarios it knows
and how many requests each load process keeps in flight.

The default run is the four ingest scenarios against one gateway; the optional ones run only when
named: ``grpc-batch-keyed`` (``grpc-batch`` with an idempotency key per request), ``grpc-client``
and ``grpc-client-build`` (events through ``gateway.client``: :mod:`bench.client`) and the
pipeline scenarios (``pipeline``: ``serve --relay``; ``pipeline-relay``: ``serve`` beside
separate ``eventgw relay`` processes), which load ``SubmitBatch`` as ``grpc-batch`` does while
the outbox relay delivers to NATS JetStream (:mod:`bench.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("grpc-batch", "grpc-stream", "databuddy-batch", "track")  # the default run
PIPELINE_SCENARIOS = ("pipeline", "pipeline-relay")  # ingest with the relay: when named
OPTIONAL_SCENARIOS = ("grpc-batch-keyed", "grpc-client", "grpc-client-build", *PIPELINE_SCENARIOS)
# Requests in flight per load-generator process (streams for grpc-stream, each with
# STREAM_WINDOW batches in flight). A closed loop driven harder than the gateway's throughput
# gains only queueing; SubmitBatch still gains up to 10 in flight, because each group commit then
# carries more events per fsync (~1,700 rather than ~1,250 at 6), with p99 still under 100 ms.
CONCURRENCY = {
    "grpc-batch": 5,
    "grpc-batch-keyed": 5,
    "grpc-stream": 2,
    "databuddy-batch": 8,
    "track": 24,
    "grpc-client": 5,  # batches in flight per client, as grpc-batch
    "grpc-client-build": 5,
    "pipeline": 5,  # the pipeline scenarios' load is grpc-batch's
    "pipeline-relay": 5,
}
# The load generator each scenario runs (bench.load's scenario names).
LOAD = {"pipeline": "grpc-batch", "pipeline-relay": "grpc-batch"}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    seconds: float = 5.0
    warmup_s: float = 1.0  # load before each measured window, not counted
    database_url: str | None = None
    scenarios: tuple[str, ...] = SCENARIOS
    clients: int = 2  # load-generator processes per scenario
    concurrency: int | None = None  # per process; default: CONCURRENCY
    sqlite_synchronous: str = "FULL"
    # The pipeline scenarios: the NATS server (None: the bench starts a nats-server of its own)
    # and how many `eventgw relay` processes pipeline-relay runs (more than one: PostgreSQL only).
    nats_url: str | None = None
    relays: int = 1
