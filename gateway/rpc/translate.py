"""gRPC's own dialect, both ways: a ``SubmitBatchRequest`` into a ``Submission``, and a ``Result``
into a ``SubmitBatchResponse``. Pure: no I/O, no grpc; the servicer does the rest.

Events are validated one by one against ``RULES`` (a bad event is rejected with the rule's code,
message and field; the rest are stored) and normalized: ``dialect = "grpc"``, the project, the
receive time, and when absent the type (track), the occurred-at time (the receive time) and the id
(derived from the idempotency key and the index, so a retry derives the same one; without a key,
time-ordered: ``gateway.ids``).

Each event is stored as the client encoded it. What the gateway sets is appended to those bytes
as a serialized suffix rather than set on the message: protobuf keeps the last value of a scalar
field it parses twice, and merges a message field field by field, so the stored bytes decode to
the normalized event (the receive time sets both of its fields, replacing any the client sent).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import chain
from typing import NamedTuple

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.errors import InvalidRequest
from gateway.ids import uuid5, uuid7
from gateway.model import TYPE_NAMES, Encoded, Outcome, Result, Status, Submission
from gateway.pb.event_pb2 import Event, EventType
from gateway.pb.gateway_pb2 import (
    EventStatus,
    ResultView,
    SubmitBatchRequest,
    SubmitBatchResponse,
)
from gateway.rpc.batch import Batch

ENDPOINT = "grpc SubmitBatch"
MAX_ID = 512
MAX_NAME = 1024
_ID_NAMESPACE_BYTES = uuid.UUID("0b6a7c52-3c5e-4d44-9b1a-6a8f3b1f0c11").bytes
_MIN_SECONDS, _MAX_SECONDS = 946_684_800, 4_102_444_800  # 2000-01-01, 2100-01-01
# Enum values as plain ints: protobuf's enum wrappers resolve attributes slowly (hot path).
_EVENT_TYPES = frozenset(EventType.values())
_TRACK = EventType.EVENT_TYPE_TRACK
_CUSTOM = EventType.EVENT_TYPE_CUSTOM  # the last type with no payload of its own
_ACCEPTED = EventStatus.EVENT_STATUS_ACCEPTED
_DUPLICATE = EventStatus.EVENT_STATUS_DUPLICATE
_REJECTED = EventStatus.EVENT_STATUS_REJECTED
_EXCEPTIONS = ResultView.RESULT_VIEW_EXCEPTIONS
# Payloads are built as bytearrays, which the SQLite driver binds fastest (see storage ``Row``).
_join = bytearray().join


class Rule(NamedTuple):
    code: str
    message: str
    field: str


# Every rule an event must keep, in the order they are checked: the first broken one is reported.
RULES = (
    ID_TOO_LONG := Rule("invalid_field", f"id must be at most {MAX_ID} characters", "id"),
    NAME_MISSING := Rule("missing_field", "name is required", "name"),
    NAME_TOO_LONG := Rule("invalid_field", f"name must be at most {MAX_NAME} characters", "name"),
    OTHER_PROJECT := Rule(
        "project_mismatch", "project_id names another project than the key", "project_id"
    ),
    UNKNOWN_TYPE := Rule("invalid_field", "type is not a known EventType", "type"),
    TIME_RANGE := Rule("invalid_field", "occurred_at must be between 2000 and 2100", "occurred_at"),
    # What each type beyond track, page view, outgoing link and custom must carry:
    NO_IDENTITY := Rule(
        "missing_field",
        "an identify event needs identity.user_id, profile_id, external_id, distinct_id, email"
        " or anonymous_id",
        "identity",
    ),
    NO_ALIAS := Rule(
        "missing_field",
        "an alias event needs identity.previous_id and identity.user_id",
        "identity",
    ),
    NO_METRIC := Rule(
        "missing_field", "a web vital event needs web_vital.metric", "web_vital.metric"
    ),
    NO_ERROR := Rule("missing_field", "an error event needs error.message", "error.message"),
    NO_ENGAGEMENT := Rule(
        "missing_field", "an engagement event needs engagement.exit_type", "engagement.exit_type"
    ),
)


def check(event: Event, project_id: str) -> Rule | tuple[str, EventType.ValueType, bool]:
    """The first of ``RULES`` that ``event`` breaks; else what normalizing it needs: its id, its
    type and whether it carries an occurred-at time (read once here: this runs for every event)."""
    event_id = event.id
    if len(event_id) > MAX_ID:
        return ID_TOO_LONG
    name = event.name
    if not name:
        return NAME_MISSING
    if len(name) > MAX_NAME:
        return NAME_TOO_LONG
    if event.project_id and event.project_id != project_id:
        return OTHER_PROJECT
    kind = event.type
    if kind not in _EVENT_TYPES:
        return UNKNOWN_TYPE
    seconds = event.occurred_at.seconds
    timed = bool(seconds) or event.HasField("occurred_at")
    if timed and not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        return TIME_RANGE
    if kind > _CUSTOM and (rule := _broken_type_rule(event, kind)) is not None:
        return rule
    return event_id, kind, timed


def _broken_type_rule(event: Event, kind: int) -> Rule | None:
    """The rule of ``kind``'s own that ``event`` breaks (the types with a payload of their own)."""
    if kind == EventType.EVENT_TYPE_IDENTIFY:
        who = event.identity
        ids = (who.user_id, who.profile_id, who.external_id, who.distinct_id, who.email)
        return None if any(ids) or who.anonymous_id else NO_IDENTITY
    if kind == EventType.EVENT_TYPE_ALIAS:
        return None if event.identity.previous_id and event.identity.user_id else NO_ALIAS
    if kind == EventType.EVENT_TYPE_WEB_VITAL:
        return None if event.web_vital.metric else NO_METRIC
    if kind == EventType.EVENT_TYPE_ERROR:
        return None if event.error.message else NO_ERROR
    if kind == EventType.EVENT_TYPE_ENGAGEMENT:
        return None if event.engagement.exit_type else NO_ENGAGEMENT
    return None


def translate(batch: Batch, project_id: str, *, max_events: int) -> Submission:
    """The ``Submission`` of one ``SubmitBatchRequest`` of ``project_id``'s."""
    request = batch.request
    if len(request.events) > max_events:
        raise InvalidRequest(f"at most {max_events} events per batch")
    key = request.idempotency_key or None
    now_ns = time.time_ns()
    batch_id = ""  # drawn when an event without an id needs one
    suffixes = _suffixes(project_id, _received(now_ns))
    rejected: dict[int, Outcome] = {}
    ids: list[str] = []
    types: list[str] = []
    payloads: list[bytearray] = []
    ids_given = True  # every event valid and carrying its own id: ``ids`` bind the key
    for index, (event, encoded) in enumerate(zip(request.events, batch.events, strict=True)):
        checked = check(event, project_id)
        if isinstance(checked, Rule):
            ids_given = False
            rejected[index] = Outcome(
                status=Status.REJECTED,
                event_id=event.id,
                code=checked.code,
                message=checked.message,
                field=checked.field,
            )
            continue
        event_id, kind, timed = checked
        if not event_id:
            ids_given = False
            if key:
                event_id = uuid5(_ID_NAMESPACE_BYTES, f"key:{key}\x00{index}")
            else:  # time-ordered (a random per-batch part, the receive time, the index)
                if not batch_id:
                    batch_id = uuid.uuid4().hex
                    received = datetime.fromtimestamp(now_ns // 1000 / 1_000_000, tz=UTC)
                event_id = uuid7(batch_id, received, index)
            encoded += Event(id=event_id).SerializeToString()
        payloads.append(_join((encoded, suffixes[(not kind) * 2 + (not timed)])))
        ids.append(event_id)
        types.append(TYPE_NAMES[kind or _TRACK])
    fingerprint, earlier = "", None
    if key is not None:
        bound = _ids_fingerprint(ids) if ids_given else _fingerprint(request)
        fingerprint, earlier = bound, lambda: _earlier_fingerprint(request)
    return Submission(
        project_id=project_id,
        endpoint=ENDPOINT,
        size=len(request.events),
        encoded=Encoded(
            dialect="grpc", received_us=now_ns // 1000, ids=ids, types=types, payloads=payloads
        ),
        rejected=rejected,
        idempotency_key=key,
        fingerprint=fingerprint,
        earlier_fingerprint=earlier,
        per_item=True,
        dialect="grpc",
        items=lambda: batch.events,
    )


def _fingerprint(request: SubmitBatchRequest) -> str:
    """What a batch's idempotency key is bound to: each event's id where the client gave one,
    else the event itself (deterministically serialized). An id names one event for good (the
    outbox stores an id once), so a retry is the same batch when its ids are, however its client
    serialized it again; and hashing 500 ids rather than serializing 500 events again is most
    of the cost of a keyed batch saved. Marked ``2:`` apart from ``_earlier_fingerprint``."""
    bound = [
        "i:" + event.id if event.id else "e:" + event.SerializeToString(deterministic=True).hex()
        for event in request.events
    ]
    return _bound_fingerprint(orjson.dumps(bound))


def _ids_fingerprint(ids: list[str]) -> str:
    """``_fingerprint`` of a request whose every event carries its id, ``ids`` in order, without
    reading the events again (which was a fifth of a keyed batch's translation): orjson
    writes ``["a","b"]``, and with no escape in it (no quote inside a string) every ``","`` lies
    between two strings, so prefixing each string with ``i:`` is a replace."""
    dumped = orjson.dumps(ids)
    if not ids or b"\\" in dumped:
        return _bound_fingerprint(orjson.dumps(["i:" + event_id for event_id in ids]))
    return _bound_fingerprint(b'["i:' + dumped[2:].replace(b'","', b'","i:'))


def _bound_fingerprint(bound: bytes) -> str:
    return "2:" + hashlib.sha256(bound).hexdigest()[:62]


def _earlier_fingerprint(request: SubmitBatchRequest) -> str:
    """The fingerprint of keys stored before ``_fingerprint``'s: the whole request,
    deterministically serialized (compared only with such a key, so a retry across an upgrade
    is still a replay). The view asked for is left out, as it is of ``_fingerprint``."""
    if request.result_view:
        request = SubmitBatchRequest(idempotency_key=request.idempotency_key, events=request.events)
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def response(result: Result, view: ResultView.ValueType) -> SubmitBatchResponse:
    """The answer to a batch: the counts, and one result per event by request index; with
    ``RESULT_VIEW_EXCEPTIONS`` only for the events not accepted (no work per accepted event)."""
    answer = SubmitBatchResponse(
        accepted=result.accepted,
        duplicates=result.duplicate_count,
        rejected=result.rejected_count,
        replayed=result.replayed,
    )
    add = answer.results.add
    outcomes: Iterable[tuple[int, Outcome]]
    if view == _EXCEPTIONS:
        outcomes = ((i, result[i]) for i in sorted(chain(result.duplicates, result.rejected)))
    elif not result.rejected and not result.duplicates:
        for index, event_id in enumerate(result.event_ids):
            add(index=index, status=_ACCEPTED, event_id=event_id)
        return answer
    else:
        outcomes = enumerate(result)
    for index, outcome in outcomes:
        if outcome.status is Status.REJECTED:
            add(
                index=index,
                status=_REJECTED,
                event_id=outcome.event_id,
                code=outcome.code,
                message=outcome.message,
                field=outcome.field or "",
            )
        else:
            status = _DUPLICATE if outcome.status is Status.DUPLICATE else _ACCEPTED
            add(index=index, status=status, event_id=outcome.event_id)
    return answer


def exceptions(answer: SubmitBatchResponse) -> SubmitBatchResponse:
    """``answer`` in ``RESULT_VIEW_EXCEPTIONS``: its results of the events not accepted."""
    kept = [r for r in answer.results if r.status != _ACCEPTED]
    del answer.results[:]
    answer.results.extend(kept)
    return answer


def _received(now_ns: int) -> Timestamp:
    """``now_ns`` as the receive time, its nanos never zero: proto3 leaves a zero field out of the
    encoding, and a client's nanos would then survive the merge (once in 10^9, 1 ns off)."""
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos or 1)


def _suffixes(project_id: str, received: Timestamp) -> tuple[bytes, bytes, bytes, bytes]:
    """The serialized normalization of an event, by ``2 * (no type) + (no occurred-at)``."""
    common = Event(dialect="grpc", project_id=project_id, received_at=received).SerializeToString()
    typed = Event(type=_TRACK).SerializeToString()
    timed = Event(occurred_at=received).SerializeToString()
    return common, common + timed, common + typed, common + typed + timed
