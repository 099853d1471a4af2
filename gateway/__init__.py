"""eventgw: a gRPC-fronted multi-protocol event gateway.

Four analytics REST dialects (``adapters/``) and a gRPC API translate into one canonical Protobuf
event model and one ingestion path (``gateway.ingest``) that stores events durably, exactly once,
in a SQLAlchemy outbox, relayed onward to NATS JetStream.
"""

__version__ = "0.1.0"
