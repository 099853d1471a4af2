"""``POST /identify``: who a visitor is, as the vendor's SDKs send it — the Node client with its
API key and ``websiteId`` in the body, the browser tracker with ``client_id`` — stored as one
identify event named ``$identify``: ``profileId`` and ``anonymousId`` in the identity (the vendor
links the two), ``traits`` in user properties.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from msgspec import Meta, Struct

from adapters.databuddy.events import received, set_extras
from adapters.databuddy.wire import Text128, parse
from adapters.fields import FieldError, to_struct
from gateway.pb.event_pb2 import Event, EventType

IDENTIFY_EVENT = "$identify"
TRAITS_MAX_KEYS = 50
TRAITS_MAX_BYTES = 2048  # TRAITS_MAX_SERIALIZED: "2 KB" in the SDK's documentation
Trait = Annotated[str, Meta(max_length=255)] | int | float | bool | None
TraitKey = Annotated[str, Meta(min_length=1, max_length=128)]


class Identify(Struct):
    profileId: Annotated[str, Meta(min_length=1, max_length=128)]
    anonymousId: Text128 | None = None
    traits: Annotated[dict[TraitKey, Trait], Meta(max_length=TRAITS_MAX_KEYS)] | None = None
    websiteId: Annotated[str, Meta(max_length=255)] | None = None


def identify_event(data: dict[str, Any], event_id: str, at: datetime) -> tuple[Event, str | None]:
    """The identify event of a body, and the ``websiteId`` it names (the caller checks it);
    ``FieldError`` naming the bad field."""
    item = parse(data, Identify)
    profile_id = item.profileId.strip()
    if not profile_id:
        raise FieldError("profileId", "profileId must contain a valid identifier")
    base, _ = received(at)
    event = Event.FromString(base)
    event.id, event.type, event.name = event_id, EventType.EVENT_TYPE_IDENTIFY, IDENTIFY_EVENT
    event.identity.profile_id = profile_id
    if item.anonymousId:
        event.identity.anonymous_id = item.anonymousId
    if item.traits:
        if len(orjson.dumps(item.traits)) > TRAITS_MAX_BYTES:
            raise FieldError("traits", f"must be at most {TRAITS_MAX_BYTES} bytes serialized")
        event.user_properties.CopyFrom(to_struct(item.traits))
    set_extras(event, data, frozenset(Identify.__struct_fields__))
    return event, item.websiteId or None
