"""The walls of the design, checked on the imports of every module of ``gateway/``,
``adapters/`` and ``bench/`` (read with ``ast``, nothing imported):

- an adapter imports no aiohttp, grpc, SQLAlchemy, and nothing of ``gateway.storage``;
- a front (``gateway.http``, ``gateway.rpc``) imports nothing of ``gateway.storage``;
- the pipeline (``gateway.model``, ``gateway.ingest``, ``gateway.commit``) imports no front and
  no adapter;
- storage imports nothing of the pipeline, the fronts or the adapters;
- delivery (``gateway.delivery``: the relay) imports nothing of the pipeline, the fronts or the
  adapters: it reads what storage holds and publishes it;
- nothing imports the bench package (which may import the gateway and the adapters) but the
  bench itself and the command that starts it, ``gateway.cli.tools``;
- the client (``gateway.client``) imports nothing of the gateway but itself and the generated
  ``gateway.pb``, and no framework but grpc (it ships to services that run no server);
- no import cycle among the modules, lazy imports included.

Each rule is also run on a small made-up graph that breaks it, so a rule that could never fail
fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "adapters", "bench")
FRAMEWORKS = ("aiohttp", "grpc", "grpc_status", "grpc_health", "grpc_reflection", "sqlalchemy")
PIPELINE = ("gateway.model", "gateway.ingest", "gateway.commit")
FRONTS = ("gateway.http", "gateway.rpc")
STORAGE = "gateway.storage"
DELIVERY = "gateway.delivery"
BENCH = "bench"
# `eventgw bench` imports it inside the command, so serving never loads it (nor psutil).
BENCH_ENTRY = "gateway.cli.tools"
CLIENT = "gateway.client"

Graph = Mapping[str, set[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, at any depth of its code; ``from a import b`` names both
    ``a`` and ``a.b`` (the latter counts where ``b`` is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    sources = [
        p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "pb" not in p.relative_to(ROOT).parts
    ]
    return {module_name(p): imports_of(p, module_name(p)) for p in sources}


def within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(graph: Graph) -> list[str]:
    """Every import that breaks a wall, as "importer -> imported"."""
    broken = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            if within(target, (BENCH,)) and not within(importer, (BENCH, BENCH_ENTRY)):
                broken.append(f"bench imported by {importer} -> {target}")
            elif within(importer, ("adapters",)) and (
                within(target, FRAMEWORKS) or within(target, (STORAGE,))
            ):
                broken.append(f"adapter {importer} -> {target}")
            elif within(importer, FRONTS) and within(target, (STORAGE,)):
                broken.append(f"front {importer} -> {target}")
            elif within(importer, PIPELINE) and within(target, (*FRONTS, "adapters")):
                broken.append(f"pipeline {importer} -> {target}")
            elif within(importer, (STORAGE,)) and within(target, (*PIPELINE, *FRONTS, "adapters")):
                broken.append(f"storage {importer} -> {target}")
            elif within(importer, (DELIVERY,)) and within(target, (*PIPELINE, *FRONTS, "adapters")):
                broken.append(f"delivery {importer} -> {target}")
            elif within(importer, (CLIENT,)) and (
                (
                    within(target, ("gateway", "adapters"))
                    and not within(target, (CLIENT, "gateway.pb"))
                )
                or (
                    within(target, FRAMEWORKS)
                    and target != "grpc"
                    and not target.startswith("grpc.")
                )
            ):
                broken.append(f"client {importer} -> {target}")
    return broken


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles among ``graph``'s own modules (one per strongly connected part)."""
    edges = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


GRAPH = project_graph()


def test_the_graph_sees_every_layer() -> None:
    for module in (
        "adapters.base",
        "gateway.model",
        "gateway.ingest",
        "gateway.http.dialects",
        "gateway.client.engine",
        "gateway.delivery.outbox",
    ):
        assert module in GRAPH
    assert "bench.run" in GRAPH["gateway.cli.tools"]
    assert "gateway.storage.schema" in GRAPH["bench.raw"]
    assert "gateway.storage.events" in GRAPH["gateway.ingest"]
    assert "gateway.model" in GRAPH["adapters.base"]


def test_no_import_breaks_a_wall() -> None:
    assert violations(GRAPH) == []


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("adapters.x", "aiohttp.web"),
        ("adapters.x", "grpc"),
        ("adapters.x", "sqlalchemy"),
        ("adapters.x", "gateway.storage.events"),
        ("gateway.http.x", "gateway.storage.idempotency"),
        ("gateway.rpc.x", "gateway.storage"),
        ("gateway.ingest", "gateway.http.dialects"),
        ("gateway.model", "adapters.base"),
        ("gateway.commit", "gateway.rpc.translate"),
        ("gateway.storage.events", "gateway.model"),
        ("gateway.storage.events", "adapters.base"),
        ("gateway.delivery.outbox", "gateway.ingest"),
        ("gateway.delivery.failed", "gateway.http.dialects"),
        ("gateway.delivery.process", "adapters.databuddy"),
        ("gateway.server", "bench.target"),
        ("gateway.cli.admin", "bench"),
        ("gateway.http.ops", "bench.report"),
        ("adapters.x", "bench.payloads"),
        ("gateway.client.engine", "gateway.errors"),
        ("gateway.client", "gateway.rpc.translate"),
        ("gateway.client.retry", "grpc_status"),
        ("gateway.client.x", "aiohttp"),
    ],
)
def test_each_wall_holds_against_an_import_that_breaks_it(importer: str, imported: str) -> None:
    assert len(violations({importer: {imported}})) == 1


def test_the_bench_may_import_the_gateway_and_only_its_command_imports_the_bench() -> None:
    graph = {
        "bench.run": {"gateway.migrate", "gateway.storage.schema", "adapters.base", "bench.load"},
        "bench.load": {"gateway.pb.gateway_pb2"},
        BENCH_ENTRY: {"bench.run"},
    }
    assert violations(graph) == []


def test_the_command_imports_the_bench_only_when_it_runs() -> None:
    tools = ROOT / "gateway" / "cli" / "tools.py"
    top_level = imports_of_module_body(tools)
    assert not [m for m in top_level if within(m, (BENCH,))]


def imports_of_module_body(path: Path) -> set[str]:
    """The modules ``path`` imports when it is itself imported (not those inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_a_cycle_is_found_however_long() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_relative_imports_resolve_to_their_module(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("from . import sibling\nfrom .storage import events\n")
    assert {"gateway.sibling", "gateway.storage.events"} <= imports_of(source, "gateway.mod")
