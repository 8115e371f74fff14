"""Which sealed events are about a subject, as this process saw them: not the database's word.

The "is this row the current value?" checks (`state_integrity.current_row_problem`) ask for the
events about a subject after the one that anchors a row. Asking the database by its `subject`
column lets whoever can write the database hide an event (edit its subject, or delete the row):
a revoked token, a demoted admin or a newer policy would then look current again. So each
process keeps, beside the ledger key, its own index of the ledger as it verified it:

- every event it reads is checked (fields, leaf, seal) and must follow the previous one with no
  gap; the subject it records is the one the seal vouches for;
- an event that fails, or a missing sequence number, is remembered as bad: a current-value check
  of a row anchored before it refuses (fail closed: an event that cannot be read could be the
  revocation), naming it;
- later reads of an indexed event fetch it by sequence number and check it again, so an event
  edited or deleted after this process saw it is refused too.

The index grows incrementally (each event is read once per process); the first check in a new
process reads the whole ledger once. Events of a transaction that rolled back (indexed, then
gone or replaced by other events with the same numbers) are told apart from tampering by their
seals: a replaced number carries a valid seal for another subject, and the index is rebuilt from
there. A tail that vanished shrinks the index (truncating the newest events is the documented
limit of the cheap checks; published and witnessed checkpoints catch it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from modelward.errors import NotFoundError, VerificationError
from modelward.storage.metadata.ledger_repository import LedgerEvent, LedgerRepository

_ATTRIBUTE = "_modelward_subject_watch"


@dataclass
class SubjectWatch:
    through: int = -1  # the highest sequence number indexed
    by_subject: dict[str, list[int]] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)  # seq -> why it cannot be trusted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _drop_from(self, seq: int) -> None:
        for seqs in self.by_subject.values():
            while seqs and seqs[-1] >= seq:
                seqs.pop()
        for bad_seq in [s for s in self.bad if s >= seq]:
            del self.bad[bad_seq]
        self.through = min(self.through, seq - 1)

    def refresh(self, conn: Connection, keeper: Any) -> int:
        """Index the events appended since the last look; returns the ledger's size."""
        repo = LedgerRepository(conn)
        size = repo.size()
        if size <= self.through:
            self._drop_from(size)
        expected = self.through + 1
        for event in repo.events(expected, size):
            for missing in range(expected, event.seq):
                self.bad[missing] = f"ledger event #{missing} is missing"
            self._index(event, keeper)
            expected = event.seq + 1
        for missing in range(expected, size):
            self.bad[missing] = f"ledger event #{missing} is missing"
        self.through = size - 1
        return size

    def _index(self, event: LedgerEvent, keeper: Any) -> None:
        problem = keeper.event_problem(event)
        if problem is not None:
            self.bad[event.seq] = problem
        else:
            self.by_subject.setdefault(event.subject, []).append(event.seq)


def _watch_of(keeper: Any) -> SubjectWatch:
    watch = getattr(keeper, _ATTRIBUTE, None)
    if not isinstance(watch, SubjectWatch):
        watch = SubjectWatch()
        setattr(keeper, _ATTRIBUTE, watch)
    return watch


def sealed_subject_events(
    conn: Connection, keeper: Any, subject: str, after_seq: int = -1
) -> list[LedgerEvent]:
    """The sealed events about `subject` with seq > `after_seq`, newest first, from this
    process's own index. VerificationError when any event after `after_seq` cannot be trusted
    (it fails its check or is missing), or an indexed event about the subject changed."""
    watch = _watch_of(keeper)
    repo = LedgerRepository(conn)
    with watch.lock:
        for _attempt in range(2):
            size = watch.refresh(conn, keeper)
            bad = sorted(s for s in watch.bad if after_seq < s < size)
            if bad:
                raise VerificationError(
                    f"{watch.bad[bad[0]]}; values recorded before it may have been changed "
                    "after it, so they are not trusted (`modelward audit verify`)"
                )
            found: list[LedgerEvent] = []
            stale_from = None
            for seq in reversed(watch.by_subject.get(subject, [])):
                if seq <= after_seq:
                    break
                try:
                    event = repo.event(seq)
                except NotFoundError:
                    raise VerificationError(
                        f"ledger event #{seq} about {subject} is missing; values of {subject} "
                        "are not trusted (`modelward audit verify`)"
                    ) from None
                problem = keeper.event_problem(event)
                if problem is not None:
                    raise VerificationError(
                        f"{problem}; it is about {subject}, whose values are not trusted"
                    )
                if event.subject != subject:
                    stale_from = seq  # a rolled-back event's number, reused: re-index
                    break
                found.append(event)
            if stale_from is None:
                return found
            watch._drop_from(stale_from)
    raise VerificationError(f"the ledger changed while the events of {subject} were read")
