"""The VibeFollow dialect (seed 004 and the vendor's API reference), as a package: ``adapter``
(routes and the way of each through a request), ``events`` (event records), ``envelope`` (the
error envelope and the per-record bulk answer).
"""

from __future__ import annotations

from adapters.vibefollow.adapter import VibeFollow

__all__ = ["VibeFollow"]
