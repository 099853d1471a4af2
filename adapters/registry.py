"""The route table built from an explicit list of adapters; duplicate names or routes are refused.

``Registry.match(method, path)`` finds the adapter and route for a request, or says which dialect
owns the path (by its prefixes) so that a 404 or 405 is rendered in that dialect's envelope. A
route path may hold ``{name}`` parameters, each matching one path segment
(``/v1/projects/{writeKey}/settings``); exact paths are matched first.
"""

from __future__ import annotations

import re
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
        self._templates: list[tuple[re.Pattern[str], Adapter, Route]] = []
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
                if "{" in route.path:
                    self._templates.append((template(route.path), adapter, route))
                else:
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
        templated = [(a, r) for pattern, a, r in self._templates if pattern.fullmatch(path)]
        for adapter, route in templated:
            if route.method == method:
                return Match(adapter=adapter, route=route)
        if templated:
            allowed = tuple(r.method for _, r in templated)
            return Match(adapter=templated[0][0], route=None, allowed_methods=allowed)
        return Match(adapter=self.owner(path), route=None)


def template(path: str) -> re.Pattern[str]:
    """``/v1/projects/{writeKey}/settings`` as a pattern with one named group per parameter."""
    parts = re.split(r"\{(\w+)\}", path)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(pattern)


def parameters(route: Route, path: str) -> dict[str, str]:
    """The values of ``route``'s ``{name}`` parameters in ``path`` (empty when it has none)."""
    found = template(route.path).fullmatch(path) if "{" in route.path else None
    return found.groupdict() if found else {}
