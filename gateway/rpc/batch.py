"""A ``SubmitBatchRequest`` as the servicer reads it: the parsed message, to validate each event,
and each event's encoding as the client sent it, to store in the outbox without encoding it again.

Both come from one parse of the request's bytes each: the message itself, and a view of the same
wire format whose ``events`` (field 2) are ``repeated bytes``. Protobuf's parser hands the
view's fields out as they are on the wire, so ``events[i]`` is exactly ``request.events[i]``'s
encoding, at no per-event cost in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from gateway.pb.gateway_pb2 import SubmitBatchRequest

_FieldProto = descriptor_pb2.FieldDescriptorProto


def _events_view() -> type[Message]:
    """``SubmitBatchRequest`` with its events as ``repeated bytes`` (same field number)."""
    number = SubmitBatchRequest.DESCRIPTOR.fields_by_name["events"].number
    file = descriptor_pb2.FileDescriptorProto(
        name="eventgw/v1/submit_batch_view.proto", package="eventgw.v1.view", syntax="proto3"
    )
    view = file.message_type.add(name="SubmitBatchEvents")
    view.field.add(
        name="events", number=number, type=_FieldProto.TYPE_BYTES, label=_FieldProto.LABEL_REPEATED
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("eventgw.v1.view.SubmitBatchEvents")
    )


_EventsView = _events_view()


@dataclass(frozen=True, slots=True)
class Batch:
    """``events[i]`` is the encoding of ``request.events[i]``."""

    request: SubmitBatchRequest
    events: Sequence[bytes]

    @classmethod
    def parse(cls, raw: bytes) -> Batch:
        """The batch of a serialized request; ``DecodeError`` when it is not one."""
        request = SubmitBatchRequest.FromString(raw)
        events: Sequence[bytes] = _EventsView.FromString(raw).events  # type: ignore[attr-defined]
        if len(events) != len(request.events):  # cannot happen: one wire format, parsed twice
            raise DecodeError("the request's events could not be delimited")
        return cls(request, events)
