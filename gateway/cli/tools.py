"""The commands that drive the gateway's companions rather than the gateway itself: ``relay``
(the outbox relay publishing committed events to NATS JetStream, standalone or ``--once`` to
drain and summarize) and ``bench`` (ingest throughput of a gateway on a fresh database, next to
the raw database limit: the ``bench`` package, installed with the ``bench`` extra)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from gateway.cli.common import load_settings, run


def cmd_relay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway import logs
    from gateway.delivery.process import serve_relay

    settings = load_settings(
        args,
        env,
        nats_url=args.nats_url,
        nats_stream=args.stream,
        nats_subject_prefix=args.subject_prefix,
        relay_batch_size=args.batch_size,
        relay_failed_events=args.failed_events,
    )
    logs.configure(settings.log_level, settings.log_format)
    return run(serve_relay(settings, once=args.once, out=sys.stdout))


BENCH_EXTRA_MISSING = "eventgw bench needs the bench extra: pip install 'eventgw[bench]'"


def cmd_bench(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the bench package (imported here only: serving never loads it or psutil)."""
    try:
        from bench import run as bench
    except ModuleNotFoundError as exc:
        if exc.name != "psutil":
            raise
        print(BENCH_EXTRA_MISSING, file=sys.stderr)
        return 1

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    options = bench.BenchOptions(
        seconds=args.seconds,
        warmup_s=args.warmup,
        database_url=args.database_url,
        scenarios=scenarios or bench.SCENARIOS,
        clients=args.clients,
        concurrency=args.concurrency,
        sqlite_synchronous=args.sqlite_synchronous,
        nats_url=args.nats_url,
        relays=args.relays,
    )
    return bench.main(options, as_json=args.json, out=sys.stdout, runs=args.runs)
