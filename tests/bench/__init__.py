"""Tests of ``eventgw bench``; ``run_bench_cli`` runs it as an operator does."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson

from tests.harness import ROOT


def run_bench_cli(*args: str) -> tuple[Any, bytes]:
    """``python -m gateway bench --json ARGS`` in a process of its own: (report, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return orjson.loads(done.stdout), done.stderr
