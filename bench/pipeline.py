"""The pipeline scenarios of ``eventgw bench``: ``SubmitBatch`` load (``grpc-batch``'s) while the
outbox relay delivers to NATS JetStream, measured at both ends.

- ``pipeline``: ``eventgw serve --relay --nats-url URL``: the supervisor runs the gateway in one
  worker process and the relay in another (``options.relays`` of them: ``--relay-processes``);
- ``pipeline-relay``: a plain ``eventgw serve`` and, beside it, ``options.relays`` separate
  ``eventgw relay`` processes (more than one only on PostgreSQL, where they share the outbox).

Each runs on a fresh database of its own (:func:`bench.target.bench_database`, provisioned as
the run's), so its outbox holds nothing undelivered from another scenario, and a fresh stream
(deleted afterwards). The row's events are the ingest (accepted inside the window); its
:class:`~bench.report.Pipeline` holds what :class:`~bench.monitor.PipelineMonitor` saw: the
stream's gain in the window, the outbox's lag sampled in it, and the drain time once the load
stops, after which every acknowledged event must be in the stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from bench.load import Target
from bench.monitor import PipelineMonitor
from bench.options import BenchOptions
from bench.report import Figure, Pipeline, quantile
from bench.scenario import run_scenario
from bench.target import ROOT, GatewayUnderTest, bench_database, provision
from bench.window import Tally

RELAY_MODE = {"pipeline": "serve --relay", "pipeline-relay": "eventgw relay"}
# How long the outbox may take to drain once the load stops before the run says it did not.
DRAIN_TIMEOUT_SECONDS = 300.0


class Relays:
    """``count`` ``eventgw relay`` processes on one outbox and stream."""

    def __init__(self, count: int, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.count, self.args, self.workdir, self.env = count, args, workdir, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for n in range(self.count):
            with (self.workdir / f"relay-{n + 1}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "gateway", "relay", *self.args],
                        cwd=ROOT,
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
        return total

    def exited(self) -> str:
        """The first exited relay's log tail ("" while all run)."""
        for n, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self.workdir / f"relay-{n + 1}.log").read_text()[-300:]
                return f"relay {n + 1} exited with {proc.returncode}: {tail}"
        return ""

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Watch:
    """The monitor's window, and the relay processes' CPU time over it."""

    def __init__(self, monitor: PipelineMonitor, relays: Relays | None) -> None:
        self.monitor, self.relays = monitor, relays
        self.relay_cpu_s: float | None = None

    def window_started(self) -> None:
        self.monitor.window_started()
        if self.relays is not None:
            self.relay_cpu_s = -self.relays.cpu_seconds()

    def window_ended(self) -> None:
        self.monitor.window_ended()
        if self.relays is not None and self.relay_cpu_s is not None:
            self.relay_cpu_s += self.relays.cpu_seconds()


def delivery(
    scenario: str,
    relays: int,
    row: Figure,
    tally: Tally,
    watch: _Watch,
    drain_s: float | None,
    delivered_total: int,
) -> Pipeline:
    """The row's delivery figures from what the monitor saw."""
    monitor = watch.monitor
    assert monitor.start is not None and monitor.end is not None
    delivered = monitor.end.messages - monitor.start.messages
    seconds = max(1e-9, monitor.end.at - monitor.start.at)
    samples = [s for s in monitor.samples if monitor.start.at <= s.at <= monitor.end.at]
    lags = [s.lag_s for s in samples]
    pending = [float(s.pending) for s in samples]
    cpu = (row.gateway_cpu_s or 0.0) + (watch.relay_cpu_s or 0.0)
    return Pipeline(
        relay=RELAY_MODE[scenario],
        relays=relays,
        delivered=delivered,
        delivered_per_s=round(delivered / seconds, 1),
        delivered_ratio=round(delivered / row.events, 3) if row.events else None,
        lag_samples=len(samples),
        lag_p50_s=round(quantile(lags, 0.50), 3),
        lag_p99_s=round(quantile(lags, 0.99), 3),
        lag_max_s=round(max(lags, default=0.0), 3),
        pending_p50=int(quantile(pending, 0.50)),
        pending_p99=int(quantile(pending, 0.99)),
        pending_max=int(max(pending, default=0.0)),
        drain_s=None if drain_s is None else round(drain_s, 3),
        acknowledged=tally.acknowledged,
        delivered_total=delivered_total,
        relay_cpu_s=None if watch.relay_cpu_s is None else round(watch.relay_cpu_s, 3),
        cpu_us_per_event=round(cpu / row.events * 1e6, 2) if row.events and cpu else None,
    )


def run_pipeline(
    scenario: str, options: BenchOptions, nats_url: str, workdir: Path, env: dict[str, str]
) -> Figure:
    """``scenario`` on a fresh database and stream: its row, with its delivery figures."""
    tag = uuid.uuid4().hex[:12]
    stream, prefix = f"EVENTGW_BENCH_{tag}", f"eventgw_bench_{tag}.events"
    here = workdir / scenario
    here.mkdir()
    with bench_database(options.database_url, here) as url:
        project_id, api_key = provision(url)
        relay_env = {**env, "EVENTGW_NATS_STREAM": stream, "EVENTGW_NATS_SUBJECT_PREFIX": prefix}
        if scenario == "pipeline":
            serve_args, relays = ["--relay", "--nats-url", nats_url], None
            if options.relays > 1:
                serve_args += ["--relay-processes", str(options.relays)]
        else:
            serve_args = []
            args = ["--database-url", url, "--nats-url", nats_url]
            relays = Relays(options.relays, args, here, relay_env)
        gateway = GatewayUnderTest(url, here, relay_env, serve_args)
        monitor = PipelineMonitor(url, nats_url, stream, prefix)
        watch = _Watch(monitor, relays)
        try:
            monitor.open()
            gateway.start()
            if relays is not None:
                relays.start()
            target = Target(
                http_url=f"http://127.0.0.1:{gateway.http_port}",
                grpc_target=f"127.0.0.1:{gateway.grpc_port}",
                project_id=project_id,
                api_key=api_key,
            )
            row, tally = run_scenario(scenario, target, options, gateway, watch)
            gone = relays.exited() if relays is not None else ""
            drained_at = None if gone else monitor.wait_drained(DRAIN_TIMEOUT_SECONDS)
            assert monitor.end is not None
            drain_s = None if drained_at is None else max(0.0, drained_at - monitor.end.at)
            delivered_total = monitor.stream_messages()
            problem = gone or (relays.exited() if relays is not None else "")
            if drain_s is None:
                problem = problem or f"the outbox did not drain in {DRAIN_TIMEOUT_SECONDS:g} s"
        finally:
            if relays is not None:
                relays.stop()
            gateway.stop()
            monitor.close()
    figures = delivery(scenario, options.relays, row, tally, watch, drain_s, delivered_total)
    return dataclasses.replace(row, pipeline=figures, first_error=row.first_error or problem)
