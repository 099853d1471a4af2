"""The client needs only grpcio and protobuf: importing it, in a fresh interpreter where the
server's libraries cannot be imported, works and loads nothing of the server."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT

BLOCKED = (
    "aiohttp",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "msgspec",
    "orjson",
    "nats",
    "grpc_status",
    "grpc_health",
    "grpc_reflection",
    "google.rpc",
    "prometheus_client",
    "uvloop",
)
SERVER = ("gateway.storage", "gateway.ingest", "gateway.rpc", "gateway.http", "adapters")

PROGRAM = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # import raises ImportError
import gateway.client
from gateway.client import AsyncEventClient, EventClient
with EventClient("127.0.0.1:1", "egw_x") as client:
    client.track("x")
    client.close(timeout=0)
loaded = sorted(
    m for m, module in sys.modules.items()
    if module is not None and (m.startswith({SERVER!r}) or m.startswith({BLOCKED!r}))
)
print(loaded)
"""


def test_the_client_imports_with_only_grpcio_and_protobuf() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
