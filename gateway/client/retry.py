"""Which failures a client retries, and how long it waits.

Retried, with the same batch under the same idempotency key: ``UNAVAILABLE`` (the gateway is
down or its writer queue is full), ``ABORTED`` (the first request with the key is still in
flight), ``DEADLINE_EXCEEDED``, and ``RESOURCE_EXHAUSTED`` when it carries a ``RetryInfo`` (the
rate limit; without one it is a message over the size limit, which would fail again). Every
other status is a request error, reported and not retried, except one: ``INTERNAL`` with the
message "Internal error from Core" is raised by grpc itself when a stream's connection breaks
under it (the gateway never sent it), and is retried like ``UNAVAILABLE``.

The wait is the server's ``google.rpc.RetryInfo`` when it sends one, else exponential backoff
with full jitter. ``RetryInfo`` travels in the ``grpc-status-details-bin`` trailer as a
``google.rpc.Status``; both messages are declared here in a private descriptor pool so that the
client needs only grpcio and protobuf (not googleapis-common-protos, and no clash with it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory

RETRIED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
DETAILS_KEY = "grpc-status-details-bin"
CORE_FAILURE = "Internal error from Core"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def _messages() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    from google.protobuf import any_pb2

    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="eventgw_client/google_rpc.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )
    F = descriptor_pb2.FieldDescriptorProto
    status = proto.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    status.field.add(
        name="details",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    info = proto.message_type.add(name="RetryInfo")
    info.field.add(
        name="retry_delay",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".google.protobuf.Duration",
    )
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.RetryInfo")),
    )


_Status, _RetryInfo = _messages()


def retry_info(metadata: object) -> float | None:
    """The ``RetryInfo`` delay in seconds among a call's trailing metadata, if it has one."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = _Status.FromString(value)
        for detail in status.details:
            if detail.type_url == RETRY_INFO_TYPE:
                delay = _RetryInfo.FromString(detail.value).retry_delay
                return float(delay.seconds + delay.nanos / 1e9)
    return None


@dataclass(frozen=True)
class Failure:
    """What one attempt's error means: its status, message, and the wait before a retry (None:
    not retried)."""

    code: grpc.StatusCode
    message: str
    wait_hint: float | None
    retried: bool


def classify(error: grpc.aio.AioRpcError) -> Failure:
    code = error.code()
    message = error.details() or ""
    hint = retry_info(error.trailing_metadata())
    retried = code in RETRIED and (code != grpc.StatusCode.RESOURCE_EXHAUSTED or hint is not None)
    retried |= code == grpc.StatusCode.INTERNAL and message == CORE_FAILURE
    return Failure(code, message, hint, retried)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter, from ``initial`` doubling up to ``maximum``; a
    server's ``RetryInfo`` wins (plus up to 10% jitter, so clients told the same wait spread)."""

    initial: float = 0.05
    maximum: float = 5.0
    hint_maximum: float = 60.0

    def delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(hint, self.hint_maximum) * (1 + random.random() * 0.1)
        return random.uniform(0, min(self.maximum, self.initial * 2 ** max(0, attempt - 1)))
