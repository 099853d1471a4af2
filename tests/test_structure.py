"""Structure rules: adapters stay pure, are listed explicitly and once, and modules say their role.

- ``adapters/`` imports nothing from aiohttp, grpc or SQLAlchemy, directly (scanned with ``ast``)
  or transitively (``sys.modules`` of a fresh interpreter that imports every adapter module);
- the registry refuses a name, route or prefix claimed twice; ``default_adapters()`` lists every
  adapter class once;
- every module of ``gateway/``, ``adapters/`` and ``bench/`` opens with a docstring.
"""

from __future__ import annotations

import ast
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import adapters
from adapters import default_adapters, default_registry
from adapters.base import Route
from adapters.fake import FakeAdapter
from adapters.registry import Registry, RegistryError

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "adapters"
# I/O frameworks an adapter must not touch (the gRPC helper packages count as grpc).
FORBIDDEN = ("aiohttp", "grpc", "sqlalchemy", "grpc_status", "grpc_health", "grpc_reflection")


def _forbidden(module: str) -> bool:
    return module.split(".")[0] in FORBIDDEN or module.endswith("_pb2_grpc")


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def adapter_sources() -> list[Path]:
    """Every module of ``adapters/``, a dialect's package's modules included."""
    return sorted(ADAPTERS.rglob("*.py"))


def test_the_scan_sees_every_adapter_module() -> None:
    # A package counts by its directory's name (``vibefollow/__init__.py`` is "vibefollow").
    names = {p.parent.name if p.stem == "__init__" else p.stem for p in adapter_sources()}
    assert {"base", "registry", "fields", "databuddy", "ours", "appizer", "vibefollow"} <= names


@pytest.mark.parametrize("path", adapter_sources(), ids=lambda p: str(p.relative_to(ADAPTERS)))
def test_adapter_source_imports_no_io_framework(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [name for name in imported_modules(tree) if _forbidden(name)]
    assert not bad, f"{path.name} imports {bad}"
    # No dynamic imports around the rule either.
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
        in ("__import__", "import_module")
    ]
    assert not calls, f"{path.name} imports dynamically"


def test_the_ast_scan_catches_a_forbidden_import() -> None:
    tree = ast.parse("from aiohttp import web\nimport sqlalchemy.orm\nfrom grpc import aio\n")
    assert [n for n in imported_modules(tree) if _forbidden(n)] == [
        "aiohttp",
        "aiohttp.web",
        "sqlalchemy.orm",
        "grpc",
        "grpc.aio",
    ]


def test_importing_every_adapter_loads_no_io_framework() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import adapters\n"
        "for m in pkgutil.iter_modules(adapters.__path__):\n"
        "    importlib.import_module('adapters.' + m.name)\n"
        "adapters.default_registry()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert "adapters.databuddy" in loaded and "adapters.vibefollow" in loaded
    assert not [m for m in loaded if _forbidden(m)]


# -- the explicit list and the registry --------------------------------------------------------


def test_default_adapters_have_unique_names_and_build_a_registry() -> None:
    names = [a.name for a in default_adapters()]
    assert len(names) == len(set(names)) == 5
    assert set(default_registry().adapters) == set(names)


def test_every_adapter_class_is_listed() -> None:
    """An adapter module added without its line in ``default_adapters`` fails here (the fake
    dialect for tests is the one adapter never served)."""
    listed = {type(a) for a in default_adapters()} | {FakeAdapter}
    found = set()
    for info in pkgutil.iter_modules(adapters.__path__):
        module = __import__(f"adapters.{info.name}", fromlist=["_"])
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if getattr(cls, "_is_protocol", False):  # the Adapter protocol itself
                continue
            # Defined in this module, or in a module of this package.
            own = f"{cls.__module__}.".startswith(f"{module.__name__}.")
            if own and all(
                callable(getattr(cls, m, None)) for m in ("translate", "render", "render_error")
            ):
                found.add(cls)
    assert found == listed


def test_registry_refuses_a_duplicate_name() -> None:
    with pytest.raises(RegistryError, match="listed twice"):
        Registry([FakeAdapter("a", routes=()), FakeAdapter("a", routes=())])


def test_registry_refuses_a_route_claimed_twice() -> None:
    one = FakeAdapter("a", routes=(Route(path="/x", name="x"),))
    two = FakeAdapter("b", routes=(Route(path="/x", name="y"),))
    with pytest.raises(RegistryError, match="POST /x"):
        Registry([one, two])


def test_registry_refuses_a_prefix_claimed_twice() -> None:
    with pytest.raises(RegistryError, match="prefix"):
        Registry(
            [
                FakeAdapter("a", routes=(), prefixes=("/v9",)),
                FakeAdapter("b", routes=(), prefixes=("/v9",)),
            ]
        )


def test_registry_accepts_distinct_adapters_and_the_same_path_on_another_method() -> None:
    one = FakeAdapter("a", routes=(Route(path="/x", name="x"),), prefixes=("/v9",))
    two = FakeAdapter("b", routes=(Route(path="/x", name="x", method="PUT"),), prefixes=("/v8",))
    registry = Registry([one, two])
    assert registry.match("PUT", "/x").adapter is two
    assert registry.owner("/v9/anything") is one


def test_default_routes_are_unique_and_owned() -> None:
    listed = default_adapters()
    registry = Registry(listed)
    for adapter in listed:
        for route in adapter.routes:
            match = registry.match(route.method, route.path)
            assert (match.adapter, match.route) == (adapter, route)


# -- module docstrings -------------------------------------------------------------------------


def python_modules() -> list[Path]:
    return sorted(
        [
            *(ROOT / "gateway").rglob("*.py"),
            *ADAPTERS.rglob("*.py"),
            *(ROOT / "bench").rglob("*.py"),
        ]
    )


@pytest.mark.parametrize("path", python_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_has_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(), filename=str(path)))
    assert docstring and docstring.strip(), f"{path.relative_to(ROOT)} has no module docstring"
