"""psutil is the ``bench`` extra's, not the gateway's: ``eventgw bench`` without it exits 1 with one
line saying how to install it, and serving never loads it. Each case runs ``python -m gateway`` in
a process of its own whose imports of the named module fail as when it is not installed."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway.cli.tools import BENCH_EXTRA_MISSING
from tests.harness import ROOT

# Installed first on sys.meta_path: importing MODULE (or a submodule) fails as if it were absent.
WITHOUT = """\
import runpy, sys

class Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Absent)
sys.argv = ["eventgw", *sys.argv[1:]]
runpy.run_module("gateway", run_name="__main__", alter_sys=True)
"""


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module=module), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bench_without_psutil_says_to_install_the_extra() -> None:
    done = run_without("psutil", "bench", "--seconds", "0.1", "--json")

    assert done.returncode == 1
    assert done.stderr == "eventgw bench needs the bench extra: pip install 'eventgw[bench]'\n"
    assert done.stderr.strip() == BENCH_EXTRA_MISSING
    assert done.stdout == ""


def test_another_missing_module_is_not_taken_for_the_extra() -> None:
    done = run_without("bench.series", "bench", "--seconds", "0.1")

    assert done.returncode != 0
    assert "No module named 'bench.series'" in done.stderr
    assert BENCH_EXTRA_MISSING not in done.stderr


def test_the_gateway_serves_without_psutil() -> None:
    done = run_without("psutil", "serve", "--help")
    assert done.returncode == 0, done.stderr
    script = (
        "import json, sys\n"
        "import gateway.cli, gateway.server, gateway.workers\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    assert "gateway.cli.tools" in loaded
    assert not [m for m in loaded if m == "psutil" or m.split(".")[0] == "bench"]
