"""The operator's command line: ``eventgw`` (also ``python -m gateway``).

Every command takes ``--database-url`` (default: ``EVENTGW_DATABASE_URL``, else the SQLite file
``eventgw.db`` in the working directory) and ``--config FILE`` (a TOML file of settings, default
``$EVENTGW_CONFIG``; flags win over the environment, which wins over the file). Run
``eventgw COMMAND --help`` for details and examples. Long operations (migrations, export, purge)
report progress on stderr when it is a terminal.

This module holds the argparse tree (:func:`build_parser`) and :func:`main`, which maps
configuration and startup errors to exit codes 2 and 1; the commands live in ``serve``
(``serve``), ``admin`` (``db``, ``projects``, ``keys``, ``events``, ``purge``) and ``tools``
(``relay``, ``bench``) and ``send`` (``send``), their shared plumbing in ``common``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from gateway.cli import send
from gateway.cli.admin import cmd_db, cmd_events, cmd_keys, cmd_projects, cmd_purge
from gateway.cli.common import StartupError
from gateway.cli.serve import _prepare as _prepare
from gateway.cli.serve import cmd_serve
from gateway.cli.tools import cmd_bench, cmd_relay
from gateway.config import ConfigError
from gateway.examples import add_examples

__all__ = ["EXAMPLES", "StartupError", "build_parser", "main"]

EXAMPLES = """\
examples:
  eventgw serve --http 0.0.0.0:8080 --grpc 0.0.0.0:50051
  eventgw serve --config /etc/eventgw.toml --print-config
  eventgw db upgrade
  eventgw projects create "My site" --allowed-origin https://example.com --json
  eventgw keys create --project PROJECT_ID --prefix dbdy_ --rate-limit 100/min --json
  eventgw keys revoke KEY_ID
  eventgw events export --project PROJECT_ID --since 2026-01-01T00:00:00Z --limit 10
  eventgw events failed --project PROJECT_ID --limit 20 --json
  eventgw purge
  eventgw send order_completed --properties '{"total": 129.5}' --api-key "$KEY"
  eventgw events export --project PROJECT_ID | eventgw send --file - --api-key "$OTHER_KEY"
  eventgw bench --seconds 5 --json
  eventgw serve --workers 4 --database-url postgresql://eventgw@db/eventgw
  eventgw relay --database-url postgresql://eventgw@db/eventgw --nats-url nats://127.0.0.1:4222
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="sqlite:///path or postgresql://user@host:port/db"
        " (default: $EVENTGW_DATABASE_URL, else sqlite:///eventgw.db)",
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings, e.g. `http_port = 8080` (default: $EVENTGW_CONFIG);"
        " flags and EVENTGW_* variables override it",
    )
    parser = argparse.ArgumentParser(
        prog="eventgw",
        description="A gRPC-fronted multi-protocol event gateway.\n\n"
        "Settings come from flags, then EVENTGW_* environment variables, then a TOML file\n"
        "(--config FILE or EVENTGW_CONFIG), then defaults. Run `eventgw COMMAND --help` for\n"
        "each command's options and examples.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="serve HTTP and gRPC")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address (127.0.0.1:8080)")
    serve.add_argument("--grpc", metavar="HOST:PORT", help="gRPC listen address (127.0.0.1:50051)")
    serve.add_argument(
        "--ops",
        metavar="HOST:PORT",
        help="operations listener: /metrics, /readyz, /healthz (127.0.0.1:9090)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS (and gRPC over TLS): PEM")
    serve.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert: PEM")
    serve.add_argument("--grpc-tls-cert", metavar="FILE", help="gRPC's own certificate: PEM")
    serve.add_argument("--grpc-tls-key", metavar="FILE", help="gRPC's own private key: PEM")
    serve.add_argument(
        "--grpc-client-ca",
        metavar="FILE",
        help="mutual TLS: gRPC clients need a certificate signed by this CA (PEM)",
    )
    serve.add_argument("--workers", type=int, default=None, help="processes sharing the ports")
    serve.add_argument(
        "--log-format", choices=("json", "text"), help="log lines as JSON (default) or text"
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="default: info"
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings as TOML (secrets masked) and exit",
    )
    serve.add_argument(
        "--relay", action="store_true", help="also run the outbox relay (needs a NATS URL)"
    )
    serve.add_argument("--nats-url", help="for --relay (default: $EVENTGW_NATS_URL)")
    serve.add_argument(
        "--relay-processes",
        type=int,
        metavar="N",
        help="with --relay: N relay processes sharing the outbox, PostgreSQL only (default 1)",
    )
    serve.add_argument(
        "--relay-failed-events",
        action="store_true",
        default=None,
        help="with --relay: publish the failed events too, to <prefix>.failed.<project id>"
        " (default: $EVENTGW_RELAY_FAILED_EVENTS, else off)",
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="schema migrations: upgrade, downgrade, current, history")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", parents=[common], help="upgrade to REVISION (default head)")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", parents=[common], help="downgrade to REVISION")
    down.add_argument("revision")
    dbsub.add_parser("current", parents=[common], help="show the current revision")
    dbsub.add_parser("history", parents=[common], help="list the migrations")
    db.set_defaults(func=cmd_db)

    projects = sub.add_parser("projects", help="create and list projects (tenants)")
    psub = projects.add_subparsers(dest="projects_command", required=True, metavar="ACTION")
    pcreate = psub.add_parser("create", parents=[common], help="create a project")
    pcreate.add_argument("name")
    pcreate.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="browser Origin allowed to send (repeat; none: any)",
    )
    pcreate.add_argument("--id", help="use this UUID (e.g. an existing Databuddy website id)")
    pcreate.add_argument("--json", action="store_true", help="one JSON object per line")
    plist = psub.add_parser("list", parents=[common], help="list projects")
    plist.add_argument("--json", action="store_true")
    projects.set_defaults(func=cmd_projects)

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kcreate = ksub.add_parser("create", parents=[common], help="create a key (secret shown once)")
    kcreate.add_argument("--project", required=True)
    kcreate.add_argument("--scope", action="append", help="default: track:events (repeat)")
    kcreate.add_argument("--prefix", default="egw_", help="display prefix, e.g. dbdy_ or sk_live_")
    kcreate.add_argument("--rate-limit", help="N/s or N/min per key (default: none)")
    kcreate.add_argument("--json", action="store_true")
    klist = ksub.add_parser("list", parents=[common], help="list a project's keys (no secrets)")
    klist.add_argument("--project", required=True)
    klist.add_argument("--json", action="store_true")
    krevoke = ksub.add_parser("revoke", parents=[common], help="revoke a key")
    krevoke.add_argument("key_id")
    krate = ksub.add_parser("set-rate-limit", parents=[common], help="change a key's rate limit")
    krate.add_argument("key_id")
    krate.add_argument("rate_limit", help="N/s, N/min, or none")
    keys.set_defaults(func=cmd_keys)

    events = sub.add_parser("events", help="stored events, and the events the gateway refused")
    esub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    export = esub.add_parser(
        "export",
        parents=[common],
        help="stored canonical events as JSON lines (Protobuf JSON mapping)",
    )
    export.add_argument("--project", required=True)
    export.add_argument("--since", help="ISO-8601 receive time")
    export.add_argument("--limit", type=int)
    failed = esub.add_parser(
        "failed",
        parents=[common],
        help="the items the gateway refused: when, where, why, and what was sent",
    )
    failed.add_argument("--project", required=True)
    failed.add_argument("--since", help="ISO-8601 receive time")
    failed.add_argument("--limit", type=int)
    failed.add_argument("--json", action="store_true", help="JSON lines")
    events.set_defaults(func=cmd_events)

    purge = sub.add_parser(
        "purge",
        parents=[common],
        help="delete expired idempotency keys, delivered events past their retention and old"
        " failed events",
    )
    purge.add_argument("--retention", type=float, help="seconds a key is kept (default 86400)")
    purge.add_argument(
        "--event-retention",
        type=float,
        help="seconds a delivered event is kept (default 604800; 0: for ever)",
    )
    purge.set_defaults(func=cmd_purge)

    relay = sub.add_parser(
        "relay",
        parents=[common],
        help="publish committed events to NATS JetStream (the outbox relay)",
    )
    relay.add_argument("--nats-url", help="nats://HOST:PORT (default: $EVENTGW_NATS_URL)")
    relay.add_argument("--once", action="store_true", help="drain the outbox, print a summary")
    relay.add_argument(
        "--batch-size", type=int, help="events claimed per batch (default 5000; three in flight)"
    )
    relay.add_argument("--stream", help="JetStream stream (default EVENTGW_EVENTS)")
    relay.add_argument("--subject-prefix", help="subject prefix (default eventgw.events)")
    relay.add_argument(
        "--failed-events",
        action="store_true",
        default=None,
        help="publish the failed events too, to <prefix>.failed.<project id>"
        " (default: $EVENTGW_RELAY_FAILED_EVENTS, else off)",
    )
    relay.set_defaults(func=cmd_relay)

    bench = sub.add_parser(
        "bench",
        help="ingest throughput of a gateway on a fresh database, next to the raw database limit",
    )
    bench.add_argument(
        "--database-url",
        help="postgresql://user@host:port/db: bench a fresh database on that server (dropped"
        " afterwards); default: a temporary SQLite file",
    )
    bench.add_argument("--seconds", type=float, default=5.0, help="per scenario (default 5)")
    bench.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of load before each scenario's measured window, not counted (default 1)",
    )
    bench.add_argument(
        "--scenarios",
        default="grpc-batch,grpc-stream,databuddy-batch,track",
        help="comma-separated (default: the first four of grpc-batch, grpc-stream,"
        " databuddy-batch, track, grpc-batch-keyed, grpc-client, grpc-client-build, pipeline,"
        " pipeline-relay; grpc-batch-keyed is grpc-batch with an idempotency key per request,"
        " grpc-client is grpc-batch's event sent through gateway.client, grpc-client-build the"
        " same with every event built first; pipeline is SubmitBatch load with `serve --relay`"
        " delivering to NATS JetStream, pipeline-relay the same with separate `eventgw relay`"
        " processes)",
    )
    bench.add_argument(
        "--nats-url",
        help="the NATS JetStream server of the pipeline scenarios (default: a nats-server -js"
        " of the bench's own, on a free port, stopped afterwards)",
    )
    bench.add_argument(
        "--relays",
        type=int,
        default=1,
        help="relay processes of the pipeline scenarios (default 1; more: PostgreSQL only)",
    )
    bench.add_argument(
        "--clients", type=int, default=2, help="load-generator processes per scenario (2)"
    )
    bench.add_argument(
        "--concurrency", type=int, help="requests (streams) in flight per load-generator process"
    )
    bench.add_argument(
        "--sqlite-synchronous",
        default="FULL",
        choices=("FULL", "NORMAL"),
        help="SQLite durability of the gateway and the raw limit (default FULL)",
    )
    bench.add_argument(
        "--runs",
        type=int,
        default=1,
        help="independent runs (each on a fresh gateway and database), reported as each"
        " figure's median and range and how many runs met each target (default 1)",
    )
    bench.add_argument("--json", action="store_true", help="machine-readable report")
    bench.set_defaults(func=cmd_bench)
    send.add_parser(sub)
    add_examples(sub)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, os.environ if env is None else env))
    except ConfigError as exc:
        print(f"eventgw: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"eventgw: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `eventgw events export | head`
        sys.stderr.close()
        return 0
