"""The Appizer dialect (seed 002 and the vendor's API reference), as a package: ``adapter`` (routes
and the way of each through a request), ``events`` (event objects), ``envelope`` (the error
envelope).
"""

from __future__ import annotations

from adapters.appizer.adapter import Appizer

__all__ = ["Appizer"]
