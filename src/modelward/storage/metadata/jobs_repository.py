"""All of the jobs queue's SQL: enqueue (once per dedupe key, when given), claim with a lease
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent workers never wait on or take each
other's job), extend, finish.

A job whose lease ran out (its worker died) is claimable again; `attempts` counts the claims.
Works inside the caller's transaction; does not run jobs or commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from modelward.errors import ConflictError, NotFoundError
from modelward.storage.metadata.auth_tables import jobs

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    lease_until: str | None
    claimed_by: str | None
    result: dict[str, Any] | None
    created_at: str
    created_by: str
    finished_at: str | None
    dedupe_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "payload": {k: v for k, v in self.payload.items() if not k.startswith("_")},
            "state": self.state,
            "attempts": self.attempts,
            "lease_until": self.lease_until,
            "claimed_by": self.claimed_by,
            "result": (
                {k: v for k, v in self.result.items() if not k.startswith("_")}
                if self.result is not None
                else None
            ),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "finished_at": self.finished_at,
            "dedupe_key": self.dedupe_key,
        }


def _job(row: Any) -> JobRecord:
    return JobRecord(
        int(row.id),
        str(row.kind),
        dict(json.loads(row.payload)),
        str(row.state),
        int(row.attempts),
        row.lease_until,
        row.claimed_by,
        json.loads(row.result) if row.result else None,
        str(row.created_at),
        str(row.created_by),
        row.finished_at,
        row.dedupe_key,
    )


class JobsRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def enqueue(self, kind: str, payload: dict[str, Any], at: str, by: str) -> int:
        result = self.conn.execute(
            insert(jobs).values(
                kind=kind,
                payload=json.dumps(payload, sort_keys=True),
                state=QUEUED,
                attempts=0,
                created_at=at,
                created_by=by,
            )
        )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def enqueue_once(
        self, kind: str, payload: dict[str, Any], at: str, by: str, key: str
    ) -> int | None:
        """Queue a job unless one with `key` was ever queued (by any process): its id, or None.
        The unique key decides, so concurrent callers queue it exactly once."""
        values = {
            "kind": kind,
            "payload": json.dumps(payload, sort_keys=True),
            "state": QUEUED,
            "attempts": 0,
            "created_at": at,
            "created_by": by,
            "dedupe_key": key,
        }
        if self.conn.dialect.name in ("postgresql", "sqlite"):
            found = self.conn.execute(_insert_unless_keyed(self.conn, values)).scalar()
            return None if found is None else int(found)
        if self.conn.execute(select(jobs.c.id).where(jobs.c.dedupe_key == key)).first():
            return None
        return self._insert(values)

    def _insert(self, values: dict[str, Any]) -> int:
        key = self.conn.execute(insert(jobs).values(**values)).inserted_primary_key
        return int(key[0]) if key else 0

    def pending_of(self, user: str) -> int:
        """How many jobs `user` queued that are queued or running, scheduled ones aside."""
        found = self.conn.execute(
            select(func.count())
            .select_from(jobs)
            .where(
                jobs.c.created_by == user,
                jobs.c.state.in_((QUEUED, RUNNING)),
                jobs.c.dedupe_key.is_(None),
            )
        ).scalar()
        return int(found or 0)

    def set_payload(self, job_id: int, payload: dict[str, Any]) -> None:
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(payload=json.dumps(payload, sort_keys=True))
        )

    def set_result(self, job_id: int, result: dict[str, Any]) -> None:
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(result=json.dumps(result, sort_keys=True))
        )

    def job(self, job_id: int) -> JobRecord:
        row = self.conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"no job {job_id}")
        return _job(row)

    def claim(
        self,
        worker: str,
        now: str,
        lease_until: str,
        kinds: list[str],
        max_attempts: int,
        first_kinds: tuple[str, ...] = (),
    ) -> JobRecord | None:
        """Take the oldest claimable job (of `first_kinds` before any other): queued, or
        running with a lease that ran out."""
        claimable = or_(
            jobs.c.state == QUEUED,
            and_(jobs.c.state == RUNNING, jobs.c.lease_until < now),
        )
        query = (
            select(jobs.c.id)
            .where(claimable, jobs.c.kind.in_(kinds), jobs.c.attempts < max_attempts)
            .order_by(case((jobs.c.kind.in_(first_kinds), 0), else_=1), jobs.c.id)
            .limit(1)
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = self.conn.execute(query).scalar()
        if found is None:
            return None
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == found)
            .values(
                state=RUNNING,
                claimed_by=worker,
                lease_until=lease_until,
                attempts=jobs.c.attempts + 1,
            )
        )
        return self.job(int(found))

    def exhausted(self, now: str, max_attempts: int) -> list[int]:
        """Jobs whose every attempt died with its worker: marked failed, never retried."""
        rows = self.conn.execute(
            select(jobs.c.id).where(
                jobs.c.state == RUNNING,
                jobs.c.lease_until < now,
                jobs.c.attempts >= max_attempts,
            )
        )
        ids = [int(r[0]) for r in rows]
        for job_id in ids:
            self.conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    state=FAILED,
                    finished_at=now,
                    result=json.dumps({"error": "every attempt's worker died"}),
                )
            )
        return ids

    def extend(self, job_id: int, worker: str, lease_until: str) -> bool:
        """Push the lease of a job `worker` still holds to `lease_until`; False if it lost it."""
        done = self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.claimed_by == worker, jobs.c.state == RUNNING)
            .values(lease_until=lease_until)
        )
        return done.rowcount == 1

    def finish(self, job_id: int, worker: str, state: str, result: dict[str, Any], at: str) -> None:
        """Record the outcome, unless the lease was lost to another worker meanwhile."""
        done = self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.claimed_by == worker, jobs.c.state == RUNNING)
            .values(state=state, result=json.dumps(result, sort_keys=True), finished_at=at)
        )
        if done.rowcount != 1:
            raise ConflictError(f"job {job_id} is no longer leased to {worker}")


def _insert_unless_keyed(conn: Connection, values: dict[str, Any]) -> Any:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, in the dialect's words."""
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement = pg_insert(jobs)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(jobs)
    return (
        statement.values(**values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(jobs.c.id)
    )
