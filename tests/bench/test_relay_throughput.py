"""The relay measurement a benchmark scenario calls: it fills an outbox of its own, relays all of
it once through a real ``eventgw relay`` process, and accounts for every event (no timing is
asserted)."""

from __future__ import annotations

import pytest

from bench.relay import measure
from tests.jetstream import nats_url

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def test_measure_relays_every_event_of_a_fresh_outbox(database_url: str) -> None:
    run = measure(database_url, nats_url(), events=300)
    assert run.events == 300
    assert run.wall_s > 0 and run.cpu_s > 0 and run.idle_cpu_s > 0
    assert run.events_per_s > 0
