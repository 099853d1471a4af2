"""Generated Protobuf and gRPC code for ``protos/`` (``python -m gateway.codegen``; do not edit).

- ``gateway.pb.event_pb2``: the canonical ``Event`` model.
- ``gateway.pb.gateway_pb2``: the ``EventGateway`` request and response messages.
- ``gateway.pb.gateway_pb2_grpc``: the gRPC stubs (imports grpc; only the gRPC front uses it).
"""
