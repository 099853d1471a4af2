"""What an ``eventgw bench`` run is asked to do: :class:`BenchOptions`, the scenarios it knows
and how many requests each load process keeps in flight.

The default run is the four ingest scenarios against one gateway; the optional ones run only when
named: ``grpc-client`` (events through ``gateway.client``).
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("grpc-batch", "grpc-stream", "databuddy-batch", "track")  # the default run
OPTIONAL_SCENARIOS = ("grpc-client",)  # the client for internal services: when named
# Requests in flight per load-generator process (streams for grpc-stream, each with
# STREAM_WINDOW batches in flight). A closed loop driven harder than the gateway's throughput
# gains only queueing; SubmitBatch still gains up to 10 in flight, because each group commit then
# carries more events per fsync (~1,700 rather than ~1,250 at 6), with p99 still under 100 ms.
CONCURRENCY = {
    "grpc-batch": 5,
    "grpc-stream": 2,
    "databuddy-batch": 8,
    "track": 24,
    "grpc-client": 5,  # batches in flight per client, as grpc-batch
}
# The load generator a scenario runs when it is not its own name (bench.load's scenarios).
LOAD: dict[str, str] = {}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    seconds: float = 5.0
    warmup_s: float = 1.0  # load before each measured window, not counted
    database_url: str | None = None
    scenarios: tuple[str, ...] = SCENARIOS
    clients: int = 2  # load-generator processes per scenario
    concurrency: int | None = None  # per process; default: CONCURRENCY
    sqlite_synchronous: str = "FULL"
