"""The operator's administration commands, each a short run against the database: ``db``
(schema migrations), ``projects`` and ``keys`` (tenants and their API keys; a key's secret is
printed once, by ``keys create``), ``events export`` (stored events as Protobuf-JSON lines),
``events failed`` (the items the gateway refused) and ``purge`` (expired idempotency keys, old
failed events). Output is one line per row, or one JSON object per line
with ``--json``; a missing project or key is exit code 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import migrate, progress
from gateway.cli.common import iso, load_settings, run, with_stores
from gateway.config import Settings
from gateway.retention import purge_once
from gateway.storage.engine import now_us
from gateway.storage.failed import document

# --- db ----------------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = load_settings(args, env).database_url
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
                "created_at": iso(p.created_at),
            }
            print(orjson.dumps(doc).decode() if args.json else f"{p.id}  {p.name}")
        return 0

    return run(with_stores(load_settings(args, env), action))


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

    return run(with_stores(load_settings(args, env), action))


def _key_doc(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "project_id": record.project_id,
        "prefix": record.prefix,
        "hint": record.hint,
        "scopes": list(record.scopes),
        "rate_limit": record.rate_limit,
        "created_at": iso(record.created_at),
        "revoked_at": iso(record.revoked_at),
    }


# --- events and purge --------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    since_us = None
    if args.since:
        moment = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        since_us = int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1e6)
    if args.events_command == "failed":
        return _failed(args, env, since_us)

    from google.protobuf.json_format import MessageToJson

    from gateway.pb.event_pb2 import Event

    async def action(events: Any, **_: Any) -> int:
        out = sys.stdout
        counter = progress.Progress("exported events")
        async for payload in events.export(args.project, since_us=since_us, limit=args.limit):
            out.write(MessageToJson(Event.FromString(payload), indent=None) + "\n")
            counter.add()
        out.flush()
        counter.done()
        return 0

    return run(with_stores(load_settings(args, env), action))


def _failed(args: argparse.Namespace, env: Mapping[str, str], since_us: int | None) -> int:
    """``events failed``: one line per refused item, oldest first; ``--json``: JSON lines, the
    item's bytes as ``raw`` (UTF-8 text) or ``raw_base64`` (anything else, e.g. Protobuf): each
    line is ``gateway.storage.failed.document``, what the relay publishes too."""

    async def action(failed: Any, **_: Any) -> int:
        for item in await failed.list(args.project, since_us=since_us, limit=args.limit):
            line = document(item)
            if args.json:
                print(orjson.dumps(line).decode())
            else:
                where = f" [{item.field}]" if item.field else ""
                shown = line.get("raw", f"<{item.raw_size} bytes>")
                print(
                    f"{line['received_at']} {item.dialect} {item.endpoint} {item.code}{where}:"
                    f" {item.message}  {shown[:200]}"
                )
        return 0

    return run(with_stores(load_settings(args, env), action))


def cmd_purge(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags = {}
    if args.retention is not None:
        flags["idempotency_retention_seconds"] = args.retention
    if args.event_retention is not None:
        flags["event_retention_seconds"] = args.event_retention

    async def action(
        idempotency: Any, failed: Any, settings: Settings, engine: Any, **_: Any
    ) -> int:
        progress.note("eventgw: deleting expired idempotency keys and delivered events…")
        events, keys = await purge_once(engine, idempotency, settings.event_retention_seconds)
        print(f"purged {keys} expired idempotency keys")
        print(f"purged {events} delivered events older than the retention")
        if settings.failed_event_retention_seconds > 0:
            older_than = now_us() - int(settings.failed_event_retention_seconds * 1e6)
            print(f"purged {await failed.purge(older_than)} failed events")
        return 0

    return run(with_stores(load_settings(args, env, **flags), action))
