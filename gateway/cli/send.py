"""``eventgw send``: events into a running gateway over gRPC, through the client
(``gateway.client``): one event from the command line, or canonical events as JSON lines in
Protobuf's JSON mapping (what ``events export`` writes), so a backfill or a move between gateways
is ``eventgw events export ... | eventgw send --file -``.

An event's ``projectId``, ``dialect`` and ``receivedAt`` are left to the receiving gateway (the
key names the project); its ``id`` is kept, so sending the same file twice stores nothing twice.
Progress goes to stderr on a terminal; a JSON summary to stdout. Exit code 0 when every event was
stored or was already stored, 1 when some were rejected or left unsent, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from google.protobuf import json_format

from gateway import progress
from gateway.client import EventClient, Rejection
from gateway.pb.event_pb2 import Event

SAMPLES = 10  # rejections shown in the summary


def add_parser(sub: Any) -> None:
    send = sub.add_parser("send", help="send events to a gateway over gRPC (one, or JSON lines)")
    send.add_argument("name", nargs="?", help="the event's name (one event)")
    send.add_argument("--properties", metavar="JSON", help="the event's properties, a JSON object")
    send.add_argument("--user-id")
    send.add_argument("--anonymous-id")
    send.add_argument("--event-id", help="default: a new UUIDv7")
    send.add_argument(
        "--file", metavar="PATH", help="canonical events as JSON lines ('-': standard input)"
    )
    send.add_argument(
        "--target",
        help="HOST:PORT of the gRPC API (default: $EVENTGW_TARGET, else 127.0.0.1:50051)",
    )
    send.add_argument("--api-key", help="default: $EVENTGW_API_KEY")
    send.add_argument("--transport", choices=("unary", "stream"), default="unary")
    send.add_argument("--batch-size", type=int, default=500)
    send.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    send.add_argument("--root-cert", metavar="PEM", help="TLS with this CA")
    send.add_argument("--cert", metavar="PEM", help="client certificate (mutual TLS)")
    send.add_argument("--cert-key", metavar="PEM", help="client certificate's key")
    send.add_argument("--timeout", type=float, default=60.0, help="seconds to finish (60)")
    send.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    key = args.api_key or env.get("EVENTGW_API_KEY")
    if not key:
        print("eventgw: send needs --api-key (or EVENTGW_API_KEY)", file=sys.stderr)
        return 2
    if (args.name is None) == (args.file is None):
        print("eventgw: send takes an event NAME or --file, not both", file=sys.stderr)
        return 2
    try:
        properties = json.loads(args.properties) if args.properties else None
    except ValueError as exc:
        print(f"eventgw: --properties is not JSON: {exc}", file=sys.stderr)
        return 2
    if properties is not None and not isinstance(properties, dict):
        print("eventgw: --properties must be a JSON object", file=sys.stderr)
        return 2
    target = args.target or env.get("EVENTGW_TARGET") or "127.0.0.1:50051"
    rejected: list[Rejection] = []
    invalid: list[dict[str, Any]] = []
    client = EventClient(
        target,
        key,
        transport=args.transport,
        batch_size=args.batch_size,
        tls=args.tls,
        root_certificates=args.root_cert,
        certificate_chain=args.cert,
        private_key=args.cert_key,
        on_rejected=rejected.extend,
    )
    started = time.monotonic()
    counter = progress.Progress("sent events")
    try:
        if args.name is not None:
            client.track(
                args.name,
                properties=properties,
                user_id=args.user_id,
                anonymous_id=args.anonymous_id,
                event_id=args.event_id,
            )
            counter.add()
        else:
            source = sys.stdin if args.file == "-" else open(args.file)  # noqa: SIM115
            with source:
                for number, parsed in _events(source):
                    if isinstance(parsed, str):
                        invalid.append({"line": number, "code": "invalid_json", "message": parsed})
                    else:
                        client.send(parsed)
                    counter.add()
        finished = client.close(timeout=args.timeout)
    finally:
        client.close(timeout=0)
    counters = client.counters
    summary = {
        "target": target,
        "read": counter.count,
        "accepted": counters.accepted,
        "duplicates": counters.duplicates,
        "rejected": counters.rejected + len(invalid),
        "retried": counters.retried,
        "abandoned": counters.abandoned,
        "seconds": round(time.monotonic() - started, 3),
        "rejections": invalid[:SAMPLES]
        + [
            {"event_id": r.event_id, "code": r.code, "message": r.message, "field": r.field}
            for r in rejected[:SAMPLES]
        ][: SAMPLES - len(invalid[:SAMPLES])],
    }
    counter.done(f"{counters.accepted:,} accepted")
    print(json.dumps(summary))
    ok = finished and not invalid and not counters.rejected and not counters.abandoned
    return 0 if ok else 1


def _events(source: TextIO) -> Iterator[tuple[int, Event | str]]:
    """Each non-blank line's event, or why it is not one; what the receiving gateway sets
    itself is cleared."""
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        event = Event()
        try:
            json_format.Parse(line, event)
        except json_format.ParseError as exc:
            yield number, str(exc)[:300]
            continue
        event.ClearField("project_id")
        event.ClearField("dialect")
        event.ClearField("received_at")
        yield number, event


__all__ = ["add_parser", "cmd_send"]
