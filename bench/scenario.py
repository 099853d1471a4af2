"""One scenario of ``eventgw bench`` against a running gateway: its load processes, started
together, and what they counted in the measured window.

:func:`run_scenario` starts ``options.clients`` load-generator processes, waits until each is
connected, lets them go, reads the gateway's CPU time and group commits at the start and the end
of the measured window (telling a :class:`Watch`, if given, when the window starts and ends) and
gathers what each process counted into the scenario's row.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import queue
import time
from collections.abc import Sequence
from typing import Protocol

from bench.client import CLIENT_SCENARIOS, client_worker
from bench.load import Target, load_worker
from bench.options import CONCURRENCY, LOAD, BenchOptions
from bench.report import Figure, figure
from bench.target import GatewayUnderTest
from bench.window import Gate, Tally, Window

# How long past the window a load process may take to report (in-flight requests finish).
WORKER_GRACE_SECONDS = 60.0


class Watch(Protocol):
    """Told when the measured window starts and when it ends (the pipeline's monitor)."""

    def window_started(self) -> None: ...
    def window_ended(self) -> None: ...


def _gather(
    results: multiprocessing.queues.Queue[Tally],
    workers: Sequence[multiprocessing.process.BaseProcess],
    timeout: float,
) -> Tally:
    """Every load process's tally, merged; a process that never reported counts as an error."""
    tally = Tally()
    reported, deadline = 0, time.monotonic() + timeout
    while reported < len(workers) and time.monotonic() < deadline:
        try:
            tally.merge(results.get(timeout=1.0))
            reported += 1
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                break
    if reported < len(workers):
        missing = len(workers) - reported
        tally.merge(Tally(errors=missing, first_error=f"{missing} load process(es) failed"))
    return tally


def run_scenario(
    scenario: str,
    target: Target,
    options: BenchOptions,
    gateway: GatewayUnderTest,
    watch: Watch | None = None,
) -> tuple[Figure, Tally]:
    """``scenario`` from ``options.clients`` load processes started together: its row, with the
    gateway's peak RSS, CPU time and group commits over the measured window, and the load
    processes' tallies merged."""
    ctx = multiprocessing.get_context("spawn")
    gate = Gate(ready=ctx.Queue(), go=ctx.Event())
    results: multiprocessing.queues.Queue[Tally] = ctx.Queue()
    concurrency = options.concurrency or CONCURRENCY[scenario]
    window = Window(options.seconds, options.warmup_s)
    load = LOAD.get(scenario, scenario)
    workers = [
        ctx.Process(
            target=client_worker if load in CLIENT_SCENARIOS else load_worker,
            args=(load, target, n, concurrency, window, gate, results),
            daemon=True,
        )
        for n in range(options.clients)
    ]
    for worker in workers:
        worker.start()
    try:
        ready, deadline = 0, time.monotonic() + WORKER_GRACE_SECONDS
        while ready < len(workers) and time.monotonic() < deadline:
            try:
                gate.ready.get(timeout=1.0)
                ready += 1
            except queue.Empty:
                if not all(w.is_alive() for w in workers):
                    break
        gateway.reset_peak()  # the peak includes the warm-up
        gate.go.set()
        time.sleep(options.warmup_s)
        cpu, commits = gateway.cpu_seconds(), gateway.commit_totals()
        if watch is not None:
            watch.window_started()
        time.sleep(options.seconds)
        if watch is not None:
            watch.window_ended()
        cpu = gateway.cpu_seconds() - cpu
        commits = gateway.commit_totals() - commits
        tally = _gather(results, workers, options.seconds + WORKER_GRACE_SECONDS)
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    peak_rss_mb = round(gateway.peak_rss / 2**20, 1)
    row = figure(scenario, tally, peak_rss_mb=peak_rss_mb, cpu_s=cpu).with_commits(commits)
    return row, tally
