"""Progress of long commands on a terminal: a counter rewritten in place on stderr.

Silent when stderr is not a terminal (a pipe, a log file, CI), so scripts see only the results
on stdout. Redraws at most ten times a second, so counting costs nothing per item.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import TextIO


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.count = 0
        self.interval = interval
        self._started = time.monotonic()
        self._drawn = 0.0

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.enabled and (now := time.monotonic()) - self._drawn >= self.interval:
            self._drawn = now
            self._draw()

    def done(self, summary: str | None = None) -> None:
        if self.enabled:
            self._draw()
            if summary:
                self.stream.write(f" — {summary}")
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self._started
        self.stream.write(f"\r{self.label}: {self.count:,} ({elapsed:.1f} s)")
        self.stream.flush()


def note(message: str, *, stream: TextIO | None = None) -> None:
    """One line on stderr, when it is a terminal."""
    out = stream or sys.stderr
    if out.isatty():
        out.write(message + "\n")
        out.flush()


@contextlib.contextmanager
def migration_steps(*, stream: TextIO | None = None) -> Iterator[None]:
    """Show Alembic's "Running upgrade A -> B" lines on a terminal while migrations run."""
    out = stream or sys.stderr
    if not out.isatty():
        yield
        return
    logger = logging.getLogger("alembic.runtime.migration")
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    handler.addFilter(lambda record: record.getMessage().startswith("Running "))
    previous, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        logger.propagate = propagate
