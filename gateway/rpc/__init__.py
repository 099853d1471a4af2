"""The gRPC front: ``eventgw.v1.EventGateway`` on grpc.aio, plus health and reflection.

``service`` holds the servicer (authentication, validation, normalization, ingestion);
``server`` registers it and starts the server.
"""

from gateway.rpc.server import start_grpc_server
from gateway.rpc.service import SERVICE, EventGatewayService

__all__ = ["SERVICE", "EventGatewayService", "start_grpc_server"]
