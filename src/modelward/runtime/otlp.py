"""OTLP trace requests (`ExportTraceServiceRequest`) decoded into plain spans, from protobuf or
from the OTLP JSON encoding (proto3 JSON mapping with the OTLP exceptions: trace and span ids are
hex, not base64; 64-bit integers may be strings; enums may be names or numbers).

Everything here is hostile input: wrong types, bad ids, NaN, deep or huge attribute values are
refused with an `InputError` naming the span and the field, never a crash. Limits bound what
one request may hold. Pure: bytes in, spans out; no I/O.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelward.errors import InputError

MAX_SPANS = 20_000
MAX_ATTRIBUTES = 256  # per span or resource
MAX_EVENTS = 256
MAX_STRING = 256 * 1024
MAX_KEY = 256
MAX_ARRAY = 1024
MAX_DEPTH = 4
MAX_DECOMPRESSED = 64 * 1024 * 1024

AttrValue = str | bool | int | float | bytes | list[Any] | dict[str, Any] | None

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-fA-F]{16}$")
_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_unix_nano: int
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True)
class Span:
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    name: str
    start_unix_nano: int
    end_unix_nano: int
    status_code: int  # 0 unset, 1 ok, 2 error
    attributes: Mapping[str, AttrValue]
    resource: Mapping[str, AttrValue]
    events: tuple[SpanEvent, ...] = ()


def gunzip_bounded(body: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Decompress a gzip body, refusing one that inflates past `limit` (a zip bomb)."""
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the gzip body is corrupt: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise InputError(f"the body inflates past {limit} bytes")
    return out


def decode_traces(body: bytes, content_type: str) -> list[Span]:
    """The spans of one OTLP trace request; `content_type` picks the encoding."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/x-protobuf", "application/protobuf"):
        return traces_from_protobuf(body)
    if kind in ("application/json", ""):
        return traces_from_json(body)
    raise InputError(
        f"unsupported content type {content_type!r}: send application/json or "
        "application/x-protobuf"
    )


# ------------------------------------------------------------------------------------- JSON


def traces_from_json(body: bytes | str) -> list[Span]:
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InputError("an OTLP trace request is a JSON object with resourceSpans")
    resource_spans = _list(document.get("resourceSpans", []), "resourceSpans")
    spans: list[Span] = []
    for r_index, resource_span in enumerate(resource_spans):
        where = f"resourceSpans[{r_index}]"
        resource_span = _object(resource_span, where)
        resource = _object(resource_span.get("resource", {}), f"{where}.resource")
        resource_attrs = _json_attributes(resource.get("attributes", []), f"{where}.resource")
        scopes = resource_span.get("scopeSpans", resource_span.get("instrumentationLibrarySpans"))
        for s_index, scope in enumerate(_list(scopes or [], f"{where}.scopeSpans")):
            s_where = f"{where}.scopeSpans[{s_index}]"
            scope = _object(scope, s_where)
            for index, raw in enumerate(_list(scope.get("spans", []), f"{s_where}.spans")):
                if len(spans) >= MAX_SPANS:
                    raise InputError(f"more than {MAX_SPANS} spans in one request")
                spans.append(_json_span(raw, resource_attrs, f"{s_where}.spans[{index}]"))
    return spans


def _json_span(raw: Any, resource: Mapping[str, AttrValue], where: str) -> Span:
    span = _object(raw, where)
    trace_id = _hex_id(span.get("traceId"), _TRACE_ID, f"{where}.traceId", 32)
    span_id = _hex_id(span.get("spanId"), _SPAN_ID, f"{where}.spanId", 16)
    start = _uint64(span.get("startTimeUnixNano", 0), f"{where}.startTimeUnixNano")
    end = _uint64(span.get("endTimeUnixNano", 0), f"{where}.endTimeUnixNano")
    status = _object(span.get("status", {}), f"{where}.status")
    code = status.get("code", 0)
    if isinstance(code, str) and code in _STATUS:
        code = _STATUS[code]
    if isinstance(code, bool) or not isinstance(code, int) or code not in (0, 1, 2):
        raise InputError(f"{where}.status.code: {code!r} is not a status code")
    name = span.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_KEY * 4:
        raise InputError(f"{where}.name: must be a string of at most {MAX_KEY * 4} characters")
    events = []
    for e_index, raw_event in enumerate(_list(span.get("events", []), f"{where}.events")):
        if e_index >= MAX_EVENTS:
            raise InputError(f"{where}.events: more than {MAX_EVENTS}")
        e_where = f"{where}.events[{e_index}]"
        event = _object(raw_event, e_where)
        e_name = event.get("name", "")
        if not isinstance(e_name, str) or len(e_name) > MAX_KEY:
            raise InputError(f"{e_where}.name: must be a short string")
        events.append(
            SpanEvent(
                e_name,
                _uint64(event.get("timeUnixNano", 0), f"{e_where}.timeUnixNano"),
                _json_attributes(event.get("attributes", []), e_where),
            )
        )
    return Span(
        trace_id,
        span_id,
        name,
        start,
        end,
        int(code),
        _json_attributes(span.get("attributes", []), where),
        resource,
        tuple(events),
    )


def _json_attributes(raw: Any, where: str) -> dict[str, AttrValue]:
    items = _list(raw, f"{where}.attributes")
    if len(items) > MAX_ATTRIBUTES:
        raise InputError(f"{where}.attributes: more than {MAX_ATTRIBUTES} attributes")
    out: dict[str, AttrValue] = {}
    for index, item in enumerate(items):
        a_where = f"{where}.attributes[{index}]"
        item = _object(item, a_where)
        key = item.get("key")
        if not isinstance(key, str) or not key or len(key) > MAX_KEY:
            raise InputError(f"{a_where}.key: must be a non-empty string of at most {MAX_KEY}")
        out[key] = _json_any(item.get("value", {}), f"{a_where} ({key})", 0)
    return out


def _json_any(raw: Any, where: str, depth: int) -> AttrValue:
    if depth > MAX_DEPTH:
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH}")
    if raw is None:
        return None
    value = _object(raw, where)
    if not value:
        return None
    if len(value) != 1:
        raise InputError(f"{where}: an AnyValue holds exactly one of stringValue, intValue, ...")
    ((kind, item),) = value.items()
    if kind == "stringValue":
        if not isinstance(item, str):
            raise InputError(f"{where}: stringValue must be a string")
        if len(item) > MAX_STRING:
            raise InputError(f"{where}: a string attribute over {MAX_STRING} characters")
        return item
    if kind == "boolValue":
        if not isinstance(item, bool):
            raise InputError(f"{where}: boolValue must be true or false")
        return item
    if kind == "intValue":
        return _int64(item, where)
    if kind == "doubleValue":
        return _double(item, where)
    if kind == "bytesValue":
        if not isinstance(item, str) or len(item) > MAX_STRING:
            raise InputError(f"{where}: bytesValue must be base64 text")
        try:
            return base64.b64decode(item, validate=True)
        except ValueError as exc:
            raise InputError(f"{where}: bytesValue is not base64") from exc
    if kind == "arrayValue":
        values = _list(_object(item, where).get("values", []), where)
        if len(values) > MAX_ARRAY:
            raise InputError(f"{where}: an array of more than {MAX_ARRAY} values")
        return [_json_any(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(values)]
    if kind == "kvlistValue":
        pairs = _list(_object(item, where).get("values", []), where)
        if len(pairs) > MAX_ARRAY:
            raise InputError(f"{where}: a key-value list of more than {MAX_ARRAY} entries")
        out: dict[str, Any] = {}
        for i, pair in enumerate(pairs):
            pair = _object(pair, f"{where}[{i}]")
            key = pair.get("key")
            if not isinstance(key, str) or len(key) > MAX_KEY:
                raise InputError(f"{where}[{i}].key: must be a short string")
            out[key] = _json_any(pair.get("value", {}), f"{where}.{key}", depth + 1)
        return out
    raise InputError(f"{where}: unknown AnyValue field {kind!r}")


def _refuse_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number; OTLP JSON writes it as a string")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _hex_id(value: Any, pattern: re.Pattern[str], where: str, digits: int) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InputError(f"{where}: must be {digits} hex digits, got {str(value)[:40]!r}")
    if set(value) == {"0"}:
        raise InputError(f"{where}: an all-zero id is invalid")
    return value.lower()


def _uint64(value: Any, where: str) -> int:
    number = _int64(value, where, unsigned=True)
    return number


def _int64(value: Any, where: str, *, unsigned: bool = False) -> int:
    if isinstance(value, bool):
        raise InputError(f"{where}: expected an integer, got a boolean")
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]{1,20}", value):
            raise InputError(f"{where}: {value[:40]!r} is not an integer")
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise InputError(f"{where}: expected an integer, got {type(value).__name__}")
    low, high = (0, 2**64 - 1) if unsigned else (-(2**63), 2**63 - 1)
    if not low <= value <= high:
        raise InputError(f"{where}: {value} is out of range")
    return value


def _double(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{where}: doubleValue must be a number")
    try:
        number = float(value)
    except ValueError as exc:
        raise InputError(f"{where}: {str(value)[:40]!r} is not a number") from exc
    if not math.isfinite(number):
        raise InputError(f"{where}: {value!r} is not a finite number")
    return number


# --------------------------------------------------------------------------------- protobuf


def traces_from_protobuf(body: bytes) -> list[Span]:
    try:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError as exc:  # pragma: no cover - the server extra installs it
        from modelward.errors import DependencyError

        raise DependencyError(
            "OTLP protobuf needs opentelemetry-proto: pip install 'modelward[server]'"
        ) from exc
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise InputError(f"the body is not an OTLP ExportTraceServiceRequest: {exc}") from exc
    spans: list[Span] = []
    for r_index, resource_span in enumerate(request.resource_spans):
        where = f"resourceSpans[{r_index}]"
        resource = _pb_attributes(resource_span.resource.attributes, f"{where}.resource")
        for s_index, scope in enumerate(resource_span.scope_spans):
            for index, span in enumerate(scope.spans):
                if len(spans) >= MAX_SPANS:
                    raise InputError(f"more than {MAX_SPANS} spans in one request")
                s_where = f"{where}.scopeSpans[{s_index}].spans[{index}]"
                spans.append(_pb_span(span, resource, s_where))
    return spans


def _pb_span(span: Any, resource: Mapping[str, AttrValue], where: str) -> Span:
    trace_id = _pb_id(span.trace_id, 16, f"{where}.traceId")
    span_id = _pb_id(span.span_id, 8, f"{where}.spanId")
    if len(span.events) > MAX_EVENTS:
        raise InputError(f"{where}.events: more than {MAX_EVENTS}")
    events = tuple(
        SpanEvent(
            _short(event.name, f"{where}.events[{i}].name"),
            int(event.time_unix_nano),
            _pb_attributes(event.attributes, f"{where}.events[{i}]"),
        )
        for i, event in enumerate(span.events)
    )
    code = int(span.status.code)
    if code not in (0, 1, 2):
        raise InputError(f"{where}.status.code: {code} is not a status code")
    return Span(
        trace_id,
        span_id,
        _short(span.name, f"{where}.name", MAX_KEY * 4),
        int(span.start_time_unix_nano),
        int(span.end_time_unix_nano),
        code,
        _pb_attributes(span.attributes, where),
        resource,
        events,
    )


def _short(text: str, where: str, limit: int = MAX_KEY) -> str:
    if len(text) > limit:
        raise InputError(f"{where}: longer than {limit} characters")
    return text


def _pb_id(raw: bytes, size: int, where: str) -> str:
    if len(raw) != size:
        raise InputError(f"{where}: must be {size} bytes, got {len(raw)}")
    if not any(raw):
        raise InputError(f"{where}: an all-zero id is invalid")
    return raw.hex()


def _pb_attributes(items: Any, where: str) -> dict[str, AttrValue]:
    if len(items) > MAX_ATTRIBUTES:
        raise InputError(f"{where}.attributes: more than {MAX_ATTRIBUTES} attributes")
    out: dict[str, AttrValue] = {}
    for index, item in enumerate(items):
        key = item.key
        if not key or len(key) > MAX_KEY:
            raise InputError(f"{where}.attributes[{index}].key: empty or over {MAX_KEY}")
        out[key] = _pb_any(item.value, f"{where}.attributes[{index}] ({key})", 0)
    return out


def _pb_any(value: Any, where: str, depth: int) -> AttrValue:
    if depth > MAX_DEPTH:
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH}")
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        if len(value.string_value) > MAX_STRING:
            raise InputError(f"{where}: a string attribute over {MAX_STRING} characters")
        return str(value.string_value)
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "int_value":
        return int(value.int_value)
    if kind == "double_value":
        number = float(value.double_value)
        if not math.isfinite(number):
            raise InputError(f"{where}: {number!r} is not a finite number")
        return number
    if kind == "bytes_value":
        if len(value.bytes_value) > MAX_STRING:
            raise InputError(f"{where}: a bytes attribute over {MAX_STRING} bytes")
        return bytes(value.bytes_value)
    if kind == "array_value":
        if len(value.array_value.values) > MAX_ARRAY:
            raise InputError(f"{where}: an array of more than {MAX_ARRAY} values")
        return [
            _pb_any(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value.array_value.values)
        ]
    if kind == "kvlist_value":
        if len(value.kvlist_value.values) > MAX_ARRAY:
            raise InputError(f"{where}: a key-value list of more than {MAX_ARRAY} entries")
        return {
            kv.key: _pb_any(kv.value, f"{where}.{kv.key}", depth + 1)
            for kv in value.kvlist_value.values
        }
    raise InputError(f"{where}: unknown AnyValue field {kind!r}")  # pragma: no cover
