"""The one ingestion path shared by REST and gRPC: ``Ingestor.submit(Submission) -> Result``.

The front has authenticated the request and translated it into a ``Submission``. ``submit``

1. serializes each event once into its outbox row and checks its size on those bytes (an event
   too large is rejected alone where the route answers per item, else the request is refused);
2. hands the rows to the group committer (``gateway.commit``), which stores them, together with
   a keyed request's key and ``Result``, in one transaction, and answers the ``Result``;
3. for a keyed request whose key was stored already, answers what the key says instead (its
   stored ``Result``, marked replayed; a key stored before results were stored whole answers its
   rendered bytes), and stores nothing.

What it refused (rejected items, or every item of a request its content refused whole) it
hands to ``Refusals`` on the way, for the failed-events table.

This is the hot path of every event, so per event it does no more than it must: one
serialization into a plain-tuple row, no per-event object in the answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter

from gateway.commit import GroupCommitter, Job, WriterLimits
from gateway.errors import GatewayError, IdempotencyInFlight, InvalidRequest, PayloadTooLarge
from gateway.failures import Refusals
from gateway.model import (
    MAX_IDEMPOTENCY_KEY,
    TYPE_NAMES,
    Outcome,
    Rendered,
    Result,
    Status,
    Submission,
)
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import now_us, storage_errors
from gateway.storage.events import EventStore, Row
from gateway.storage.failed import FailedEvent, failed
from gateway.storage.idempotency import Claim, IdempotencyStore, Replay

log = logging.getLogger(__name__)

_PAYLOAD = itemgetter(5)  # a row's serialized event

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024  # the max_event_bytes setting's default


class Ingestor:
    def __init__(
        self,
        events: EventStore,
        idempotency: IdempotencyStore,
        limits: WriterLimits | None = None,
        on_commit: Callable[[int, int, float], None] | None = None,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        refusals: Refusals | None = None,
    ) -> None:
        self.events = events
        self.idempotency = idempotency
        self.limits = limits or WriterLimits()
        self.max_event_bytes = max_event_bytes
        self.refusals = refusals
        self._committer = GroupCommitter(events, idempotency, self.limits, on_commit)

    @property
    def queued_events(self) -> int:
        return self._committer.queued_events

    @property
    def commit_failures(self) -> tuple[int, float]:
        """Group commits failed in a row, and when the last one failed (monotonic seconds)."""
        return self._committer.failures, self._committer.failed_at

    async def start(self) -> None:
        await self._committer.start()

    async def stop(self) -> None:
        """Finish every queued submission, then stop the writers."""
        await self._committer.stop()

    async def submit(self, submission: Submission) -> Result:
        """Store ``submission``'s events (their ``project_id`` is set here) and answer its
        ``Result``; raises the ``GatewayError`` that refused it whole, if any."""
        if submission.idempotency_key is not None:
            return await self._submit_keyed(submission)
        job = self._job(submission)
        self._refused(submission, job)
        if job.error is not None:
            raise job.error
        result = await self._committer.commit(job)
        assert result is not None
        return result

    async def lookup(self, project_id: str, key: str, endpoint: str) -> Result | None:
        """The stored ``Result`` of a completed submission to ``endpoint`` under ``key``."""
        with storage_errors("submission lookup"):
            replay = await self.idempotency.lookup(project_id, key)
        if replay is None or replay.endpoint != endpoint:
            return None
        return _replayed(replay)

    async def _submit_keyed(self, submission: Submission) -> Result:
        """A keyed submission: stored with its new key in one transaction, or, when the key
        exists, answered by it (a replay, or a refusal while another request holds it)."""
        key = submission.idempotency_key
        assert key is not None
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(
                f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters",
                field="idempotency_key",
            )
        project_id, store = submission.project_id, self.idempotency
        request = {"endpoint": submission.endpoint, "fingerprint": submission.fingerprint}
        for _ in range(3):
            job = self._job(submission)
            job.claim = store.new_key(project_id, key, **request)
            result = await self._committer.commit(job)
            if result is None:  # the key exists
                with storage_errors("idempotency claim"):
                    decided = await store.existing(
                        project_id,
                        key,
                        **request,
                        earlier_fingerprint=submission.earlier_fingerprint,
                    )
                if decided is None:  # expired, and deleted: try again
                    continue
                if isinstance(decided, Replay):
                    return _replayed(decided)
                job = self._job(submission)  # a lock taken over from a holder that died
                job.claim = decided
                result = await self._commit_claimed(job, decided)
            self._refused(submission, job)
            return result
        raise IdempotencyInFlight("Idempotency key is being processed", retry_after=1)

    async def _commit_claimed(self, job: Job, claim: Claim) -> Result:
        try:
            result = await self._committer.commit(job)
        except GatewayError as exc:
            # Nothing was stored: a retry with the same key runs afresh.
            if exc.retryable:
                with contextlib.suppress(Exception):
                    await self.idempotency.release(claim)
            raise
        assert result is not None
        return result

    def _refused(self, submission: Submission, job: Job) -> None:
        if self.refusals is not None and (job.error is not None or job.rejected):
            self.refusals.add(refused(submission, job))

    def _job(self, submission: Submission) -> Job:
        """The submission's outbox rows and how to answer it (``error``: refused whole)."""
        rejected = dict(submission.rejected)
        if submission.failure is not None:
            return Job(rows=[], size=submission.size, error=submission.failure)
        if submission.encoded is not None:
            rows, ids = _encoded_rows(submission), submission.encoded.ids
        else:
            rows = self.rows(submission.project_id, submission.events)
            ids = [event.id for event in submission.events]
        positions = None
        if rejected:
            positions = [i for i in range(submission.size) if i not in rejected]
        oversize = self._oversize(rows)
        if oversize:
            limit = self.max_event_bytes
            if not submission.per_item:
                index, size = oversize[0]
                at = positions[index] if positions is not None else index
                error = PayloadTooLarge(
                    f"Event {at} is {size} bytes encoded; the limit is {limit} bytes per event",
                    limit=limit,
                )
                return Job(rows=[], size=submission.size, error=error)
            positions = positions or list(range(len(rows)))
            for index, size in oversize:
                rejected[positions[index]] = Outcome(
                    status=Status.REJECTED,
                    event_id=ids[index],
                    code="too_large",
                    message=f"Event is {size} bytes encoded; the limit is {limit} bytes",
                )
            drop = {index for index, _ in oversize}
            rows = [row for i, row in enumerate(rows) if i not in drop]
            positions = [p for i, p in enumerate(positions) if i not in drop]
        return Job(rows=rows, size=submission.size, positions=positions, rejected=rejected)

    def _oversize(self, rows: Sequence[Row]) -> list[tuple[int, int]]:
        """(row index, encoded size) of each row over ``max_event_bytes``."""
        limit = self.max_event_bytes
        if not rows or max(map(len, map(_PAYLOAD, rows))) <= limit:
            return []
        return [(i, len(row[5])) for i, row in enumerate(rows) if len(row[5]) > limit]

    @staticmethod
    def rows(project_id: str, events: Sequence[Event]) -> list[Row]:
        """The outbox rows of ``events``, each serialized once, with ``project_id`` set."""
        names = TYPE_NAMES
        rows: list[Row] = []
        append = rows.append
        for event in events:
            event.project_id = project_id
            received = event.received_at
            append(
                (
                    project_id,
                    event.id,
                    event.dialect,
                    names.get(event.type, "unspecified"),
                    received.seconds * 1_000_000 + received.nanos // 1000,
                    event.SerializeToString(),
                )
            )
        return rows


# Request-level refusals that are about what was sent (kept as failed events); the others (rate
# limits, an unavailable store, a key in flight) are retried by clients, not failures of an item.
_CONTENT_STATUSES = frozenset({400, 413, 415, 422})


def refused(submission: Submission, job: Job) -> list[FailedEvent]:
    """The failed events of a submission: its rejected items, or all of its items when its
    content refused it whole."""
    items: Sequence[bytes] = submission.items() if submission.items is not None else ()
    dialect = submission.dialect or (submission.encoded.dialect if submission.encoded else "")
    now = now_us()

    def one(index: int, code: str, message: str, field: str | None) -> FailedEvent:
        raw = items[index] if index < len(items) else b""
        return failed(
            project_id=submission.project_id,
            dialect=dialect,
            endpoint=submission.endpoint,
            received_at=now,
            code=code,
            message=message,
            field=field,
            raw=raw,
        )

    error = job.error
    if error is not None:
        if error.http_status not in _CONTENT_STATUSES:
            return []
        count = max(len(items), 1)  # an unreadable body is one item: the body
        return [one(i, error.code, error.message, error.field) for i in range(count)]
    return [
        one(index, outcome.code, outcome.message, outcome.field)
        for index, outcome in sorted(job.rejected.items())
    ]


def _encoded_rows(submission: Submission) -> list[Row]:
    """The outbox rows of events a front already serialized (built in C: ``zip`` and
    ``repeat``, no Python code per event)."""
    encoded = submission.encoded
    assert encoded is not None
    if not len(encoded.ids) == len(encoded.types) == len(encoded.payloads):
        raise ValueError("an Encoded's ids, types and payloads differ in length")
    return list(
        zip(
            repeat(submission.project_id),
            encoded.ids,
            repeat(encoded.dialect),
            encoded.types,
            repeat(encoded.received_us),
            encoded.payloads,
        )
    )


def _replayed(replay: Replay) -> Result:
    if replay.result is not None:
        return Result.decode(replay.result)
    stored = replay.response
    assert stored is not None
    rendered = Rendered(status=stored.status, body=stored.body, headers=stored.headers)
    return Result(replayed=True, rendered=rendered)
