"""Failed authentications per client address, counted in the database so that every server
process sharing it enforces one limit: after `per_minute` failures in the last minute (a sliding
window over per-minute counts), the address is refused until enough of them have aged out.
A process re-reads an address's count at most once a second; its own failures count at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modelward.storage.metadata.database import Database

_WINDOW_SECONDS = 60.0
_REREAD_SECONDS = 1.0


class FailureLimiter:
    def __init__(
        self,
        database: Database,
        per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, tuple[float, float]] = {}  # client -> (read at, recent failures)
        self._lock = threading.Lock()

    def recent_failures(self, client: str, now: float) -> float:
        """Failures of `client` within the last minute, from the shared per-minute counts: the
        current minute's, and the previous minute's weighted by how much of it is in the window."""
        from modelward.storage.metadata.server_repository import AuthFailures

        minute = int(now // _WINDOW_SECONDS)
        with self.database.read() as conn:
            counts = AuthFailures(conn).counts(_key(client), minute - 1)
        inside = 1.0 - (now % _WINDOW_SECONDS) / _WINDOW_SECONDS
        return counts.get(minute, 0) + counts.get(minute - 1, 0) * inside

    def blocked(self, client: str) -> bool:
        """Whether `client` has used up its failed authentications for now."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(client)
        if seen is None or now - seen[0] >= _REREAD_SECONDS:
            seen = (now, self.recent_failures(client, now))
            with self._lock:
                if len(self._seen) > 10_000:
                    self._seen.clear()
                self._seen[client] = seen
        return seen[1] >= self.per_minute

    def failed(self, client: str) -> None:
        from modelward.storage.metadata.server_repository import AuthFailures

        now = self._clock()
        minute = int(now // _WINDOW_SECONDS)
        with self.database.transaction() as conn:
            failures = AuthFailures(conn)
            failures.add(_key(client), minute)
            if minute % 10 == 0:  # keep the table small: nothing older than the window matters
                failures.forget_before(minute - 1)
        with self._lock:
            read_at, count = self._seen.get(client, (now, 0.0))
            self._seen[client] = (read_at, count + 1)


def _key(client: str) -> str:
    return client[:100]
