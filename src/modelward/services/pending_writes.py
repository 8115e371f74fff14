"""Pending writers: blobs stored before the transaction that references them commits.

A push stores its blobs first and references them in the database afterwards, possibly after
waiting for the database's write lock. In between, its blobs look like orphans.
`pending_writes` registers the writer in the blob store's pending area (`pending/<token>`: when
it started, on which host, under which process id) before anything is stored, and removes the
registration when the writer is done, whether it committed or failed.

`fsck` spares every unreferenced blob stored (or re-stored: storing an existing blob refreshes its
age) since the start of the oldest live pending writer, and, when repairing, every blob younger
than `MIN_REPAIR_GRACE`, which cannot be lowered (pushes by older versions of modelward, promotions
storing prompt templates or policy files, and dataset adds do not register: the minimum grace,
far longer than SQLite's 30 s lock wait, is what protects them).

A writer is live while its process runs (same host) or, on another host, for
`PENDING_EXPIRY` after it started; registrations of dead writers are reported and removed by
repair. Before each removal fsck looks again for writers that registered since it started and stops
removing if there is one (it may be re-storing one of those blobs). What this cannot exclude: a
push that registers, re-stores an old orphan and commits all within the instant between fsck's last
look and its removal of that blob (`verify` would then report the missing blob). Pure
bookkeeping: no database.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from modelward.errors import ModelwardError
from modelward.storage.blobs import BlobStore

MIN_REPAIR_GRACE = 300.0  # seconds; longer than the database's 30 s busy timeout by far
PENDING_EXPIRY = 24 * 3600.0  # a writer on another host is presumed dead after this long
CLOCK_SKEW = 60.0  # a blob store's clock may be this far behind the writer's


@dataclass(frozen=True)
class PendingWriter:
    token: str
    started_at: float | None  # None: the registration is unreadable
    host: str
    pid: int
    what: str
    alive: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "token": self.token,
            "started_at": self.started_at,
            "host": self.host,
            "pid": self.pid,
            "what": self.what,
            "alive": self.alive,
        }


@contextlib.contextmanager
def pending_writes(blobs: BlobStore, what: str) -> Iterator[str]:
    """Register a pending writer for the duration of the block (yields its token)."""
    token = uuid.uuid4().hex
    record = {
        "started_at": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "what": what[:500],
    }
    blobs.register_pending(token, json.dumps(record, sort_keys=True).encode("utf-8"))
    try:
        yield token
    finally:
        with contextlib.suppress(ModelwardError, OSError):
            blobs.clear_pending(token)


def pending_writers(blobs: BlobStore, now: float) -> list[PendingWriter]:
    """Every registered writer, each judged live or dead."""
    found = []
    here = socket.gethostname()
    for token, raw in blobs.pending():
        try:
            record = json.loads(raw)
            started_at = float(record["started_at"])
            host, pid, what = str(record["host"]), int(record["pid"]), str(record.get("what", ""))
        except (ValueError, KeyError, TypeError):
            found.append(PendingWriter(token, None, "", 0, "", False))
            continue
        # same host: as long as its process runs; elsewhere: until it is presumed dead
        alive = _process_alive(pid) if host == here else now - started_at < PENDING_EXPIRY
        found.append(PendingWriter(token, started_at, host, pid, what, alive))
    return found


def spared_since(writers: list[PendingWriter]) -> float | None:
    """Blobs stored at or after this time may belong to a live writer (None: no live writer)."""
    starts = [w.started_at for w in writers if w.alive and w.started_at is not None]
    return min(starts) - CLOCK_SKEW if starts else None


def new_live_writer(blobs: BlobStore, known: set[str], now: float) -> bool:
    """Whether a live writer registered that is not among the `known` tokens."""
    return any(w.alive and w.token not in known for w in pending_writers(blobs, now))


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except OSError:
        return True
    return True
