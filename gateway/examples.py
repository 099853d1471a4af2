"""Help text of the ``eventgw`` commands: the examples each ``eventgw COMMAND --help`` ends with,
attached after the parsers are built so that adding a command needs one entry here."""

from __future__ import annotations

import argparse
from typing import Any

# Examples shown by `eventgw COMMAND --help`, keyed by the command's words.
COMMAND_EXAMPLES = {
    "serve": """\
The embedded default database (sqlite:///eventgw.db in the working directory) is migrated on
start; any other database must be at the schema's head (`eventgw db upgrade`) or serve refuses.
Endpoints: the dialect routes, GET /healthz, GET /readyz, GET /metrics (Prometheus).

examples:
  eventgw serve
  eventgw serve --http 0.0.0.0:8080 --grpc 0.0.0.0:50051 --log-format text
  eventgw serve --config /etc/eventgw.toml --print-config
  EVENTGW_DATABASE_URL=postgresql://eventgw@db/eventgw eventgw serve --workers 4
  eventgw serve --relay --relay-failed-events --nats-url nats://127.0.0.1:4222
""",
    "db": """\
examples:
  eventgw db upgrade
  eventgw db upgrade --database-url postgresql://eventgw@db/eventgw
  eventgw db current
  eventgw db downgrade base
""",
    "projects": """\
examples:
  eventgw projects create "My site" --allowed-origin https://example.com --json
  eventgw projects create "Databuddy site" --id 550e8400-e29b-41d4-a716-446655440000
  eventgw projects list --json
""",
    "keys": """\
The secret of a key is printed once, by `keys create`; `keys list` shows its prefix and hint.

examples:
  eventgw keys create --project PROJECT_ID --prefix dbdy_ --json
  eventgw keys create --project PROJECT_ID --rate-limit 100/min
  eventgw keys list --project PROJECT_ID --json
  eventgw keys revoke KEY_ID
  eventgw keys set-rate-limit KEY_ID none
""",
    "events": """\
examples:
  eventgw events export --project PROJECT_ID > events.jsonl
  eventgw events export --project PROJECT_ID --since 2026-01-01T00:00:00Z --limit 10
""",
    "purge": """\
Idempotency keys are kept for idempotency_retention_seconds (default 86400) after completion.

examples:
  eventgw purge
  eventgw purge --retention 3600
""",
    "relay": """\
examples:
  eventgw relay --nats-url nats://127.0.0.1:4222
  eventgw relay --once --database-url postgresql://eventgw@db/eventgw --nats-url nats://nats:4222
  eventgw relay --failed-events --nats-url nats://127.0.0.1:4222  # refused items too
""",
    "send": """\
Events go through the client (gateway.client): batched, retried with the same idempotency key,
each event's id kept, so sending a file again stores nothing twice. A JSON summary goes to stdout.

examples:
  eventgw send order_completed --properties '{"total": 129.5}' --user-id u-42
  eventgw send --file events.jsonl --target gw.internal:50051 --tls
  eventgw events export --project PROJECT_ID | eventgw send --file - --api-key "$OTHER_KEY"
""",
    "bench": """\
examples:
  eventgw bench
  eventgw bench --seconds 5 --scenarios grpc-batch,track --json
  eventgw bench --seconds 5 --runs 9
  eventgw bench --seconds 5 --runs 3 --scenarios grpc-batch,grpc-client
  eventgw bench --database-url postgresql://eventgw@db/postgres
""",
}


def add_examples(sub: Any) -> None:
    """Give each command (and its actions) its examples, after the parsers are built."""
    for name, command in sub.choices.items():
        examples = COMMAND_EXAMPLES.get(name)
        parsers = [command]
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
        for parser in parsers:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            if examples and not parser.epilog:
                parser.epilog = examples
