"""OTLP/HTTP on the standard paths: `POST /v1/traces` and `POST /v1/metrics`, JSON
(`application/json`) or protobuf (`application/x-protobuf`), optionally gzip-encoded.

Authenticates the caller (a token allowed `telemetry.write`), decodes the body, hands the spans
and the GenAI metric points to the telemetry service and answers with an
`Export*ServiceResponse` in the request's encoding, whose `partialSuccess` counts the spans or
points dropped and why (metrics modelward does not read are skipped, not rejected; the JSON
answer's `modelward` member counts them). A malformed request is a 400 naming what was wrong,
and stores nothing. Request bodies are limited by the server's body limit.
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
    if not body:
        raise InputError("the body is empty: an OTLP request holds at least its message")
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
    from starlette.concurrency import run_in_threadpool

    def ingest() -> Any:
        with bind_principal(principal):
            return registry.telemetry(principal).ingest_otlp_metrics(
                body, PROTOBUF if protobuf else "application/json"
            )

    result = await run_in_threadpool(ingest)
    message = "; ".join(f"{n} {reason}" for reason, n in sorted(result.dropped.items()))
    if protobuf:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceResponse,
        )

        answer = ExportMetricsServiceResponse()
        if result.rejected:
            answer.partial_success.rejected_data_points = result.rejected
            answer.partial_success.error_message = message
        return Response(answer.SerializeToString(), media_type=PROTOBUF)
    partial = {"rejectedDataPoints": str(result.rejected), "errorMessage": message}
    payload: dict[str, Any] = {"partialSuccess": partial} if result.rejected else {}
    payload["modelward"] = result.to_dict()
    return Response(json.dumps(payload), media_type="application/json")
