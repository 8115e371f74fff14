"""OTLP/HTTP on the standard paths: `POST /v1/traces` and `POST /v1/metrics`, JSON
(`application/json`) or protobuf (`application/x-protobuf`), optionally gzip-encoded.

Authenticates the caller (a token allowed `telemetry.write`), decodes the body, hands the spans
to the telemetry service and answers with an `Export*ServiceResponse` in the request's encoding,
whose `partialSuccess` counts the spans dropped and why. A malformed request is a 400 naming
what was wrong, and stores nothing. Request bodies are limited by the server's body limit.

Metric points are decoded and checked, but per-release signals are derived from spans: metric
points are answered as rejected in `partialSuccess`, saying so, and are not stored.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import InputError
from modelward.interfaces.http.server import Caller, Registry
from modelward.runtime.otlp import gunzip_bounded
from modelward.services.access import authorise

router = APIRouter(tags=["otlp"])
PROTOBUF = "application/x-protobuf"


async def _body(request: Request) -> tuple[bytes, bool]:
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = gunzip_bounded(body)
    elif encoding not in ("identity", ""):
        raise InputError(f"unsupported content encoding {encoding!r}: send gzip or identity")
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", PROTOBUF, "application/protobuf"):
        raise InputError(f"unsupported content type {kind!r}: send application/json or {PROTOBUF}")
    return body, kind != "application/json"


@router.post("/v1/traces")
async def traces(
    request: Request, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> Response:
    authorise(registry.ctx, principal, Action.TELEMETRY_WRITE, checked_later=True)
    body, protobuf = await _body(request)
    from starlette.concurrency import run_in_threadpool

    def ingest() -> Any:
        with bind_principal(principal):
            return registry.telemetry(principal).ingest_otlp(
                body, PROTOBUF if protobuf else "application/json"
            )

    result = await run_in_threadpool(ingest)
    message = "; ".join(f"{n} {reason}" for reason, n in sorted(result.dropped.items()))
    if protobuf:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        answer = ExportTraceServiceResponse()
        if result.rejected:
            answer.partial_success.rejected_spans = result.rejected
            answer.partial_success.error_message = message
        return Response(answer.SerializeToString(), media_type=PROTOBUF)
    partial = {"rejectedSpans": str(result.rejected), "errorMessage": message}
    payload: dict[str, Any] = {"partialSuccess": partial} if result.rejected else {}
    payload["modelward"] = result.to_dict()
    return Response(json.dumps(payload), media_type="application/json")


@router.post("/v1/metrics")
async def metrics(
    request: Request, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> Response:
    authorise(registry.ctx, principal, Action.TELEMETRY_WRITE, checked_later=True)
    body, protobuf = await _body(request)
    points = _count_points(body, protobuf)
    message = "modelward derives per-release signals from spans; metric points are not stored"
    if protobuf:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceResponse,
        )

        answer = ExportMetricsServiceResponse()
        if points:
            answer.partial_success.rejected_data_points = points
            answer.partial_success.error_message = message
        return Response(answer.SerializeToString(), media_type=PROTOBUF)
    payload = (
        {"partialSuccess": {"rejectedDataPoints": str(points), "errorMessage": message}}
        if points
        else {}
    )
    return Response(json.dumps(payload), media_type="application/json")


def _count_points(body: bytes, protobuf: bool) -> int:
    """The number of data points in a metrics request, after checking its shape."""
    kinds = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")
    if protobuf:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        request = ExportMetricsServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise InputError(f"the body is not an OTLP ExportMetricsServiceRequest: {exc}") from exc
        total = 0
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        total += len(getattr(metric, kind).data_points)
        return total
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("resourceMetrics", []), list):
        raise InputError("an OTLP metrics request is a JSON object with resourceMetrics")
    total = 0
    for rm in document.get("resourceMetrics", []):
        scopes = rm.get("scopeMetrics", []) if isinstance(rm, dict) else None
        if not isinstance(scopes, list):
            raise InputError("resourceMetrics[].scopeMetrics must be a list")
        for sm in scopes:
            metrics_list = sm.get("metrics", []) if isinstance(sm, dict) else None
            if not isinstance(metrics_list, list):
                raise InputError("scopeMetrics[].metrics must be a list")
            for metric in metrics_list:
                if not isinstance(metric, dict):
                    raise InputError("a metric must be an object")
                for kind in kinds:
                    data = metric.get(kind)
                    if isinstance(data, dict):
                        points = data.get("dataPoints", [])
                        if not isinstance(points, list):
                            raise InputError(f"{kind}.dataPoints must be a list")
                        total += len(points)
    return total
