"""A keyed batch's fingerprint is what its key is bound to: a retry with the same events is a
replay, another batch under the key is refused. Computed from the ids the translation read
when every event carries one, it must be the very value computed from the request (keys stored
before stay comparable)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from gateway.rpc.batch import Batch
from gateway.rpc.translate import _fingerprint, translate

PROJECT = "p"
ids = st.lists(st.text(min_size=1, max_size=20), max_size=8, unique=True)


def keyed(event_ids: list[str], *events: Event) -> SubmitBatchRequest:
    listed = [Event(id=event_id, name="n") for event_id in event_ids]
    return SubmitBatchRequest(idempotency_key="k", events=[*listed, *events])


def fingerprint(request: SubmitBatchRequest) -> str:
    batch = Batch.parse(request.SerializeToString())
    return translate(batch, PROJECT, max_events=1000).fingerprint


@given(ids)
@example(['",', "x"])  # an escaped quote before a separator: '["\\",","x"]'
@example(["a\\", "b"])
@example(['a","i:b'])
def test_the_fingerprint_from_the_ids_is_the_requests(event_ids: list[str]) -> None:
    # Any text: quotes, backslashes, separators like '","' and control characters included.
    request = keyed(event_ids)
    assert fingerprint(request) == _fingerprint(request)


@given(ids)
def test_an_event_without_an_id_is_bound_by_its_content(event_ids: list[str]) -> None:
    request = keyed(event_ids, Event(name="no id"))
    assert fingerprint(request) == _fingerprint(request)
    other = keyed(event_ids, Event(name="another"))
    assert fingerprint(other) != fingerprint(request)


@given(ids)
def test_a_rejected_event_is_bound_too(event_ids: list[str]) -> None:
    request = keyed(event_ids, Event(id="nameless"))
    assert fingerprint(request) == _fingerprint(request)


def test_the_ids_and_their_order_bind_the_key() -> None:
    one = fingerprint(keyed(["a", "b"]))
    assert fingerprint(keyed(["b", "a"])) != one
    assert fingerprint(keyed(["a", "b", "c"])) != one
    assert fingerprint(keyed(['a","i:b'])) != one
    assert fingerprint(keyed(["a", "b"])) == one
