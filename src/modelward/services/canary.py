"""Canary judgement as a use case: start a canary, judge it (a signed, ledgered verdict), act on
a rollback, and show its status.

A canary compares a candidate version against the baseline release of one model in one
environment. `start` is refused unless the environment has a release: when the environment's
current release serves another version, that release is the baseline (the serving layer sends
the canary share of traffic to the candidate, arm `canary`); when it already serves the
candidate (it was promoted), the baseline is the release before it. The definition is a
`canaries` row anchored by a `canary.start` ledger event.

`judge` reads the requests the `ObservationSource` holds since the start, decides with
`runtime.canary.judge`, signs the verdict and every statistic as an in-toto Statement in a DSSE
envelope with the registry key, and stores it (`canary_verdicts`, anchored by `canary.verdict`).
The verdict is signed before anything is done and recorded in the same unit of work as what it
does: with `act`, a `rollback` verdict acts once: if the environment's current release is a
release of the candidate, `ReleaseService.rollback` restores the baseline release, as the acting
user, in the transaction that records the verdict (a verdict that cannot be signed or recorded
rolls nothing back; a canary that acted meanwhile is refused, ConflictError);
otherwise the environment is left on the baseline and the canary is ended (the serving layer
stops routing to the candidate). Either way the alert goes out (`AlertService`). A canary that
has acted is ended and never acts again. Rows are verified against the ledger before use; a row
that fails is refused (VerificationError), never trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.canonical import canonical_json
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement, Subject
from modelward.core.names import parse_uri
from modelward.core.observations import MetricPoint, Observation
from modelward.core.roles import Action
from modelward.errors import (
    ConflictError,
    DeniedError,
    InputError,
    NotFoundError,
    SignatureFormatError,
    VerificationError,
)
from modelward.runtime.canary import (
    DEFAULT_METRICS,
    CanaryPlan,
    MetricSpec,
    Verdict,
    judge,
    select_arms,
    select_point_arms,
)
from modelward.runtime.sources import ObservationSource
from modelward.services._canary_rows import envelope_problem, observations_digest, plan_of
from modelward.services.canary_history import CanaryHistory
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import GateConfig, load_gate_config
from modelward.services.registry import resolve_in
from modelward.services.state_integrity import (
    anchored_append,
    check_releases,
    verify_current,
    verify_row,
)
from modelward.services.users import require
from modelward.signing.keys import Verifier
from modelward.storage.metadata.canary_repository import CanaryRepository, CanaryRow, VerdictRow
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository

VERDICT_PREDICATE_TYPE = "https://modelward.dev/canary-verdict/v1"


class StoredObservations:
    """The requests the telemetry service stored (`services.telemetry.observations`)."""

    def __init__(self, context: RegistryContext) -> None:
        self.ctx = context

    def observations(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[Observation]:
        from modelward.services.telemetry import observations

        return observations(self.ctx, model, environment, release_id, since_ns, until_ns)

    def metric_points(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[MetricPoint]:
        from modelward.services.telemetry import metric_points

        return metric_points(self.ctx, model, environment, release_id, since_ns, until_ns)


def telemetry_source(context: RegistryContext) -> ObservationSource:
    """The registry's ingested telemetry."""
    return StoredObservations(context)


def canary_subject(model: str, environment: str) -> str:
    return f"canary:{model}@{environment}"


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


@dataclass(frozen=True)
class JudgeResult:
    canary_id: int
    verdict: Verdict
    statement_digest: str
    recorded: bool
    acted: str | None
    alerted: int
    candidate_uri: str
    baseline_release_id: str
    current_release_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict.to_dict(),
            "canary_id": self.canary_id,
            "candidate": self.candidate_uri,
            "baseline_release_id": self.baseline_release_id,
            "current_release_id": self.current_release_id,
            "statement_digest": self.statement_digest,
            "recorded": self.recorded,
            "acted": self.acted,
            "alerts_delivered": self.alerted,
        }


@dataclass(frozen=True)
class WatchSlot:
    """One scheduled judgement of a watched canary: its interval number since the start."""

    canary_id: int
    model: str
    environment: str
    slot: int
    started_by: str

    @property
    def key(self) -> str:
        """The job's dedupe key: one judgement per canary and slot, across all servers."""
        return f"canary.judge:{self.canary_id}:{self.slot}"


class CanaryService:
    def __init__(
        self,
        context: RegistryContext,
        actor: str | None = None,
        source: ObservationSource | None = None,
        clock: Callable[[], datetime] = utc_now,
        alert: Callable[[str, dict[str, Any]], int] | None = None,
    ) -> None:
        """`alert(event, payload)` sends an alert and returns how many webhooks took it
        (default: `AlertService.send` on the same registry, as the same actor)."""
        self.ctx = context
        self.actor = actor or current_actor()
        self.source = source
        self.clock = clock
        self.config: GateConfig = load_gate_config(context)
        self._alert = alert

    # -- start ------------------------------------------------------------------------------

    def start(
        self,
        model: str,
        environment: str,
        candidate_uri: str,
        baseline_uri: str | None = None,
        metrics: Sequence[str] = (),
        *,
        alpha: float = 0.05,
        min_samples: int = 100,
        warmup_s: float = 0.0,
        watch_s: float | None = None,
    ) -> dict[str, Any]:
        """Start a canary; with `watch_s`, every server's job worker schedules one acting
        judgement (a `canary.judge` job) per `watch_s` seconds until it ends (`watch_slots`)."""
        self.config.path.index(environment)
        specs = tuple(MetricSpec.parse(m) for m in (metrics or DEFAULT_METRICS))
        now = self.clock()
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.PROMOTE, self.config.permissions, model=model)
            repo = RegistryRepository(conn)
            repo.require_model_id(model)
            candidate = resolve_in(repo, parse_uri(candidate_uri))
            if candidate.model != model:
                raise InputError(f"the candidate {candidate.uri} is not a version of {model}")
            baseline = self._baseline_release(conn, model, environment, candidate.number)
            if baseline_uri is not None:
                wanted = resolve_in(repo, parse_uri(baseline_uri))
                if (wanted.model, wanted.number) != (model, baseline.version):
                    raise InputError(
                        f"the baseline must be the release the canary compares against: "
                        f"{baseline.release_id} (models:/{model}/{baseline.version}), "
                        f"not {wanted.uri}"
                    )
            plan = CanaryPlan(
                model=model,
                environment=environment,
                candidate_version=candidate.number,
                baseline_version=baseline.version,
                baseline_release_id=baseline.release_id,
                started_ns=_ns(now),
                metrics=specs,
                alpha=alpha,
                min_samples=min_samples,
                warmup_s=warmup_s,
                watch_s=watch_s,
            )
            canaries = CanaryRepository(conn)
            canary_id = canaries.add_canary(
                model=model,
                environment=environment,
                candidate_version=candidate.number,
                baseline_version=baseline.version,
                baseline_release_id=baseline.release_id,
                plan=canonical_json(plan.to_dict()).decode("utf-8"),
                at=format_time(now),
                by=self.actor,
            )
            anchored_append(
                conn,
                self.actor,
                "canary.start",
                canary_subject(model, environment),
                {"canary_id": canary_id, **plan.to_dict()},
                now,
                rows=[("canaries", str(canary_id))],
            )
        return {"canary_id": canary_id, "candidate": candidate.uri, **plan.to_dict()}

    def _baseline_release(
        self, conn: Connection, model: str, environment: str, candidate_version: int
    ) -> Any:
        check_releases(conn, model, environment)
        history = [r.release for r in GateRepository(conn).releases(model, environment)]
        if not history:
            raise NotFoundError(
                f"models:/{model} has no release in {environment}: a canary compares a "
                "candidate against the environment's current release"
            )
        current = history[-1]
        if current.version != candidate_version:
            return current
        for release in reversed(history):
            if release.version != candidate_version:
                return release
        raise InputError(
            f"models:/{model}/{candidate_version} is the only version ever released in "
            f"{environment}: there is no baseline to compare it against"
        )

    # -- reading, verified ------------------------------------------------------------------

    def _trusted_canary(self, conn: Connection, model: str, environment: str) -> CanaryRow:
        row = CanaryRepository(conn).latest_canary(model, environment)
        subject = canary_subject(model, environment)
        if row is None:
            raise NotFoundError(f"no canary of models:/{model} in {environment}")
        problem = verify_current(conn, "canaries", str(row.id), subject)
        if problem is not None:
            raise VerificationError(f"{problem}; it is not trusted")
        return row

    def _trusted_verdicts(self, conn: Connection, canary_id: int) -> list[VerdictRow]:
        return self._verified(conn, CanaryRepository(conn).verdicts(canary_id))

    def _verified(self, conn: Connection, rows: list[VerdictRow]) -> list[VerdictRow]:
        """`rows`, once each checks out (ledger anchor, signature, digest); else refused."""
        verifier = Verifier(self.ctx.signer.public_key)
        for row in rows:
            problem = verify_row(conn, "canary_verdicts", str(row.id))
            if problem is None:
                problem = envelope_problem(row, verifier)
            if problem is not None:
                raise VerificationError(f"{problem}; it is not trusted")
        return rows

    # -- judging ----------------------------------------------------------------------------

    def evaluate(self, model: str, environment: str) -> tuple[CanaryRow, CanaryPlan, Verdict, Any]:
        """The verdict now, nothing recorded: (canary row, plan, verdict, context)."""
        self.config.path.index(environment)
        now = self.clock()
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW, self.config.permissions, model=model)
            RegistryRepository(conn).require_model_id(model)
            row = self._trusted_canary(conn, model, environment)
            plan = plan_of(row)
            verdicts = self._trusted_verdicts(conn, row.id)
            check_releases(conn, model, environment)
            history = GateRepository(conn).releases(model, environment)
        current = history[-1].release if history else None
        ids = [r.release.release_id for r in history]
        after = (
            ids.index(plan.baseline_release_id) + 1 if plan.baseline_release_id in ids else len(ids)
        )
        candidate_releases = [  # the candidate's releases since the baseline's
            r.release.release_id
            for r in history[after:]
            if r.release.version == plan.candidate_version
        ]
        if self.source is None:
            raise InputError(
                "no telemetry source is configured: canary judgement reads the requests "
                "ingested by the telemetry service"
            )
        observations = self.source.observations(
            model, environment=environment, since_ns=plan.started_ns
        )
        reader = getattr(self.source, "metric_points", None)  # a MetricPointSource too?
        points: list[MetricPoint] = (
            reader(model, environment=environment, since_ns=plan.started_ns)
            if callable(reader)
            else []
        )
        verdict = judge(
            plan,
            observations,
            _ns(now),
            current.release_id if current else None,
            candidate_releases,
            points,
        )
        arms = select_arms(observations, plan, _ns(now), candidate_releases)
        point_arms = select_point_arms(points, plan, _ns(now), candidate_releases)
        digest = observations_digest(arms.canary + arms.baseline, point_arms)
        ctx = {
            "now": now,
            "current": current,
            "candidate_releases": candidate_releases,
            "observations_digest": digest,
            "verdicts": verdicts,
        }
        return row, plan, verdict, ctx

    def judge(
        self, model: str, environment: str, act: bool = False, canary_id: int | None = None
    ) -> JudgeResult:
        """Judge, sign and record the verdict; with `act`, act on a rollback (once). With
        `canary_id`, refuse (ConflictError) when it is no longer the environment's canary."""
        with self.ctx.database.read() as conn:  # refuse before acting, not after
            require(conn, self.actor, Action.PROMOTE, self.config.permissions, model=model)
        row, plan, verdict, ctx = self.evaluate(model, environment)
        if canary_id is not None and row.id != canary_id:
            raise ConflictError(
                f"canary {canary_id} is no longer the canary of models:/{model} in "
                f"{environment} (canary {row.id} is); not judged"
            )
        current = ctx["current"]
        ended = any(v.acted for v in ctx["verdicts"])
        acted: str | None = None
        alert_problem: str | None = None
        if ended:
            verdict = Verdict(
                verdict.verdict,
                (
                    *verdict.reasons,
                    "this canary already acted (it has ended); nothing more is done",
                ),
                verdict.metrics,
                verdict.counts,
                verdict.alpha,
            )
        subject = self._bundle_digest(plan.model, plan.candidate_version)
        # signs before anything is done: a verdict that cannot be signed stops here
        self._signed(row.id, plan, verdict, ctx, subject, "rollback pending")
        recorded: list[str] = []

        def record(conn: Connection, what: str | None) -> None:
            recorded.append(self._record(conn, row.id, plan, verdict, ctx, subject, what))

        if act and verdict.verdict == "rollback" and not ended:
            if current is None or current.version != plan.candidate_version:
                with self.ctx.database.read() as conn:
                    require(conn, self.actor, Action.ROLLBACK, self.config.permissions, model=model)
                acted = f"canary ended; {plan.environment} stays on {plan.baseline_release_id}"
            else:
                from modelward.services.releases import ReleaseService

                def record_rollback(conn: Connection, result: Any) -> None:
                    nonlocal acted
                    acted = f"rolled back to {result.release.release_id}"
                    record(conn, acted)  # one unit of work: no rollback without its verdict

                try:
                    ReleaseService(self.ctx, self.actor).rollback(
                        plan.model,
                        plan.environment,
                        plan.baseline_release_id,
                        also=record_rollback,
                    )
                except DeniedError as exc:
                    acted = f"rollback refused: {exc}"
                    alert_problem = "; ".join(exc.reasons[:5]) or str(exc)
        if not recorded:
            with self.ctx.database.transaction() as conn:
                record(conn, acted)
        statement_digest = recorded[0]
        alerted = 0
        if acted is not None:
            payload = {
                "model": plan.model,
                "environment": plan.environment,
                "candidate": f"models:/{plan.model}/{plan.candidate_version}",
                "baseline_release_id": plan.baseline_release_id,
                "verdict": verdict.verdict,
                "acted": acted,
                "reasons": list(verdict.reasons),
                "statement_digest": statement_digest,
                "problem": alert_problem,
            }
            alerted = self._send_alert("canary.rollback", payload)
        return JudgeResult(
            canary_id=row.id,
            verdict=verdict,
            statement_digest=statement_digest,
            recorded=True,
            acted=acted,
            alerted=alerted,
            candidate_uri=f"models:/{plan.model}/{plan.candidate_version}",
            baseline_release_id=plan.baseline_release_id,
            current_release_id=current.release_id if current else None,
        )

    def _signed(
        self,
        canary_id: int,
        plan: CanaryPlan,
        verdict: Verdict,
        ctx: dict[str, Any],
        subject: str,
        acted: str | None,
    ) -> tuple[Envelope, str]:
        """The verdict's signed in-toto Statement and its digest."""
        current = ctx["current"]
        statement = Statement(
            subjects=(
                Subject.of(f"models:/{plan.model}/{plan.candidate_version}", sha256=subject),
            ),
            predicate_type=VERDICT_PREDICATE_TYPE,
            predicate={
                "canary_id": canary_id,
                "plan": plan.to_dict(),
                "judged_at": format_time(ctx["now"]),
                "judged_by": self.actor,
                "current_release_id": current.release_id if current else None,
                "observations_digest": ctx["observations_digest"],
                "acted": acted,
                **verdict.to_dict(),
            },
        )
        payload = statement.to_bytes()
        envelope = Envelope.sign(
            IN_TOTO_PAYLOAD_TYPE, payload, self.ctx.signer.sign, self.ctx.signer.keyid
        )
        return envelope, "sha256:" + hashlib.sha256(payload).hexdigest()

    def _record(
        self,
        conn: Connection,
        canary_id: int,
        plan: CanaryPlan,
        verdict: Verdict,
        ctx: dict[str, Any],
        subject: str,
        acted: str | None,
    ) -> str:
        """Sign and store the verdict with its ledger event in `conn`; its statement digest.
        A verdict that acts is refused (ConflictError) when the canary acted meanwhile."""
        envelope, statement_digest = self._signed(canary_id, plan, verdict, ctx, subject, acted)
        require(conn, self.actor, Action.PROMOTE, self.config.permissions, model=plan.model)
        self._trusted_canary(conn, plan.model, plan.environment)
        if acted is not None and any(v.acted for v in self._trusted_verdicts(conn, canary_id)):
            raise ConflictError(
                f"canary {canary_id} of models:/{plan.model} in {plan.environment} acted "
                "meanwhile; nothing more is done"
            )
        now: datetime = ctx["now"]
        verdict_id = CanaryRepository(conn).add_verdict(
            canary_id=canary_id,
            verdict=verdict.verdict,
            statement_digest=statement_digest,
            envelope=json.dumps(envelope.to_dict(), sort_keys=True),
            acted=acted,
            at=format_time(now),
            by=self.actor,
        )
        anchored_append(
            conn,
            self.actor,
            "canary.verdict",
            canary_subject(plan.model, plan.environment),
            {
                "canary_id": canary_id,
                "model": plan.model,
                "environment": plan.environment,
                "candidate_version": plan.candidate_version,
                "baseline_release_id": plan.baseline_release_id,
                "verdict": verdict.verdict,
                "statement_digest": statement_digest,
                "acted": acted,
                "reasons": list(verdict.reasons[:20]),
            },
            now,
            rows=[("canary_verdicts", str(verdict_id))],
        )
        return statement_digest

    def _send_alert(self, event: str, payload: dict[str, Any]) -> int:
        if self._alert is not None:
            return self._alert(event, payload)
        from modelward.services.alerts import AlertService

        return AlertService(self.ctx, self.actor).send(event, payload).delivered

    def _bundle_digest(self, model: str, version: int) -> str:
        with self.ctx.database.read() as conn:
            return RegistryRepository(conn).version(model, version).root_digest

    # -- watching ---------------------------------------------------------------------------

    def watch_slots(self) -> list[WatchSlot]:
        """The judgements due now: for the newest canary of each model and environment that
        was started with a watch interval, has not ended and has no final verdict (promote or
        rollback) recorded, its current interval slot (1 after the first interval, ...).
        Rows that fail their ledger check are skipped (and logged), never scheduled. Checks no
        permission: the scheduler only queues; the job judges with its starter's rights."""
        import logging

        now_ns = _ns(self.clock())
        due = []
        with self.ctx.database.read() as conn:
            for row in CanaryRepository(conn).latest_canaries():
                subject = canary_subject(row.model, row.environment)
                try:
                    problem = verify_current(conn, "canaries", str(row.id), subject)
                    if problem is not None:
                        raise VerificationError(problem)
                    plan = plan_of(row)
                    if plan.watch_s is None:
                        continue
                    # only the verdicts that would end the watching are checked here (each
                    # second, on every server); the job's judgement checks them all
                    final = [
                        v
                        for v in CanaryRepository(conn).verdicts(row.id)
                        if v.acted or v.verdict in ("promote", "rollback")
                    ]
                    self._verified(conn, final)
                except VerificationError as exc:
                    logging.getLogger("modelward.canary").error(
                        "canary %s is not watched: %s", row.id, exc
                    )
                    continue
                if final:
                    continue
                slot = (now_ns - plan.started_ns) // int(plan.watch_s * 1e9)
                if slot >= 1:
                    due.append(WatchSlot(row.id, row.model, row.environment, slot, row.created_by))
        return due

    # -- shadow -----------------------------------------------------------------------------

    def shadow(self, model: str, environment: str) -> dict[str, Any]:
        """Shadow comparison of the canary's candidate against its baseline on the same
        requests (arm `shadow`), since the canary started; nothing recorded."""
        from modelward.runtime.shadow import shadow_report

        self.config.path.index(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW, self.config.permissions, model=model)
            RegistryRepository(conn).require_model_id(model)
            plan = plan_of(self._trusted_canary(conn, model, environment))
        if self.source is None:
            raise InputError("no telemetry source is configured: shadow mode reads telemetry")
        observations = self.source.observations(
            model, environment=environment, since_ns=plan.started_ns
        )
        report = shadow_report(
            observations, model, plan.candidate_version, plan.baseline_version, alpha=plan.alpha
        )
        return {
            "candidate": f"models:/{model}/{plan.candidate_version}",
            "baseline_release_id": plan.baseline_release_id,
            **report.to_dict(),
        }

    # -- history ----------------------------------------------------------------------------

    def history(self, model: str, environment: str) -> CanaryHistory | None:
        """The latest canary of `model` in `environment` and every verdict recorded on it,
        with the statistics each verdict's signed statement carries; None when it never had
        one. Nothing is judged now (no telemetry is read); a row or envelope that fails its
        check is refused (VerificationError), never shown."""
        from modelward.services.canary_history import recorded_verdict

        self.config.path.index(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            RegistryRepository(conn).require_model_id(model)
            if CanaryRepository(conn).latest_canary(model, environment) is None:
                return None
            row = self._trusted_canary(conn, model, environment)
            verdicts = self._trusted_verdicts(conn, row.id)
        plan = plan_of(row)
        recorded = []
        for v in verdicts:
            envelope = Envelope.from_dict(json.loads(v.envelope))  # its signature checked above
            try:
                statement = Statement.from_bytes(envelope.payload)
            except SignatureFormatError as exc:
                raise VerificationError(f"canary verdict {v.id}: {exc}") from exc
            if statement.predicate_type != VERDICT_PREDICATE_TYPE:
                raise VerificationError(f"canary verdict {v.id}: not a canary verdict statement")
            recorded.append(recorded_verdict(v.id, row.id, v.statement_digest, statement.predicate))
        return CanaryHistory(
            canary_id=row.id,
            model=model,
            environment=environment,
            candidate_version=plan.candidate_version,
            baseline_version=plan.baseline_version,
            baseline_release_id=plan.baseline_release_id,
            started_at=row.created_at,
            started_by=row.created_by,
            plan=plan,
            verdicts=tuple(recorded),
        )

    # -- status -----------------------------------------------------------------------------

    def status(self, model: str, environment: str) -> dict[str, Any]:
        """The canary's definition, its recorded verdicts (verified) and the verdict now."""
        row, plan, verdict, ctx = self.evaluate(model, environment)
        recorded = [
            {
                "verdict": v.verdict,
                "acted": v.acted,
                "statement_digest": v.statement_digest,
                "at": v.created_at,
                "by": v.created_by,
            }
            for v in ctx["verdicts"]
        ]
        current = ctx["current"]
        return {
            "canary_id": row.id,
            "started_at": row.created_at,
            "started_by": row.created_by,
            "candidate": f"models:/{model}/{plan.candidate_version}",
            "baseline_release_id": plan.baseline_release_id,
            "current_release_id": current.release_id if current else None,
            "ended": any(v.acted for v in ctx["verdicts"]),
            "plan": plan.to_dict(),
            "recorded_verdicts": recorded,
            "now": verdict.to_dict(),
            "verdict": verdict.verdict,
        }
