"""Imports every table module so that `schema.metadata` knows every table (for migrations)."""

from __future__ import annotations

from modelward.storage.metadata import (
    auth_tables,
    canary_tables,
    gate_tables,
    ledger_tables,
    provenance_tables,
    registry_tables,
    telemetry_tables,
    web_tables,
)

__all__ = [
    "auth_tables",
    "canary_tables",
    "gate_tables",
    "ledger_tables",
    "provenance_tables",
    "registry_tables",
    "telemetry_tables",
    "web_tables",
]
