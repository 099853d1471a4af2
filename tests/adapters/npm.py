"""The Node project under ``tests/adapters/node``: its pinned packages, installed on demand.

``node_with(package)`` returns the node binary once ``npm ci`` has installed the lock file's
packages (only when ``package`` is missing or not at its pinned version), or skips the test,
saying why, when Node.js or npm is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def pinned(package: str) -> str:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    return str(manifest["dependencies"][package])


def installed(package: str) -> Path:
    return NODE_DIR / "node_modules" / package


def node_with(package: str) -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"Node.js and npm are needed to run {package}")
    manifest = installed(package) / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != pinned(package):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    assert json.loads(manifest.read_text())["version"] == pinned(package)
    return node
