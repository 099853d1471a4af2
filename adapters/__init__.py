"""REST dialect adapters: one module per vendor API, translating to the canonical ``Event``.

The list below is the only place adapters are registered. Adding a dialect is one module here,
one line in ``default_adapters`` and its golden cases under ``tests/adapters/<dialect>/golden/``.
"""

from __future__ import annotations

from adapters.appizer import Appizer
from adapters.base import Adapter
from adapters.databuddy import Databuddy
from adapters.ours import OursPrivacy
from adapters.registry import Registry
from adapters.segment import Segment
from adapters.vibefollow import VibeFollow


def default_adapters() -> tuple[Adapter, ...]:
    return (Databuddy(), OursPrivacy(), Appizer(), VibeFollow(), Segment())


def default_registry() -> Registry:
    return Registry(default_adapters())


__all__ = ["Adapter", "Registry", "default_adapters", "default_registry"]
