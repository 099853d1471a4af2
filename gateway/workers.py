"""The supervisor behind ``eventgw serve --workers N`` (and ``--relay``): N worker processes, each
running the whole gateway (``server.run``) on the same HTTP and gRPC ports, which the kernel
shares among them (``SO_REUSEPORT``), and optionally the outbox relay (``relay_processes`` of them).

The supervisor does no serving itself. It starts the children (``spawn``: a fresh interpreter, no
inherited event loop, gRPC or database state), replaces any that dies (after a back-off when it
dies young, so a crash loop does not spin), and on SIGTERM or SIGINT forwards SIGTERM to every
child and waits: each worker stops accepting, finishes its in-flight requests and commits what it
has queued before it exits, so nothing acknowledged is lost. The caller migrates the schema and
bootstraps the default project once, before ``supervise``.

Metrics span the processes (``gateway.metrics``' multi-process contract): the supervisor gives the
children a metrics directory (``Settings.prometheus_multiproc_dir``, else a temporary one it
creates and removes), exported as ``PROMETHEUS_MULTIPROC_DIR`` before they start, and tells
``gateway.metrics`` when a child exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gateway import logs
from gateway.config import ENV_ONLY, Settings

log = logging.getLogger(__name__)

# A child that lived less than this is restarted after a growing delay (up to MAX_BACKOFF).
HEALTHY_AFTER_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 10.0
# SIGTERM → exit: the server's drain and the gRPC grace, plus a margin.
STOP_TIMEOUT_SECONDS = 40.0


def _die_with_parent() -> None:
    """Linux: have the kernel send this child SIGTERM (a graceful stop) if the supervisor dies,
    even by SIGKILL, so no worker outlives it serving unsupervised."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(settings: Settings, ready: multiprocessing.connection.Connection) -> None:
    from gateway.server import Bound, run, run_forever

    _die_with_parent()
    logs.configure(settings.log_level, settings.log_format)

    def on_ready(_: Bound) -> None:
        ready.send(os.getpid())
        ready.close()

    run_forever(run(settings, on_ready=on_ready))


def _relay(settings: Settings, ready: multiprocessing.connection.Connection) -> None:
    from gateway.delivery.process import serve_relay
    from gateway.server import run_forever

    _die_with_parent()
    logs.configure(settings.log_level, settings.log_format)
    ready.send(os.getpid())
    ready.close()

    async def main() -> None:
        await serve_relay(settings)

    run_forever(main())


@dataclass(kw_only=True)
class _Slot:
    name: str
    target: Callable[[Settings, multiprocessing.connection.Connection], None]
    process: BaseProcess | None = None
    ready: multiprocessing.connection.Connection | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = 0.0  # None: running
    serving: bool = False


def _resolve_port(host: str, port: int) -> int:
    """Port 0 means "any free port": pick one here, so that every worker binds the same."""
    if port:
        return port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Supervisor:
    def __init__(self, settings: Settings, *, relay: bool = False) -> None:
        self.settings = settings.replace(
            http_port=_resolve_port(settings.http_host, settings.http_port),
            grpc_port=_resolve_port(settings.grpc_host, settings.grpc_port),
            ops_port=_resolve_port(settings.ops_host, settings.ops_port),
        )
        self._metrics_dir, self._own_metrics_dir = settings.prometheus_multiproc_dir, False
        if self._metrics_dir is None:
            self._metrics_dir, self._own_metrics_dir = tempfile.mkdtemp(prefix="eventgw-m-"), True
        else:
            for stale in Path(self._metrics_dir).glob("*.db"):  # a previous run's samples
                stale.unlink()
        self.settings = self.settings.replace(prometheus_multiproc_dir=self._metrics_dir)
        self._ctx = multiprocessing.get_context("spawn")
        self.slots = [
            _Slot(name=f"worker-{i + 1}", target=_worker) for i in range(settings.workers)
        ]
        if relay:
            n = settings.relay_processes
            names = ["relay"] if n == 1 else [f"relay-{i + 1}" for i in range(n)]
            self.slots += [_Slot(name=name, target=_relay) for name in names]
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._announced = False

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; 0 when every child stopped cleanly."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._forward)
        variable = ENV_ONLY["prometheus_multiproc_dir"]
        inherited = os.environ.get(variable)
        # Spawned children inherit the environment: prometheus_client reads this on import.
        os.environ[variable] = str(self._metrics_dir)
        try:
            while not self._stopping:
                self._start_due()
                self._wait(self._next_timeout())
            return self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
            if inherited is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = inherited
            if self._own_metrics_dir:
                shutil.rmtree(str(self._metrics_dir), ignore_errors=True)

    def _forward(self, signum: int, _frame: Any) -> None:
        """SIGHUP (reload the TLS certificates): to every running worker."""
        for slot in self.slots:
            if slot.process is not None and slot.restart_at is None and slot.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self._stopping:
            log.info("%s: stopping the workers", signal.Signals(signum).name)
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self._stopping:
                receive, send = self._ctx.Pipe(duplex=False)
                process = self._ctx.Process(
                    target=slot.target, args=(self.settings, send), name=slot.name, daemon=False
                )
                process.start()
                send.close()
                slot.process, slot.ready, slot.started_at = process, receive, now
                slot.restart_at, slot.serving = None, False
                log.info("%s started (pid %d)", slot.name, process.pid)

    def _next_timeout(self) -> float | None:
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _wait(self, timeout: float | None) -> None:
        handles: dict[Any, tuple[str, _Slot]] = {}
        for slot in self.slots:
            if slot.process is not None and slot.restart_at is None:
                handles[slot.process.sentinel] = ("exit", slot)
                if slot.ready is not None:
                    handles[slot.ready] = ("ready", slot)
        fired = multiprocessing.connection.wait([self._wake_r, *handles], timeout)
        if self._wake_r in fired:
            os.read(self._wake_r, 64)
        for handle in fired:
            if handle == self._wake_r:
                continue
            kind, slot = handles[handle]
            if kind == "ready":
                self._on_ready(slot)
            elif not self._stopping:
                self._on_exit(slot)

    def _on_ready(self, slot: _Slot) -> None:
        if slot.ready is None:  # its exit was handled first
            return
        with contextlib.suppress(EOFError, OSError):
            slot.ready.recv()
            slot.serving = True
            log.info("%s serving (pid %s)", slot.name, slot.process and slot.process.pid)
        slot.ready.close()
        slot.ready = None
        if not self._announced and all(s.serving for s in self.slots):
            self._announced = True
            s = self.settings
            log.info(
                "%d worker%s serving HTTP on %s:%d, gRPC on %s:%d, operations on %s:%d%s",
                s.workers,
                "s" if s.workers > 1 else "",
                s.http_host,
                s.http_port,
                s.grpc_host,
                s.grpc_port,
                s.ops_host,
                s.ops_port,
                ", with the outbox relay" if len(self.slots) > s.workers else "",
            )

    def _on_exit(self, slot: _Slot) -> None:
        assert slot.process is not None
        slot.process.join()
        code = slot.process.exitcode
        self._forget_metrics(slot.process.pid)
        if slot.ready is not None:
            slot.ready.close()
            slot.ready = None
        lived = time.monotonic() - slot.started_at
        if lived >= HEALTHY_AFTER_SECONDS:
            slot.backoff = 0.0
        else:
            slot.backoff = min(MAX_BACKOFF_SECONDS, slot.backoff * 2 or 0.5)
        slot.restart_at = time.monotonic() + slot.backoff
        log.warning(
            "%s (pid %d) exited with %s after %.1fs; restarting in %.1fs",
            slot.name,
            slot.process.pid,
            code,
            lived,
            slot.backoff,
        )

    def _forget_metrics(self, pid: int | None) -> None:
        from gateway.metrics import worker_exited

        if pid is not None and self._metrics_dir is not None:
            try:
                worker_exited(pid, self._metrics_dir)
            except Exception:
                log.exception("forgetting the metrics of pid %d failed", pid)

    def _stop_all(self) -> int:
        running = [
            s.process
            for s in self.slots
            if s.process is not None and s.restart_at is None and s.process.is_alive()
        ]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        clean = True
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("%s (pid %d) did not stop in time: killing it", process.name, process.pid)
                process.kill()
                process.join()
                clean = False
            elif process.exitcode != 0:
                log.warning("%s exited with %s", process.name, process.exitcode)
                clean = False
            self._forget_metrics(process.pid)
        log.info("all workers stopped")
        return 0 if clean else 1


def supervise(settings: Settings, *, relay: bool = False) -> int:
    return Supervisor(settings, relay=relay).run()
