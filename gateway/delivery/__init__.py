"""Delivery to NATS JetStream: the outbox relay and what it needs.

- ``outbox``: ``Relay`` claims committed, undelivered events in ``seq`` order, publishes them
  exactly once in the stream and marks them delivered; ``outbox_lag`` measures the backlog.
- ``failed``: ``FailedEventRelay`` publishes the failed events beside it (when asked).
- ``jetstream``: ``Publisher``, the relay's own connection to the broker.
- ``process``: ``eventgw relay`` (and the relay under ``serve --relay``) as a process.
"""
