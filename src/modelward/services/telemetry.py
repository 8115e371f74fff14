"""Telemetry in: OTLP trace requests (JSON or protobuf, from the server or from files) mapped to
per-request `Observation`s, attributed to a release, stored once per (trace_id, span_id); OTLP
metric requests' GenAI histogram points (`runtime.otlp_metrics`) attributed the same way and
stored once per (series, start, time); and telemetry out: observations, metric points and
per-release, per-window summaries of both.

Attribution (who served this request?) trusts only registry state that checks out:
- a span naming `modelward.release` is that release (its row verified against the ledger); a
  model, version or environment it also claims must agree, or the span is dropped;
- else the model and version come from `modelward.model`/`modelward.version`, or from
  `gen_ai.response.model` given as `models:/NAME/N`, `sha256:<root digest>`, a name mapped by
  the caller (`response_models`), or a registry model name; with an environment
  (`modelward.environment`, `deployment.environment.name`) the release is the one current in
  that environment at the span's end time (not at arrival: a late span goes to the release
  that served it). A span whose version is not that release's keeps `release_id=None`.
A metric point is attributed like a span from its attributes and its resource's (the point's
time stands for the span's end time).
Guards: a span (or point) older than `max_age_s` or ahead of the clock by more than `max_skew_s`
is dropped; a span already stored is a duplicate (not an error); a malformed request stores nothing.
Prompt and output text is stored only with `store_content=True`.

Telemetry rows are not ledgered (their volume is that of the traffic): who may write them is
decided by the `telemetry.write` permission, and each row records the writer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.observations import MetricPoint, Observation
from modelward.core.principal import bound_principal
from modelward.core.roles import Action
from modelward.errors import InputError, ModelwardError, NotFoundError, PathError
from modelward.runtime.genai import RefusalClassifier, SpanFacts, is_genai_span, read_span
from modelward.runtime.otlp import Span, decode_traces, traces_from_json
from modelward.runtime.otlp_metrics import (
    DecodedMetrics,
    HistogramPoint,
    PointClaims,
    decode_metrics,
    metrics_from_json,
    point_claims,
)
from modelward.runtime.signals import WindowSummary, summarise
from modelward.services.context import RegistryContext, current_actor
from modelward.services.gate_config import load_gate_config
from modelward.services.users import require
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.registry_repository import RegistryRepository
from modelward.storage.metadata.telemetry_repository import TelemetryRepository, WindowTotals

MAX_AGE_S = 7 * 24 * 3600.0
MAX_SKEW_S = 300.0
RELEASE_SKEW_S = 5.0  # a release's start may be seen this much early or late by a server clock
MAX_CONTENT = 64 * 1024
MAX_SERIES_WINDOWS = 10_000
MAX_WINDOW_S = 366 * 24 * 3600.0  # a summary or series window: at most a year


@dataclass
class IngestResult:
    spans: int = 0
    accepted: int = 0
    duplicates: int = 0
    skipped: int = 0  # not model calls (HTTP, database spans)
    dropped: dict[str, int] = field(default_factory=dict)
    metrics: MetricIngestResult | None = None  # metric points, when files held any

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def rejected(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: IngestResult) -> None:
        self.spans += other.spans
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        for reason, count in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return {
            "spans": self.spans,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "dropped": dict(sorted(self.dropped.items())),
            **({"metrics": self.metrics.to_dict()} if self.metrics is not None else {}),
        }


@dataclass
class MetricIngestResult:
    points: int = 0  # every data point in the request(s)
    accepted: int = 0
    duplicates: int = 0
    skipped: int = 0  # points of metrics modelward does not read
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    @property
    def rejected(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass(frozen=True)
class _Window:
    release_id: str
    version: int
    start_ns: int
    end_ns: int | None  # None: still current


class TelemetryService:
    def __init__(
        self,
        context: RegistryContext,
        actor: str | None = None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        store_content: bool = False,
        refusal_classifier: RefusalClassifier | None = None,
        response_models: Mapping[str, str] | None = None,
        max_age_s: float = MAX_AGE_S,
        max_skew_s: float = MAX_SKEW_S,
    ) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.clock_ns = clock_ns
        self.store_content = store_content
        self.refusal_classifier = refusal_classifier
        self.response_models = dict(response_models or {})
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s

    # -- in ---------------------------------------------------------------------------------

    def ingest_otlp(self, body: bytes, content_type: str = "application/json") -> IngestResult:
        """Map and store one OTLP trace request; InputError (nothing stored) if it is malformed."""
        return self.ingest_spans(decode_traces(body, content_type))

    def ingest_otlp_metrics(
        self, body: bytes, content_type: str = "application/json"
    ) -> MetricIngestResult:
        """Map and store one OTLP metrics request; InputError (nothing stored) if malformed."""
        return self.ingest_points(decode_metrics(body, content_type))

    def ingest_files(self, paths: Sequence[Path]) -> IngestResult:
        """OTLP JSON files of traces or metrics: one request per file, or one per line (the OTel
        file exporter's JSON lines). Every file is read and checked before anything is stored;
        the metric points' outcome is in the result's `metrics`."""
        spans: list[Span] = []
        metrics = DecodedMetrics()
        for path in paths:
            path = Path(path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PathError(f"{path}: cannot read it: {exc}") from exc
            try:
                _read_request(text, spans, metrics)
            except InputError as whole:
                lines = [line for line in text.splitlines() if line.strip()]
                if len(lines) < 2 or _one_document(text):  # not JSON lines: say what was wrong
                    raise InputError(f"{path}: {whole}") from whole
                for number, line in enumerate(lines, 1):
                    try:
                        _read_request(line, spans, metrics)
                    except InputError as exc:
                        raise InputError(f"{path}:{number}: {exc}") from exc
        # both are checked before either is stored
        claims = [(point, point_claims(point)) for point in metrics.points]
        result = self.ingest_spans(spans)
        if metrics.total:
            result.metrics = self._store_points(metrics, claims)
        return result

    def ingest_spans(self, spans: Sequence[Span]) -> IngestResult:
        result = IngestResult(spans=len(spans))
        now = self.clock_ns()
        mapped: list[tuple[Span, SpanFacts]] = []
        for span in spans:
            if not is_genai_span(span):
                result.skipped += 1
                continue
            facts = read_span(
                span,
                with_content=self.store_content,
                refusal_classifier=self.refusal_classifier,
            )
            mapped.append((span, facts))
        principal = bound_principal()
        rows: list[tuple[Observation, str | None]] = []
        with self.ctx.database.transaction() as conn:
            require(
                conn, self.actor, Action.TELEMETRY_WRITE, load_gate_config(self.ctx).permissions
            )
            attribution = _Attribution(conn, self.response_models)
            for span, facts in mapped:
                late = self._out_of_time(span.end_unix_nano, now)
                if late is not None:
                    result.drop(late)
                    continue
                try:
                    observation = attribution.observe(span, facts)
                except _Unattributed as why:
                    result.drop(str(why))
                    continue
                if principal is not None:
                    principal.check_model(observation.model)  # a model-limited token
                rows.append((observation, self._content(facts)))
            inserted = TelemetryRepository(conn).insert_new(rows, now, self.actor)
        result.accepted = inserted
        result.duplicates = len(rows) - inserted
        return result

    def _out_of_time(self, time_ns: int, now: int) -> str | None:
        """Why a span or point at `time_ns` is not stored (too old, or in the future), or None."""
        if time_ns < now - int(self.max_age_s * 1e9):
            return "older than the accepted age"
        if time_ns > now + int(self.max_skew_s * 1e9):
            return "ends in the future"
        return None

    def ingest_points(self, decoded: DecodedMetrics) -> MetricIngestResult:
        """Attribute and store decoded metric points (InputError, nothing stored, on a bad
        attribute)."""
        claims = [(point, point_claims(point)) for point in decoded.points]
        return self._store_points(decoded, claims)

    def _store_points(
        self, decoded: DecodedMetrics, claims: Sequence[tuple[HistogramPoint, PointClaims]]
    ) -> MetricIngestResult:
        result = MetricIngestResult(points=decoded.total, skipped=decoded.skipped)
        for reason, n in decoded.dropped.items():
            result.drop(reason, n)
        now = self.clock_ns()
        principal = bound_principal()
        rows: list[MetricPoint] = []
        with self.ctx.database.transaction() as conn:
            require(
                conn, self.actor, Action.TELEMETRY_WRITE, load_gate_config(self.ctx).permissions
            )
            attribution = _Attribution(conn, self.response_models)
            for point, claim in claims:
                late = self._out_of_time(point.time_unix_nano, now)
                if late is not None:
                    result.drop(late)
                    continue
                try:
                    model, version, release_id, environment = attribution.attribute(
                        claim.release_id,
                        claim.model,
                        claim.version,
                        claim.environment,
                        claim.response_model,
                        point.time_unix_nano,
                    )
                except _Unattributed as why:
                    result.drop(str(why))
                    continue
                if principal is not None:
                    principal.check_model(model)  # a model-limited token
                rows.append(
                    MetricPoint(
                        model=model,
                        version=version,
                        release_id=release_id,
                        environment=environment,
                        arm=claim.arm,
                        metric=point.metric,
                        token_type=point.token_type,
                        error=claim.error,
                        temporality=point.temporality,
                        series=point.series,
                        start_unix_nano=point.start_unix_nano,
                        time_unix_nano=point.time_unix_nano,
                        count=point.count,
                        sum=point.sum,
                        min=point.min,
                        max=point.max,
                        bounds=point.bounds,
                        bucket_counts=point.bucket_counts,
                    )
                )
            inserted = TelemetryRepository(conn).insert_new_points(rows, now, self.actor)
        result.accepted = inserted
        result.duplicates = len(rows) - inserted
        return result

    def _content(self, facts: SpanFacts) -> str | None:
        if not self.store_content or (facts.input_text is None and facts.output_text is None):
            return None
        text = json.dumps({"input": facts.input_text, "output": facts.output_text})
        return text[:MAX_CONTENT]

    # -- out --------------------------------------------------------------------------------

    def observations(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[Observation]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return observations(conn, model, environment, release_id, since_ns, until_ns)

    def series(
        self,
        model: str,
        environment: str | None = None,
        *,
        since_ns: int,
        until_ns: int,
        window_s: float = 300.0,
    ) -> list[WindowTotals]:
        """The time series of `model` (optionally in one environment): per release and window
        of `window_s` seconds aligned on `since_ns`, the sums and counts of its requests over
        [since_ns, until_ns), added up by the database (a chart costs one query, not a read
        of every request). Means and rates are `WindowTotals`' sums over its counts; the
        percentiles are `summary`'s."""
        _check_window(window_s)
        if not until_ns > since_ns:
            raise InputError("a series needs a positive window and a range ending after its start")
        width = int(window_s * 1e9)
        if (until_ns - since_ns) // width > MAX_SERIES_WINDOWS:
            raise InputError(
                f"{(until_ns - since_ns) // width} windows is more than a series has "
                f"({MAX_SERIES_WINDOWS}); widen the window"
            )
        principal = bound_principal()
        if principal is not None:
            principal.check_model(model)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return TelemetryRepository(conn).window_totals(
                model,
                environment=environment,
                since_ns=since_ns,
                until_ns=until_ns,
                width_ns=width,
            )

    def summary(
        self,
        model: str,
        environment: str | None = None,
        *,
        window_s: float = 300.0,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[WindowSummary]:
        _check_window(window_s)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            RegistryRepository(conn).require_model_id(model)  # NotFoundError, not "no data"
            if release_id is not None:
                row = GateRepository(conn).release_by_id(release_id)
                if row is None or row.release.state.model != model:
                    raise NotFoundError(f"models:/{model} has no release {release_id!r}")
            found = observations(conn, model, environment, release_id, since_ns, until_ns)
            points = metric_points(conn, model, environment, release_id, since_ns, until_ns)
        return summarise(found, window_s, points=points)


def _check_window(window_s: float) -> None:
    if not 0 < window_s <= MAX_WINDOW_S:  # also refuses NaN
        raise InputError(
            f"the window must be more than 0 and at most {MAX_WINDOW_S:.0f} seconds "
            f"(a year), not {window_s:g}"
        )


def observations(
    conn_or_ctx: Connection | RegistryContext,
    model: str,
    environment: str | None = None,
    release_id: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[Observation]:
    """The stored observations of `model` (optionally one environment or release) whose span
    ended in [since_ns, until_ns), in time order. Checks no permission: for services that
    already did (the canary judge inside its own transaction)."""
    if isinstance(conn_or_ctx, RegistryContext):
        with conn_or_ctx.database.read() as conn:
            return observations(conn, model, environment, release_id, since_ns, until_ns)
    rows = TelemetryRepository(conn_or_ctx).observations(
        model,
        environment=environment,
        release_id=release_id,
        since_ns=since_ns,
        until_ns=until_ns,
    )
    return [row.observation for row in rows]


def metric_points(
    conn_or_ctx: Connection | RegistryContext,
    model: str,
    environment: str | None = None,
    release_id: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[MetricPoint]:
    """The stored metric points of `model` whose time is in [since_ns, until_ns), in time
    order, as stored (cumulative or delta). Checks no permission, like `observations`."""
    if isinstance(conn_or_ctx, RegistryContext):
        with conn_or_ctx.database.read() as conn:
            return metric_points(conn, model, environment, release_id, since_ns, until_ns)
    return TelemetryRepository(conn_or_ctx).metric_points(
        model,
        environment=environment,
        release_id=release_id,
        since_ns=since_ns,
        until_ns=until_ns,
    )


def _one_document(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _read_request(text: str, spans: list[Span], metrics: DecodedMetrics) -> None:
    """One OTLP JSON request of traces or of metrics, added to what was read so far."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None  # traces_from_json names the problem
    if isinstance(document, dict) and "resourceMetrics" in document:
        decoded = metrics_from_json(text)
        metrics.points += decoded.points
        metrics.total += decoded.total
        metrics.skipped += decoded.skipped
        for reason, n in decoded.dropped.items():
            metrics.drop(reason, n)
    else:
        spans += traces_from_json(text)


class _Unattributed(Exception):
    """A span that names no release or version modelward can trust (dropped, with the reason)."""


class _Attribution:
    """Release attribution against verified registry rows, cached for one request."""

    def __init__(self, conn: Connection, response_models: Mapping[str, str]) -> None:
        self.conn = conn
        self.response_models = response_models
        self._windows: dict[tuple[str, str], list[_Window]] = {}
        self._releases: dict[str, tuple[str, int, str] | None] = {}
        self._models: dict[str, bool] = {}

    def observe(self, span: Span, facts: SpanFacts) -> Observation:
        model, version, release_id, environment = self.attribute(
            facts.release_id,
            facts.model,
            facts.version,
            facts.environment,
            facts.response_model,
            span.end_unix_nano,
        )
        return Observation(
            model=model,
            version=version,
            release_id=release_id,
            environment=environment,
            time_unix_nano=span.end_unix_nano,
            trace_id=span.trace_id,
            span_id=span.span_id,
            error=facts.error,
            duration_s=facts.duration_s,
            ttft_s=facts.ttft_s,
            tpot_s=facts.tpot_s,
            input_tokens=facts.input_tokens,
            output_tokens=facts.output_tokens,
            finish_reason=facts.finish_reason,
            refusal=facts.refusal,
            tool_calls=facts.tool_calls,
            safety_triggered=facts.safety_triggered,
            feedback=facts.feedback,
            arm=facts.arm,
        )

    def attribute(
        self,
        claimed_release: str | None,
        model: str | None,
        version: int | None,
        environment: str | None,
        response_model: str | None,
        at_ns: int,
    ) -> tuple[str, int, str | None, str | None]:
        """(model, version, release id, environment) of what served a request ending at
        `at_ns`, from the claims (the module docstring's rules); _Unattributed if none."""
        release_id: str | None = None
        if claimed_release is not None:
            known = self._release(claimed_release)
            if known is None:
                raise _Unattributed("names a release that does not exist or does not verify")
            r_model, r_version, r_env = known
            for claimed, actual, what in (
                (model, r_model, "model"),
                (version, r_version, "version"),
                (environment, r_env, "environment"),
            ):
                if claimed is not None and claimed != actual:
                    raise _Unattributed(f"its {what} disagrees with the release it names")
            model, version, environment, release_id = r_model, r_version, r_env, claimed_release
        else:
            if model is None and response_model is not None:
                model, version = self._response_model(response_model, version)
            if model is None:
                raise _Unattributed("names no release, model or known response model")
            if not self._model_exists(model):
                raise _Unattributed("names a model the registry does not have")
            if environment is not None:
                window = self._window_at(model, environment, at_ns, version)
                if window is not None:
                    release_id = window.release_id
                    version = window.version if version is None else version
            if version is None:
                raise _Unattributed("names no version and no environment release at its time")
        return model, version, release_id, environment

    def _release(self, release_id: str) -> tuple[str, int, str] | None:
        if release_id not in self._releases:
            from modelward.services.state_integrity import verify_row

            row = GateRepository(self.conn).release_by_id(release_id)
            ok = row is not None and verify_row(self.conn, "gate_releases", release_id) is None
            self._releases[release_id] = (
                (row.release.model, row.release.version, row.release.environment)
                if ok and row is not None
                else None
            )
        return self._releases[release_id]

    def _model_exists(self, model: str) -> bool:
        if model not in self._models:
            try:
                RegistryRepository(self.conn).require_model_id(model)
                self._models[model] = True
            except (NotFoundError, ModelwardError):
                self._models[model] = False
        return self._models[model]

    def _response_model(self, text: str, version: int | None) -> tuple[str | None, int | None]:
        from modelward.core.names import parse_uri

        text = self.response_models.get(text, text)
        if text.startswith(("models:/", "sha256:")):
            try:
                uri = parse_uri(text)
            except ModelwardError:
                return None, version
            if uri.digest is not None:
                matches = RegistryRepository(self.conn).versions_by_root(uri.digest)
                return (matches[0].model, matches[0].number) if matches else (None, version)
            if uri.version is not None:
                return uri.name, uri.version
            return uri.name, version
        return (text, version) if self._model_exists(text) else (None, version)

    def _window_at(
        self, model: str, environment: str, at_ns: int, version: int | None
    ) -> _Window | None:
        """The release current in `environment` at `at_ns`; with `version`, the one of that
        version whose time in the environment (widened by the clock skew) covers `at_ns`."""
        windows = self._windows_of(model, environment)
        skew = int(RELEASE_SKEW_S * 1e9)
        strict = [
            w for w in windows if w.start_ns <= at_ns and (w.end_ns is None or at_ns < w.end_ns)
        ]
        if version is None:
            return strict[-1] if strict else None
        for window in strict:
            if window.version == version:
                return window
        near = [
            w
            for w in windows
            if w.version == version
            and w.start_ns - skew <= at_ns
            and (w.end_ns is None or at_ns < w.end_ns + skew)
        ]
        return near[-1] if near else None

    def _windows_of(self, model: str, environment: str) -> list[_Window]:
        key = (model, environment)
        if key not in self._windows:
            from modelward.services.state_integrity import verify_row

            rows = GateRepository(self.conn).releases(model, environment)
            trusted = [
                r
                for r in rows
                if verify_row(self.conn, "gate_releases", r.release.release_id) is None
            ]
            windows = []
            for index, row in enumerate(trusted):
                start = int(row.release.created_at.timestamp() * 1e9)
                nxt = trusted[index + 1] if index + 1 < len(trusted) else None
                end = int(nxt.release.created_at.timestamp() * 1e9) if nxt else None
                windows.append(_Window(row.release.release_id, row.release.version, start, end))
            self._windows[key] = windows
        return self._windows[key]


def summaries_to_json(summaries: Iterable[WindowSummary]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in summaries]
