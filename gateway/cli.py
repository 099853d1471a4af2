"""The operator's command line: ``eventgw`` (also ``python -m gateway``).

Every command takes ``--database-url`` (default: ``EVENTGW_DATABASE_URL``, else the SQLite file
``eventgw.db`` in the working directory). Run ``eventgw COMMAND --help`` for details.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import migrate
from gateway.config import ConfigError, Settings, parse_hostport
from gateway.storage.engine import create_engine

EXAMPLES = """\
examples:
  eventgw serve --http 0.0.0.0:8080 --grpc 0.0.0.0:50051
  eventgw db upgrade
  eventgw projects create "My site" --allowed-origin https://example.com --json
  eventgw keys create --project PROJECT_ID --prefix dbdy_ --rate-limit 100/min --json
  eventgw keys revoke KEY_ID
  eventgw events export --project PROJECT_ID --since 2026-01-01T00:00:00Z --limit 10
  eventgw purge
"""


def _settings(args: argparse.Namespace, env: Mapping[str, str], **flags: Any) -> Settings:
    return Settings.load(env, database_url=args.database_url, **flags)


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
    """Bring the schema to head (embedded SQLite) or refuse to start (any other database behind
    head), and create a default project and key when the database has none."""
    engine = create_engine(settings)
    try:
        revision = await migrate.current_revision(engine)
        head = migrate.head_revision()
        if revision != head:
            if settings.database_url.startswith("sqlite"):
                await asyncio.to_thread(migrate.upgrade, settings.database_url)
            else:
                raise SystemExit(
                    f"eventgw: the database schema is at {revision or 'nothing'}, head is {head}:"
                    " run `eventgw db upgrade` first"
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


def cmd_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway.server import run, run_forever

    flags: dict[str, Any] = {}
    if args.http:
        flags["http_host"], flags["http_port"] = parse_hostport(args.http)
    if args.grpc:
        flags["grpc_host"], flags["grpc_port"] = parse_hostport(args.grpc)
    flags["workers"] = args.workers
    settings = _settings(args, env, **flags)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_prepare(settings, sys.stdout))
    run_forever(run(settings))
    return 0


# --- db ----------------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = _settings(args, env).database_url
    if args.db_command == "upgrade":
        migrate.upgrade(url, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(url, args.revision)
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
        async for payload in events.export(args.project, since_us=since_us, limit=args.limit):
            out.write(MessageToJson(Event.FromString(payload), indent=None) + "\n")
        out.flush()
        return 0

    return _run(_with_stores(_settings(args, env), action))


def cmd_purge(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags = {}
    if args.retention is not None:
        flags["idempotency_retention_seconds"] = args.retention

    async def action(idempotency: Any, **_: Any) -> int:
        print(f"purged {await idempotency.purge()} expired idempotency keys")
        return 0

    return _run(_with_stores(_settings(args, env, **flags), action))


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="sqlite:///path or postgresql://user@host:port/db"
        " (default: $EVENTGW_DATABASE_URL, else sqlite:///eventgw.db)",
    )
    parser = argparse.ArgumentParser(
        prog="eventgw",
        description="A gRPC-fronted multi-protocol event gateway.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="serve HTTP and gRPC")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address (127.0.0.1:8080)")
    serve.add_argument("--grpc", metavar="HOST:PORT", help="gRPC listen address (127.0.0.1:50051)")
    serve.add_argument("--workers", type=int, default=None, help="processes sharing the ports")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="schema migrations (Alembic)")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", parents=[common], help="upgrade to REVISION (default head)")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", parents=[common], help="downgrade to REVISION")
    down.add_argument("revision")
    dbsub.add_parser("current", parents=[common], help="show the current revision")
    dbsub.add_parser("history", parents=[common], help="list the migrations")
    db.set_defaults(func=cmd_db)

    projects = sub.add_parser("projects", help="tenants")
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

    keys = sub.add_parser("keys", help="API keys")
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

    events = sub.add_parser("events", help="stored events")
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
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, os.environ if env is None else env))
    except ConfigError as exc:
        print(f"eventgw: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `eventgw events export | head`
        sys.stderr.close()
        return 0
