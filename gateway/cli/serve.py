"""``eventgw serve``: resolve the settings (or print them with ``--print-config``), bring the
database to a servable state before any listener opens (:func:`_prepare`: the schema check, the
embedded default's automatic migration, the default project and key of an empty database), then
run one process or a supervised group of workers, optionally with the outbox relay."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from gateway import migrate, progress
from gateway.cli.common import StartupError, load_settings
from gateway.config import DEFAULT_DATABASE_URL, ConfigError, Settings, parse_hostport
from gateway.settings_text import format_toml
from gateway.storage.engine import create_engine


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
    if args.ops:
        flags["ops_host"], flags["ops_port"] = parse_hostport(args.ops)
    for name in ("tls_cert", "tls_key", "grpc_tls_cert", "grpc_tls_key", "grpc_client_ca"):
        flags[name] = getattr(args, name)
    flags["workers"] = args.workers
    flags["nats_url"] = args.nats_url
    flags["relay_failed_events"] = args.relay_failed_events
    flags["relay_processes"] = args.relay_processes
    settings = load_settings(args, env, **flags)
    if args.print_config:
        sys.stdout.write(format_toml(settings.describe()))
        return 0
    if args.relay and not settings.nats_url:
        raise ConfigError("serve --relay needs a NATS URL: --nats-url or EVENTGW_NATS_URL")
    if args.relay_failed_events and not args.relay:
        raise ConfigError("serve --relay-failed-events publishes through the relay: add --relay")
    logs.configure(settings.log_level, settings.log_format)
    from gateway.tls import Certificates

    Certificates(settings)  # unreadable or mismatched TLS files: refuse now, not in each worker
    asyncio.run(_prepare(settings, sys.stdout))
    if settings.workers > 1 or args.relay:
        from gateway.workers import supervise

        return supervise(settings, relay=args.relay)
    run_forever(run(settings))
    return 0
