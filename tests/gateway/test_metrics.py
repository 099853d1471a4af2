"""Metrics: per-runtime registries, and the multi-process contract of ``--workers``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.access import RequestInfo
from gateway.metrics import Metrics
from tests.harness import ROOT


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def request(**fields: object) -> RequestInfo:
    info = RequestInfo(request_id="r", transport="http", method="POST", path="/batch")
    for name, value in fields.items():
        setattr(info, name, value)
    return info


def test_each_metrics_object_counts_on_its_own() -> None:
    one, two = Metrics(), Metrics()
    info = request(dialect="ours", endpoint="batch", project="p", status=207, accepted=2)
    info.rejected, info.events = 1, 3
    one.observe_request(info, 0.01)
    one.observe_request(info, 0.02)
    got = samples(one.render().decode())
    labels = (("dialect", "ours"), ("outcome", "accepted"), ("project", "p"))
    assert got[("eventgw_events_total", labels)] == 4
    status = (("dialect", "ours"), ("endpoint", "batch"), ("status", "207"))
    assert got[("eventgw_requests_total", status)] == 2
    assert ("eventgw_events_total", labels) not in samples(two.render().decode())


def test_unauthenticated_requests_count_no_events() -> None:
    metrics = Metrics()
    metrics.observe_request(request(dialect="ours", endpoint="batch", status=401, events=3), 0.0)
    got = samples(metrics.render().decode())
    assert not [k for k in got if k[0] == "eventgw_events_total"]


def test_workers_aggregate_through_the_multiprocess_directory(tmp_path: Path) -> None:
    """Two forked workers record, a third process renders their sum. Run in a fresh interpreter:
    prometheus_client's multi-process storage is process-wide."""
    script = textwrap.dedent(
        """
        import multiprocessing, os, sys
        from gateway.access import RequestInfo
        from gateway.metrics import Metrics, worker_exited

        directory = sys.argv[1]

        def worker(n):
            metrics = Metrics(multiprocess_dir=directory)
            info = RequestInfo(request_id="r", transport="http", method="POST", path="/")
            info.dialect, info.endpoint, info.project, info.status = "ours", "batch", "p", 200
            info.accepted = n
            metrics.observe_request(info, 0.01)
            metrics.observe_commit(1, n, 0.001, queued=n)

        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=worker, args=(n,)) for n in (2, 5)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            worker_exited(p.pid, directory)
        sys.stdout.write(Metrics(multiprocess_dir=directory).render().decode())
        """
    )
    # The variable is set for the interpreter, as the supervisor sets it for its workers.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = samples(done.stdout)
    labels = (("dialect", "ours"), ("outcome", "accepted"), ("project", "p"))
    assert got[("eventgw_events_total", labels)] == 7
    status = (("dialect", "ours"), ("endpoint", "batch"), ("status", "200"))
    assert got[("eventgw_requests_total", status)] == 2
    assert got[("eventgw_commit_group_events_sum", ())] == 7
    assert got.get(("eventgw_queue_events", ()), 0.0) == 0  # both workers exited: no live gauge
