"""OTLP metric requests (`ExportMetricsServiceRequest`) decoded into the histogram points of the
GenAI metrics modelward reads, from protobuf or from the OTLP JSON encoding.

Read (OTel GenAI semantic conventions, `genai.SEMCONV_VERSION`; all histograms there):
`gen_ai.client.operation.duration`, `gen_ai.client.token.usage` (split by `gen_ai.token.type`
`input`/`output`), `gen_ai.server.request.duration`, `gen_ai.server.time_to_first_token`,
`gen_ai.server.time_per_output_token`, and modelward's own `modelward.feedback.score` (a
histogram of user feedback scores, any finite number). Other metrics are skipped (counted, not
errors); a read metric sent as another kind (gauge, sum, exponential histogram) or a token-usage
point without a known token type is dropped with the reason.

Hostile input: a malformed request (wrong types, a truncated protobuf, NaN or infinite values,
negative durations or token counts, counts beyond `MAX_COUNT`, bucket counts that do not add up
to the count, unordered bounds, a point without times or temporality) is refused whole with an
`InputError` naming the metric and the field. Pure: bytes in, points out; no I/O.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelward.errors import InputError
from modelward.runtime.genai import MAX_FEEDBACK, MAX_SECONDS, MAX_TOKENS
from modelward.runtime.otlp import (
    AttrValue,
    _double,
    _json_attributes,
    _list,
    _object,
    _pb_attributes,
    _refuse_constant,
    _uint64,
)

FEEDBACK_METRIC = "modelward.feedback.score"
OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
SERVER_DURATION = "gen_ai.server.request.duration"
TTFT = "gen_ai.server.time_to_first_token"
TPOT = "gen_ai.server.time_per_output_token"
# the metrics read, and whether their values may be negative (only feedback scores may)
READ_METRICS: Mapping[str, bool] = {
    OPERATION_DURATION: False,
    TOKEN_USAGE: False,
    SERVER_DURATION: False,
    TTFT: False,
    TPOT: False,
    FEEDBACK_METRIC: True,
}
TOKEN_TYPES = {"input": "input", "output": "output", "prompt": "input", "completion": "output"}
MAX_POINTS = 20_000
MAX_BUCKETS = 512
MAX_COUNT = 10**12  # per point; beyond it a count is a bug or an attack, not traffic
# The largest magnitude one recorded value may have, per metric (the spans' bounds): a point
# whose sum, min, max or bucket bounds go beyond it is malformed, so no statistic overflows.
VALUE_LIMITS: Mapping[str, float] = {
    OPERATION_DURATION: MAX_SECONDS,
    SERVER_DURATION: MAX_SECONDS,
    TTFT: MAX_SECONDS,
    TPOT: MAX_SECONDS,
    TOKEN_USAGE: float(MAX_TOKENS),
    FEEDBACK_METRIC: MAX_FEEDBACK,
}
_KINDS_JSON = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")
_TEMPORALITY = {
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE_MASK


@dataclass(frozen=True)
class HistogramPoint:
    """A decoded histogram point of a read metric, before attribution."""

    metric: str
    token_type: str | None
    temporality: str  # "delta" or "cumulative"
    start_unix_nano: int
    time_unix_nano: int
    count: int
    sum: float
    min: float | None
    max: float | None
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    attributes: Mapping[str, AttrValue]
    resource: Mapping[str, AttrValue]

    @property
    def series(self) -> str:
        """The digest naming this point's time series (metric, temporality, attributes)."""
        ident = [self.metric, self.temporality, _sorted(self.resource), _sorted(self.attributes)]
        text = json.dumps(ident, sort_keys=True, default=_bytes_hex, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class DecodedMetrics:
    points: list[HistogramPoint] = field(default_factory=list)
    total: int = 0  # every data point in the request, read or not
    skipped: int = 0  # points of metrics modelward does not read
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _sorted(attrs: Mapping[str, AttrValue]) -> list[Any]:
    return sorted([k, v] for k, v in attrs.items())


def _bytes_hex(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)  # pragma: no cover - attributes are JSON-like


def decode_metrics(body: bytes, content_type: str) -> DecodedMetrics:
    """The read points of one OTLP metrics request; `content_type` picks the encoding."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/x-protobuf", "application/protobuf"):
        return metrics_from_protobuf(body)
    if kind in ("application/json", ""):
        return metrics_from_json(body)
    raise InputError(
        f"unsupported content type {content_type!r}: send application/json or "
        "application/x-protobuf"
    )


# ------------------------------------------------------------------------------------- JSON


def metrics_from_json(body: bytes | str) -> DecodedMetrics:
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InputError("an OTLP metrics request is a JSON object with resourceMetrics")
    out = DecodedMetrics()
    for r_index, rm in enumerate(_list(document.get("resourceMetrics", []), "resourceMetrics")):
        where = f"resourceMetrics[{r_index}]"
        rm = _object(rm, where)
        resource = _object(rm.get("resource", {}), f"{where}.resource")
        resource_attrs = _json_attributes(resource.get("attributes", []), f"{where}.resource")
        for s_index, sm in enumerate(_list(rm.get("scopeMetrics", []), f"{where}.scopeMetrics")):
            s_where = f"{where}.scopeMetrics[{s_index}]"
            sm = _object(sm, s_where)
            for m_index, metric in enumerate(_list(sm.get("metrics", []), f"{s_where}.metrics")):
                _json_metric(_object(metric, f"{s_where}.metrics[{m_index}]"), resource_attrs, out)
    return out


def _json_metric(
    metric: dict[str, Any], resource: Mapping[str, AttrValue], out: DecodedMetrics
) -> None:
    name = metric.get("name", "")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise InputError("a metric's name must be a non-empty string of at most 255 characters")
    kinds = [k for k in _KINDS_JSON if k in metric]
    if len(kinds) > 1:
        raise InputError(f"metric {name}: holds more than one of {', '.join(kinds)}")
    if not kinds:
        return  # a metric with no data: nothing to count
    kind = kinds[0]
    data = _object(metric[kind], f"metric {name}.{kind}")
    points = _list(data.get("dataPoints", []), f"metric {name}.{kind}.dataPoints")
    _count(out, len(points))
    if name not in READ_METRICS:
        out.skipped += len(points)
        return
    if kind != "histogram":
        if points:
            out.drop(f"{name} must be a histogram, not a {kind}", len(points))
        return
    temporality = _temporality(data.get("aggregationTemporality"), name)
    for index, raw in enumerate(points):
        where = f"metric {name}.dataPoints[{index}]"
        point = _object(raw, where)
        flags = _uint64(point.get("flags", 0), f"{where}.flags")
        bounds = tuple(
            _double(b, f"{where}.explicitBounds")
            for b in _list(point.get("explicitBounds", []), f"{where}.explicitBounds")
        )
        buckets = tuple(
            _uint64(c, f"{where}.bucketCounts")
            for c in _list(point.get("bucketCounts", []), f"{where}.bucketCounts")
        )
        _add_point(
            out,
            name,
            temporality,
            where,
            flags=flags,
            start=_uint64(point.get("startTimeUnixNano", 0), f"{where}.startTimeUnixNano"),
            time=_uint64(point.get("timeUnixNano", 0), f"{where}.timeUnixNano"),
            count=_uint64(point.get("count", 0), f"{where}.count"),
            total=_optional_double(point.get("sum"), f"{where}.sum"),
            low=_optional_double(point.get("min"), f"{where}.min"),
            high=_optional_double(point.get("max"), f"{where}.max"),
            bounds=bounds,
            buckets=buckets,
            attributes=_json_attributes(point.get("attributes", []), where),
            resource=resource,
        )


def _optional_double(value: Any, where: str) -> float | None:
    return None if value is None else _double(value, where)


def _temporality(value: Any, name: str) -> str:
    if isinstance(value, str) and value in _TEMPORALITY:
        value = _TEMPORALITY[value]
    if value == 1 and not isinstance(value, bool):
        return "delta"
    if value == 2 and not isinstance(value, bool):
        return "cumulative"
    raise InputError(
        f"metric {name}: aggregationTemporality must be delta (1) or cumulative (2), "
        f"got {str(value)[:40]!r}"
    )


def _count(out: DecodedMetrics, n: int) -> None:
    out.total += n
    if out.total > MAX_POINTS:
        raise InputError(f"more than {MAX_POINTS} data points in one request")


# --------------------------------------------------------------------------------- protobuf


def metrics_from_protobuf(body: bytes) -> DecodedMetrics:
    try:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
    except ImportError as exc:  # pragma: no cover - the server extra installs it
        from modelward.errors import DependencyError

        raise DependencyError(
            "OTLP protobuf needs opentelemetry-proto: pip install 'modelward[server]'"
        ) from exc
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise InputError(f"the body is not an OTLP ExportMetricsServiceRequest: {exc}") from exc
    out = DecodedMetrics()
    for r_index, rm in enumerate(request.resource_metrics):
        resource = _pb_attributes(rm.resource.attributes, f"resourceMetrics[{r_index}].resource")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _pb_metric(metric, resource, out)
    return out


_PB_KINDS = {
    "gauge": "gauge",
    "sum": "sum",
    "histogram": "histogram",
    "exponential_histogram": "exponentialHistogram",
    "summary": "summary",
}


def _pb_metric(metric: Any, resource: Mapping[str, AttrValue], out: DecodedMetrics) -> None:
    name = str(metric.name)
    if not name or len(name) > 255:
        raise InputError("a metric's name must be a non-empty string of at most 255 characters")
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    _count(out, len(data.data_points))
    if name not in READ_METRICS:
        out.skipped += len(data.data_points)
        return
    if kind != "histogram":
        if data.data_points:
            out.drop(f"{name} must be a histogram, not a {_PB_KINDS[kind]}", len(data.data_points))
        return
    temporality = _temporality(int(data.aggregation_temporality), name)
    for index, point in enumerate(data.data_points):
        where = f"metric {name}.dataPoints[{index}]"
        _add_point(
            out,
            name,
            temporality,
            where,
            flags=int(point.flags),
            start=int(point.start_time_unix_nano),
            time=int(point.time_unix_nano),
            count=int(point.count),
            total=_finite(point.sum, f"{where}.sum") if point.HasField("sum") else None,
            low=_finite(point.min, f"{where}.min") if point.HasField("min") else None,
            high=_finite(point.max, f"{where}.max") if point.HasField("max") else None,
            bounds=tuple(_finite(b, f"{where}.explicitBounds") for b in point.explicit_bounds),
            buckets=tuple(int(c) for c in point.bucket_counts),
            attributes=_pb_attributes(point.attributes, where),
            resource=resource,
        )


def _finite(value: float, where: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{where}: {number!r} is not a finite number")
    return number


# --------------------------------------------------------------------------------- checking


def _add_point(
    out: DecodedMetrics,
    name: str,
    temporality: str,
    where: str,
    *,
    flags: int,
    start: int,
    time: int,
    count: int,
    total: float | None,
    low: float | None,
    high: float | None,
    bounds: tuple[float, ...],
    buckets: tuple[int, ...],
    attributes: Mapping[str, AttrValue],
    resource: Mapping[str, AttrValue],
) -> None:
    """Check one histogram point and keep it (InputError on anything impossible)."""
    if flags & _NO_RECORDED_VALUE:
        out.drop("no recorded value (a stale point)")
        return
    if time <= 0:
        raise InputError(f"{where}.timeUnixNano: a point needs its time")
    if start <= 0 or start > time:
        raise InputError(f"{where}.startTimeUnixNano: must be set and not after timeUnixNano")
    if count > MAX_COUNT:
        raise InputError(f"{where}.count: {count} is beyond the {MAX_COUNT} a point may hold")
    if count and total is None:
        raise InputError(f"{where}.sum: a point with a count needs its sum")
    total = 0.0 if total is None else total
    if len(bounds) > MAX_BUCKETS:
        raise InputError(f"{where}.explicitBounds: more than {MAX_BUCKETS} bounds")
    if any(b >= a for b, a in itertools.pairwise(bounds)):
        raise InputError(f"{where}.explicitBounds: must be strictly increasing")
    if buckets or bounds:
        if len(buckets) != len(bounds) + 1:
            raise InputError(
                f"{where}.bucketCounts: {len(buckets)} buckets for {len(bounds)} bounds "
                "(there is one more bucket than bounds)"
            )
        if sum(buckets) != count:
            raise InputError(f"{where}.bucketCounts: they add up to {sum(buckets)}, not {count}")
    if low is not None and high is not None and low > high:
        raise InputError(f"{where}: min {low} is above max {high}")
    limit = VALUE_LIMITS[name]
    if abs(total) > count * limit or any(
        v is not None and abs(v) > limit for v in (low, high, *bounds)
    ):
        raise InputError(f"{where}: a value beyond ±{limit:g}, the most {name} may record")
    if not READ_METRICS[name]:
        for value, label in ((total, "sum"), (low, "min"), (high, "max")):
            if value is not None and value < 0:
                raise InputError(f"{where}.{label}: {value} is negative; {name} cannot be")
        if any(c and bound < 0 for bound, c in zip(bounds, buckets, strict=False)):
            raise InputError(f"{where}: values below zero are counted; {name} cannot be negative")
    if count and low is not None and high is not None:
        mean = total / count
        slack = 1e-9 * max(1.0, abs(low), abs(high))
        if not low - slack <= mean <= high + slack:
            raise InputError(f"{where}: the mean sum/count {mean} is outside [min, max]")
    token_type: str | None = None
    if name == TOKEN_USAGE:
        raw = attributes.get("gen_ai.token.type")
        token_type = TOKEN_TYPES.get(raw) if isinstance(raw, str) else None
        if token_type is None:
            out.drop("gen_ai.client.token.usage without gen_ai.token.type input or output")
            return
    out.points.append(
        HistogramPoint(
            metric=name,
            token_type=token_type,
            temporality=temporality,
            start_unix_nano=start,
            time_unix_nano=time,
            count=count,
            sum=total,
            min=low,
            max=high,
            bounds=bounds,
            bucket_counts=buckets,
            attributes=attributes,
            resource=resource,
        )
    )


@dataclass(frozen=True)
class PointClaims:
    """What a point (its attributes, then its resource's) says served it; as `SpanFacts`."""

    release_id: str | None
    model: str | None
    version: int | None
    environment: str | None
    response_model: str | None
    arm: str | None
    error: bool


_CLAIM_LIMITS = {"release": 64, "environment": 100, "arm": 40}


def point_claims(point: HistogramPoint) -> PointClaims:
    """The attribution claims of `point` (InputError on a wrong type, naming the metric)."""

    def claim(*keys: str) -> AttrValue:
        for source in (point.attributes, point.resource):
            for key in keys:
                if source.get(key) is not None:
                    return source[key]
        return None

    def text(value: AttrValue, what: str) -> str | None:
        if value is None:
            return None
        if what == "release" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        limit = _CLAIM_LIMITS.get(what, 200)
        if not isinstance(value, str) or not value or len(value) > limit:
            raise InputError(
                f"metric {point.metric}: the {what} must be a string of 1 to {limit} characters"
            )
        return value

    version = claim("modelward.version")
    if isinstance(version, str) and version.isdigit() and len(version) < 10:
        version = int(version)
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 2**31
    ):
        raise InputError(f"metric {point.metric}: modelward.version must be a positive integer")
    return PointClaims(
        release_id=text(claim("modelward.release", "modelward.release_id"), "release"),
        model=text(claim("modelward.model"), "model"),
        version=version,
        environment=text(
            claim("modelward.environment", "deployment.environment.name", "deployment.environment"),
            "environment",
        ),
        response_model=text(
            claim("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
            "response model",
        ),
        arm=text(claim("modelward.arm"), "arm"),
        error=point.attributes.get("error.type") is not None,
    )
