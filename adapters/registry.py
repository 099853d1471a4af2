"""The route table built from an explicit list of adapters; duplicate names or routes are refused.

``Registry.match(method, path)`` finds the adapter and route for a request, or says which dialect
owns the path (by its prefixes) so that a 404 or 405 is rendered in that dialect's envelope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapters.base import Adapter, Route


class RegistryError(ValueError):
    """The adapter list is inconsistent (a name, route or prefix claimed twice)."""


@dataclass(frozen=True, kw_only=True)
class Match:
    adapter: Adapter | None
    route: Route | None
    allowed_methods: tuple[str, ...] = ()


class Registry:
    def __init__(self, adapters: Iterable[Adapter]) -> None:
        self.adapters: dict[str, Adapter] = {}
        self.routes: dict[tuple[str, str], tuple[Adapter, Route]] = {}
        self._paths: dict[str, list[str]] = {}
        self._prefixes: list[tuple[str, Adapter]] = []
        for adapter in adapters:
            if adapter.name in self.adapters:
                raise RegistryError(f"adapter name {adapter.name!r} is listed twice")
            self.adapters[adapter.name] = adapter
            for route in adapter.routes:
                key = (route.method, route.path)
                if key in self.routes:
                    owner = self.routes[key][0].name
                    raise RegistryError(
                        f"{route.method} {route.path} claimed by {owner} and {adapter.name}"
                    )
                self.routes[key] = (adapter, route)
                self._paths.setdefault(route.path, []).append(route.method)
            for prefix in adapter.prefixes:
                if any(prefix == p for p, _ in self._prefixes):
                    raise RegistryError(f"prefix {prefix!r} claimed twice")
                self._prefixes.append((prefix, adapter))
        # Longest prefix first, so that /api/v1/events wins over /api/v1.
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def owner(self, path: str) -> Adapter | None:
        for prefix, adapter in self._prefixes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return adapter
        return None

    def match(self, method: str, path: str) -> Match:
        found = self.routes.get((method, path))
        if found is not None:
            return Match(adapter=found[0], route=found[1])
        methods = self._paths.get(path)
        if methods:
            adapter = self.routes[(methods[0], path)][0]
            return Match(adapter=adapter, route=None, allowed_methods=tuple(methods))
        return Match(adapter=self.owner(path), route=None)
