"""Background work as jobs in the database: enqueue, and workers that claim one job at a time
with a lease. A worker that dies mid-job loses nothing: its lease runs out and another worker
(in any server process) claims the job again, up to `max_attempts` claims. Handlers are the
same services the CLI and HTTP call; a handler's result (a JSON object) is stored with the job.

Every job's payload is sealed when it is queued (an HMAC, with a key derived from the ledger's
private key, over the kind, the payload and who queued it): a worker runs only sealed jobs, so a
row written into the jobs table by anyone but a modelward server (someone who can write the
database) is refused, not run with the rights of the user it names. While a handler runs, the
worker extends its lease, so a long job (scanning a large push) is not claimed twice.

Knows nothing of HTTP; `run_one` does one claim and one job, and
`schedule_canary_judgements` queues the watched canaries' judgements that are due.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

from modelward.errors import InputError, ModelwardError, RateLimitedError
from modelward.services.context import RegistryContext, utc_now
from modelward.storage.metadata.jobs_repository import DONE, FAILED, JobRecord, JobsRepository
from modelward.storage.metadata.ledger_repository import format_time

# (registry, payload, actor): the job runs as the user who queued it, with their rights.
JobHandler = Callable[[RegistryContext, dict[str, Any], str], dict[str, Any]]
DEFAULT_LEASE = timedelta(minutes=5)
SCHEDULER = "modelward-scheduler"  # reads canaries to queue jobs; the jobs run as their owners
MAX_ATTEMPTS = 3
# jobs one user may have queued or running at once (scheduled canary judgements do not count
# against it, and are claimed before any other kind, so a flood of pushes cannot delay them)
MAX_PENDING_PER_USER = 20
FIRST_KINDS = ("canary.judge",)
SEAL_FIELD = "_seal"
_SEAL_INFO = b"modelward job seal v1"
UNTRUSTED = "untrusted"  # the state shown for a job whose outcome fails its seal


def _payload_seal(key: bytes, job_id: int, kind: str, payload: dict[str, Any], by: str) -> str:
    from modelward.services.row_seals import seal

    return seal(key, {"id": job_id, "kind": kind, "payload": payload, "created_by": by})


def _result_seal(key: bytes, job_id: int, state: str, result: dict[str, Any]) -> str:
    from modelward.services.row_seals import seal

    return seal(key, {"id": job_id, "state": state, "result": result})


def verify_job(context: RegistryContext, payload: dict[str, Any], actor: str) -> dict[str, Any]:
    """Re-hash every blob of a version and check its signature and ledger entry."""
    from modelward.services.registry import RegistryService

    uri = payload.get("uri")
    if not isinstance(uri, str):
        raise InputError("a verify job needs a 'uri'")
    report = RegistryService(context, actor=actor).verify(uri)
    return {"ok": report.ok, "problems": report.problems, **report.details}


def canary_judge_job(
    context: RegistryContext, payload: dict[str, Any], actor: str
) -> dict[str, Any]:
    """One canary judgement, acting on a rollback (a watcher enqueues one per interval)."""
    from modelward.services.canary import CanaryService, telemetry_source

    model, environment = payload.get("model"), payload.get("environment")
    if not isinstance(model, str) or not isinstance(environment, str):
        raise InputError("a canary.judge job needs a 'model' and an 'environment'")
    canary_id = payload.get("canary_id")
    if canary_id is not None and (isinstance(canary_id, bool) or not isinstance(canary_id, int)):
        raise InputError("a canary.judge job's 'canary_id' must be an integer")
    service = CanaryService(context, actor=actor, source=telemetry_source(context))
    act = payload.get("act", True) is True
    return service.judge(model, environment, act=act, canary_id=canary_id).to_dict()


def schedule_canary_judgements(context: RegistryContext) -> list[JobRecord]:
    """Queue the acting judgement of every watched canary's current interval slot, once per
    (canary, slot) across every server process (the jobs table's unique dedupe key decides).
    The job runs as the canary's starter. Returns the jobs this call queued."""
    from modelward.services.canary import CanaryService

    service = JobService(context)
    queued = []
    for due in CanaryService(context, actor=SCHEDULER).watch_slots():
        payload = {
            "model": due.model,
            "environment": due.environment,
            "act": True,
            "canary_id": due.canary_id,
            "slot": due.slot,
        }
        job = service.enqueue_once("canary.judge", payload, due.started_by, due.key)
        if job is not None:
            queued.append(job)
    return queued


HANDLERS: Mapping[str, JobHandler] = {"verify": verify_job, "canary.judge": canary_judge_job}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobService:
    def __init__(
        self,
        context: RegistryContext,
        handlers: Mapping[str, JobHandler] = HANDLERS,
        lease: timedelta = DEFAULT_LEASE,
        max_attempts: int = MAX_ATTEMPTS,
        max_pending_per_user: int = MAX_PENDING_PER_USER,
    ) -> None:
        self.ctx = context
        self.handlers = handlers
        self.lease = lease
        self.max_attempts = max_attempts
        self.max_pending_per_user = max_pending_per_user
        from modelward.services.row_seals import derived_key

        self._key = derived_key(context, _SEAL_INFO)

    def enqueue(self, kind: str, payload: dict[str, Any], by: str) -> JobRecord:
        if kind not in self.handlers:
            raise InputError(f"unknown job kind {kind!r}; kinds are {', '.join(self.handlers)}")
        self._check_payload(payload)
        with self.ctx.database.transaction() as conn:
            repo = JobsRepository(conn)
            pending = repo.pending_of(by)
            if pending >= self.max_pending_per_user:
                raise RateLimitedError(
                    f"{by!r} has {pending} jobs queued or running (at most "
                    f"{self.max_pending_per_user}); wait for some to finish"
                )
            job_id = repo.enqueue(kind, payload, format_time(utc_now()), by)
            return self._sealed(repo, job_id, kind, payload, by)

    def _check_payload(self, payload: dict[str, Any]) -> None:
        if SEAL_FIELD in payload:
            raise InputError(f"a job's payload may not carry {SEAL_FIELD!r}")

    def _sealed(
        self, repo: JobsRepository, job_id: int, kind: str, payload: dict[str, Any], by: str
    ) -> JobRecord:
        """Seal the new row's payload to its id (in the transaction that queued it), so that
        neither a forged row nor a copy of a sealed row under another id is ever run."""
        seal = _payload_seal(self._key, job_id, kind, payload, by)
        repo.set_payload(job_id, {**payload, SEAL_FIELD: seal})
        return repo.job(job_id)

    def unsealed_problem(self, job: JobRecord) -> str | None:
        """Why the job's row cannot be trusted to be one a modelward server queued, or None."""
        from modelward.services.row_seals import seal_ok

        payload = dict(job.payload)
        presented = payload.pop(SEAL_FIELD, None)
        expected = {
            "id": job.id,
            "kind": job.kind,
            "payload": payload,
            "created_by": job.created_by,
        }
        if not seal_ok(self._key, expected, presented):
            return (
                f"job {job.id} is not sealed by this registry's key: its row was written or "
                "changed outside modelward; it was not run"
            )
        return None

    def enqueue_once(
        self, kind: str, payload: dict[str, Any], by: str, key: str
    ) -> JobRecord | None:
        """Queue a job unless a job with dedupe `key` was ever queued; None if one was."""
        if kind not in self.handlers:
            raise InputError(f"unknown job kind {kind!r}; kinds are {', '.join(self.handlers)}")
        self._check_payload(payload)
        with self.ctx.database.transaction() as conn:
            repo = JobsRepository(conn)
            job_id = repo.enqueue_once(kind, payload, format_time(utc_now()), by, key)
            return None if job_id is None else self._sealed(repo, job_id, kind, payload, by)

    def get(self, job_id: int) -> JobRecord:
        """The job as stored; `trusted` tells whether its outcome may be believed."""
        with self.ctx.database.read() as conn:
            return JobsRepository(conn).job(job_id)

    def trusted(self, job: JobRecord) -> JobRecord:
        """`job` with its outcome checked: a done or failed job whose result is not sealed by
        a server (for its id and state) is shown as `untrusted`, its result a reason instead."""
        import dataclasses

        from modelward.services.row_seals import seal_ok

        if job.state not in (DONE, FAILED):
            return job
        result = dict(job.result or {})
        presented = result.pop(SEAL_FIELD, None)
        expected = {"id": job.id, "state": job.state, "result": result}
        if seal_ok(self._key, expected, presented):
            return dataclasses.replace(job, result=result)
        reason = (
            f"job {job.id}'s outcome is not sealed by this registry's key: its row was written "
            "or changed outside modelward; it is not trusted"
        )
        return dataclasses.replace(
            job, state=UNTRUSTED, result={"error": reason, "type": "VerificationError"}
        )

    def _finish(
        self, conn: Any, job_id: int, worker: str, state: str, result: dict[str, Any]
    ) -> None:
        sealed = {**result, SEAL_FIELD: _result_seal(self._key, job_id, state, result)}
        JobsRepository(conn).finish(job_id, worker, state, sealed, format_time(utc_now()))

    def claim(self, worker: str) -> JobRecord | None:
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            repo = JobsRepository(conn)
            died = {"error": "every attempt's worker died"}
            for job_id in repo.exhausted(format_time(now), self.max_attempts):
                sealed = {**died, SEAL_FIELD: _result_seal(self._key, job_id, FAILED, died)}
                repo.set_result(job_id, sealed)
            return repo.claim(
                worker,
                format_time(now),
                format_time(now + self.lease),
                sorted(self.handlers),
                self.max_attempts,
                FIRST_KINDS,
            )

    def run_one(self, worker: str) -> JobRecord | None:
        """Claim one job and run it; None when there was nothing to do."""
        job = self.claim(worker)
        if job is None:
            return None
        problem = self.unsealed_problem(job)
        if problem is not None:
            result, state = {"error": problem, "type": "VerificationError"}, FAILED
        else:
            payload = {k: v for k, v in job.payload.items() if k != SEAL_FIELD}
            with self._lease_kept(job.id, worker):
                try:
                    result = self.handlers[job.kind](self.ctx, payload, job.created_by)
                    state = DONE
                except ModelwardError as exc:
                    result, state = {"error": str(exc), "type": type(exc).__name__}, FAILED
        with self.ctx.database.transaction() as conn:
            self._finish(conn, job.id, worker, state, result)
        return self.trusted(self.get(job.id))

    @contextlib.contextmanager
    def _lease_kept(self, job_id: int, worker: str) -> Iterator[None]:
        """Extend the job's lease every third of its length while the handler runs."""
        done = threading.Event()
        every = max(self.lease.total_seconds() / 3, 0.5)

        def keep() -> None:
            while not done.wait(every):
                try:
                    until = format_time(utc_now() + self.lease)
                    with self.ctx.database.transaction() as conn:
                        if not JobsRepository(conn).extend(job_id, worker, until):
                            return  # another worker has it now; finish() will say so
                except ModelwardError:
                    continue  # the database is away for a moment: try again next time

        thread = threading.Thread(target=keep, name=f"modelward-lease-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=5)
