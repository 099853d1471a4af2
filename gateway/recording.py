"""A recording ingestor: ``Ingestor.submit``'s contract without a database, for tests.

It keeps every ``Submission`` it is handed (``submissions``) and answers the ``Result`` the
pipeline would: every event accepted, but an id this recorder has already stored for the project
(or named in ``duplicates``), which is a duplicate; the front's rejections where they were; a
refused request's error. Nothing is serialized, so it is no check of sizes: the real
``Ingestor`` is tested against real databases in ``tests/gateway/pipeline``.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.model import Result, Submission


class RecordingIngestor:
    def __init__(self, duplicates: Iterable[str] = ()) -> None:
        self.submissions: list[Submission] = []
        self._stored: set[tuple[str, str]] = set()
        self._duplicates = frozenset(duplicates)

    async def submit(self, submission: Submission) -> Result:
        if submission.failure is not None and submission.idempotency_key is None:
            raise submission.failure
        return self.answer(submission)

    def answer(self, submission: Submission) -> Result:
        """The ``Result`` of ``submission``, recorded as if it were submitted."""
        self.submissions.append(submission)
        if submission.failure is not None:
            return Result([""] * submission.size, error=submission.failure)
        if submission.encoded is not None:
            stored = list(submission.encoded.ids)
        else:
            stored = [event.id for event in submission.events]
        rejected = dict(submission.rejected)
        ids = [""] * submission.size
        positions = (i for i in range(submission.size) if i not in rejected)
        duplicates = set()
        for position, event_id in zip(positions, stored, strict=False):
            ids[position] = event_id
            key = (submission.project_id, event_id)
            if event_id in self._duplicates or key in self._stored:
                duplicates.add(position)
            self._stored.add(key)
        for index, outcome in rejected.items():
            ids[index] = outcome.event_id
        return Result(ids, duplicates=frozenset(duplicates), rejected=rejected)
