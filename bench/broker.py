"""The NATS JetStream server of the pipeline scenarios: the one of ``--nats-url``, or a
``nats-server -js`` of the bench's own (on ``PATH``) on a free loopback port with its store in a
temporary directory, stopped and removed afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nats_server(url: str | None) -> Iterator[str]:
    """``url`` as it is, or (``None``) the URL of a ``nats-server -js`` started here for the
    duration of the block."""
    if url is not None:
        yield url
        return
    binary = shutil.which("nats-server")
    if binary is None:
        raise RuntimeError("the pipeline scenarios need nats-server on PATH, or --nats-url")
    store = Path(tempfile.mkdtemp(prefix="eventgw-bench-nats-"))
    port = _free_port()
    log = (store / "nats-server.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store / "jetstream")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {(store / 'nats-server.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nats-server did not start listening") from None
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(store, ignore_errors=True)
