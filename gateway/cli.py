"""The operator's command line: ``eventgw`` (also ``python -m gateway``).

Every command takes ``--database-url`` (default: ``EVENTGW_DATABASE_URL``, else the SQLite file
``eventgw.db`` in the working directory) and ``--config FILE`` (a TOML file of settings, default
``$EVENTGW_CONFIG``; flags win over the environment, which wins over the file). Run
``eventgw COMMAND --help`` for details and examples. Long operations (migrations, export, purge)
report progress on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import migrate, progress
from gateway.config import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    Settings,
    format_toml,
    parse_hostport,
)
from gateway.examples import add_examples
from gateway.storage.engine import create_engine

EXAMPLES = """\
examples:
  eventgw serve --http 0.0.0.0:8080 --grpc 0.0.0.0:50051
  eventgw serve --config /etc/eventgw.toml --print-config
  eventgw db upgrade
  eventgw projects create "My site" --allowed-origin https://example.com --json
  eventgw keys create --project PROJECT_ID --prefix dbdy_ --rate-limit 100/min --json
  eventgw keys revoke KEY_ID
  eventgw events export --project PROJECT_ID --since 2026-01-01T00:00:00Z --limit 10
  eventgw purge
  eventgw bench --seconds 5 --json
  eventgw serve --workers 4 --database-url postgresql://eventgw@db/eventgw
  eventgw relay --database-url postgresql://eventgw@db/eventgw --nats-url nats://127.0.0.1:4222
"""


class StartupError(Exception):
    """``serve`` cannot start (the message says what to do)."""


def _settings(args: argparse.Namespace, env: Mapping[str, str], **flags: Any) -> Settings:
    return Settings.load(
        env, config_file=getattr(args, "config", None), database_url=args.database_url, **flags
    )


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


async def _with_stores(settings: Settings, action: Callable[..., Coroutine[Any, Any, int]]) -> int:
    from gateway.storage.events import EventStore
    from gateway.storage.idempotency import IdempotencyStore
    from gateway.storage.tenants import TenantStore

    engine = create_engine(settings)
    try:
        return await action(
            tenants=TenantStore(engine),
            events=EventStore(engine),
            idempotency=IdempotencyStore(
                engine,
                retention_s=settings.idempotency_retention_seconds,
                lock_timeout_s=settings.idempotency_lock_timeout_seconds,
            ),
        )
    finally:
        await engine.dispose()


def _iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat()


# --- serve -------------------------------------------------------------------------------------


async def _prepare(settings: Settings, out: Any) -> None:
    """Bring the schema to head (the embedded default, ``sqlite:///eventgw.db``, only) or refuse
    to start (any other database whose schema is not at head: its operator migrates it, with
    ``eventgw db upgrade``), and create a default project and key when the database has none."""
    engine = create_engine(settings)
    try:
        revision = await migrate.current_revision(engine)
        head = migrate.head_revision()
        if revision != head:
            if settings.database_url == DEFAULT_DATABASE_URL:
                with progress.migration_steps():
                    await asyncio.to_thread(migrate.upgrade, settings.database_url)
            elif revision is not None and not _known_revision(revision):
                raise StartupError(
                    f"the database schema is at revision {revision}, which this eventgw does not"
                    f" know (head is {head}): was it migrated by a newer version?"
                )
            else:
                raise StartupError(
                    f"the database schema is at {revision or 'nothing (an empty database)'},"
                    f" head is {head}: run `eventgw db upgrade` first (with the same"
                    " --database-url or --config)"
                )
        from gateway.storage.tenants import TenantStore

        tenants = TenantStore(engine)
        if not await tenants.list_projects():
            project = await tenants.create_project("default")
            record, secret = await tenants.create_key(project.id)
            print(
                "eventgw: the database had no project; created one with an API key.\n"
                "         The key is shown only this once: keep it.\n"
                f"  project id: {project.id}\n"
                f"  api key:    {secret}\n"
                f"  key id:     {record.id}",
                file=out,
                flush=True,
            )
    finally:
        await engine.dispose()


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return any(r.revision == revision for r in script.walk_revisions())


def cmd_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway import logs
    from gateway.server import run, run_forever

    flags: dict[str, Any] = {"log_format": args.log_format, "log_level": args.log_level}
    if args.http:
        flags["http_host"], flags["http_port"] = parse_hostport(args.http)
    if args.grpc:
        flags["grpc_host"], flags["grpc_port"] = parse_hostport(args.grpc)
    flags["workers"] = args.workers
    flags["nats_url"] = args.nats_url
    settings = _settings(args, env, **flags)
    if args.print_config:
        sys.stdout.write(format_toml(settings.describe()))
        return 0
    if args.relay and not settings.nats_url:
        raise ConfigError("serve --relay needs a NATS URL: --nats-url or EVENTGW_NATS_URL")
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(_prepare(settings, sys.stdout))
    if settings.workers > 1 or args.relay:
        from gateway.workers import supervise

        return supervise(settings, relay=args.relay)
    run_forever(run(settings))
    return 0


# --- relay -------------------------------------------------------------------------------------


def cmd_relay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway import logs
    from gateway.relay import serve_relay

    settings = _settings(
        args,
        env,
        nats_url=args.nats_url,
        nats_stream=args.stream,
        nats_subject_prefix=args.subject_prefix,
        relay_batch_size=args.batch_size,
    )
    logs.configure(settings.log_level, settings.log_format)
    return _run(serve_relay(settings, once=args.once, out=sys.stdout))


# --- db ----------------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = _settings(args, env).database_url
    if args.db_command in ("upgrade", "downgrade"):
        progress.note(f"eventgw: {args.db_command} to {args.revision}…")
        with progress.migration_steps():
            if args.db_command == "upgrade":
                migrate.upgrade(url, args.revision)
            else:
                migrate.downgrade(url, args.revision)
        progress.note("eventgw: done")
    elif args.db_command == "current":
        migrate.current(url)
    else:
        migrate.history(url)
    return 0


# --- projects and keys -------------------------------------------------------------------------


def cmd_projects(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async def action(tenants: Any, **_: Any) -> int:
        if args.projects_command == "create":
            project = await tenants.create_project(
                args.name, allowed_origins=args.allowed_origin or (), project_id=args.id
            )
            rows = [project]
        else:
            rows = await tenants.list_projects()
        for p in rows:
            doc = {
                "id": p.id,
                "name": p.name,
                "allowed_origins": list(p.allowed_origins),
                "active": p.active,
                "created_at": _iso(p.created_at),
            }
            print(orjson.dumps(doc).decode() if args.json else f"{p.id}  {p.name}")
        return 0

    return _run(_with_stores(_settings(args, env), action))


def cmd_keys(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway.ratelimit import parse_rate

    async def action(tenants: Any, **_: Any) -> int:
        if args.keys_command == "create":
            if args.rate_limit:
                parse_rate(args.rate_limit)
            try:
                record, secret = await tenants.create_key(
                    args.project,
                    scopes=args.scope or ("track:events",),
                    prefix=args.prefix,
                    rate_limit=args.rate_limit,
                )
            except LookupError as exc:
                print(f"eventgw: {exc.args[0]}", file=sys.stderr)
                return 1
            doc = _key_doc(record) | {"key": secret}
            print(orjson.dumps(doc).decode() if args.json else f"{record.id}  {secret}")
            return 0
        if args.keys_command == "list":
            for record in await tenants.list_keys(args.project):
                doc = _key_doc(record)
                print(
                    orjson.dumps(doc).decode()
                    if args.json
                    else f"{record.id}  {record.prefix}…{record.hint}  {' '.join(record.scopes)}"
                    f"  {'revoked' if record.revoked_at else 'active'}"
                )
            return 0
        if args.keys_command == "set-rate-limit":
            limit = None if args.rate_limit in ("", "none") else args.rate_limit
            if limit:
                parse_rate(limit)
            found = await tenants.set_rate_limit(args.key_id, limit)
        else:
            found = await tenants.revoke_key(args.key_id)
        if not found:
            print(f"eventgw: no active key {args.key_id}", file=sys.stderr)
            return 1
        return 0

    return _run(_with_stores(_settings(args, env), action))


def _key_doc(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "project_id": record.project_id,
        "prefix": record.prefix,
        "hint": record.hint,
        "scopes": list(record.scopes),
        "rate_limit": record.rate_limit,
        "created_at": _iso(record.created_at),
        "revoked_at": _iso(record.revoked_at),
    }


# --- events and purge --------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from google.protobuf.json_format import MessageToJson

    from gateway.pb.event_pb2 import Event

    since_us = None
    if args.since:
        moment = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        since_us = int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1e6)

    async def action(events: Any, **_: Any) -> int:
        out = sys.stdout
        counter = progress.Progress("exported events")
        async for payload in events.export(args.project, since_us=since_us, limit=args.limit):
            out.write(MessageToJson(Event.FromString(payload), indent=None) + "\n")
            counter.add()
        out.flush()
        counter.done()
        return 0

    return _run(_with_stores(_settings(args, env), action))


def cmd_purge(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags = {}
    if args.retention is not None:
        flags["idempotency_retention_seconds"] = args.retention

    async def action(idempotency: Any, **_: Any) -> int:
        progress.note("eventgw: deleting expired idempotency keys…")
        print(f"purged {await idempotency.purge()} expired idempotency keys")
        return 0

    return _run(_with_stores(_settings(args, env, **flags), action))


# --- bench -------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway import bench

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    options = bench.BenchOptions(
        seconds=args.seconds,
        database_url=args.database_url,
        scenarios=scenarios or bench.SCENARIOS,
        clients=args.clients,
        concurrency=args.concurrency,
        sqlite_synchronous=args.sqlite_synchronous,
    )
    return bench.main(options, as_json=args.json, out=sys.stdout)


# --- parser ------------------------------------------------------------------------------------


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

    events = sub.add_parser("events", help="export stored events as JSON lines")
    esub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    export = esub.add_parser(
        "export",
        parents=[common],
        help="stored canonical events as JSON lines (Protobuf JSON mapping)",
    )
    export.add_argument("--project", required=True)
    export.add_argument("--since", help="ISO-8601 receive time")
    export.add_argument("--limit", type=int)
    events.set_defaults(func=cmd_events)

    purge = sub.add_parser("purge", parents=[common], help="delete expired idempotency keys")
    purge.add_argument("--retention", type=float, help="seconds a key is kept (default 86400)")
    purge.set_defaults(func=cmd_purge)

    relay = sub.add_parser(
        "relay",
        parents=[common],
        help="publish committed events to NATS JetStream (the outbox relay)",
    )
    relay.add_argument("--nats-url", help="nats://HOST:PORT (default: $EVENTGW_NATS_URL)")
    relay.add_argument("--once", action="store_true", help="drain the outbox, print a summary")
    relay.add_argument("--batch-size", type=int, help="events claimed per batch (default 1000)")
    relay.add_argument("--stream", help="JetStream stream (default EVENTGW_EVENTS)")
    relay.add_argument("--subject-prefix", help="subject prefix (default eventgw.events)")
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
        "--scenarios",
        default="grpc-batch,grpc-stream,databuddy-batch,track",
        help="comma-separated (default: all four)",
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
    bench.add_argument("--json", action="store_true", help="machine-readable report")
    bench.set_defaults(func=cmd_bench)
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
