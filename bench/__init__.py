"""``eventgw bench``: the ingest throughput of a real gateway, next to the raw database limit.

A package of its own beside the serving one (``pip install 'eventgw[bench]'``: it needs psutil to
read the gateway's memory and CPU time). It provisions a fresh database, starts
``python -m gateway serve`` on it as a child process and drives it from separate load-generator
processes, one scenario at a time (``grpc-batch``, ``grpc-stream``, ``databuddy-batch``,
``track``), after a warm-up that is not counted. For each it reports events/s, requests/s, p50/p99
latency per request (client side), the gateway's peak RSS and CPU per event and, measured in the
same run, the ratio to the raw limit: the same serialized events inserted straight into the
database with the same durability. The numbers depend on the machine and on whatever else runs
on it: compare figures of one run, or the medians of a series (``--runs``).

- :mod:`bench.run`: the runs; :func:`bench.run.main` is the command; :mod:`bench.options`: what
  a run is asked; :mod:`bench.scenario`: one scenario's load against a gateway;
- :mod:`bench.pipeline`: the pipeline scenarios (``pipeline``, ``pipeline-relay``, when named):
  ``SubmitBatch`` load while the outbox relay delivers to NATS JetStream, watched by
  :mod:`bench.monitor`, on the server of ``--nats-url`` or :mod:`bench.broker`'s own;
- :mod:`bench.target`: the fresh database and the gateway under test;
- :mod:`bench.load`: the gRPC and HTTP load generators; :mod:`bench.payloads`: their bodies;
  :mod:`bench.window`: the measured window and what it counts;
- :mod:`bench.raw`: the raw limit;
- :mod:`bench.report`, :mod:`bench.series`: the typed report of a run and of a series;
  :mod:`bench.table`: both as tables.
"""
