"""A fresh embedded registry with every environment's policy allowing, and helpers to build OTLP
trace requests as an instrumented service would send them."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelward.services.context import RegistryContext, open_registry
from modelward.services.gate import GateService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry

ALLOW = b"""
rules:
  - id: always
    expression: 'true'
    message: anything goes in these tests
"""


@dataclass
class Registry:
    home: Path
    context: RegistryContext
    service: RegistryService
    gate: GateService


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL", "MODELWARD_URL"):
        monkeypatch.delenv(variable, raising=False)
    initialize_registry(home)
    context = open_registry(home)
    gate = GateService(context)
    for environment in gate.config.environments:
        gate.set_policy(environment, ALLOW)
    try:
        yield Registry(home, context, RegistryService(context), gate)
    finally:
        context.close()


def attr(key: str, value: Any) -> dict[str, Any]:
    """One OTLP JSON attribute (proto3 JSON mapping: intValue as a string)."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    return {"key": key, "value": {"stringValue": value}}


_ids = random.Random(7)


def span(
    end_ns: int,
    *,
    duration_ns: int = 200_000_000,
    trace_id: str | None = None,
    span_id: str | None = None,
    error: bool = False,
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "traceId": trace_id or _ids.randbytes(16).hex(),
        "spanId": span_id or _ids.randbytes(8).hex(),
        "name": "chat smollm",
        "kind": 3,
        "startTimeUnixNano": str(end_ns - duration_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [attr(k.replace("__", "."), v) for k, v in attributes.items()],
        "status": {"code": 2 if error else 0},
    }


def request(spans: list[dict[str, Any]], **resource: Any) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [attr(k.replace("__", "."), v) for k, v in resource.items()]
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
                }
            ]
        }
    ).encode()
