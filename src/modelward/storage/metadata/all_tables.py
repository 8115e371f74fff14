"""Imports every table module so that `schema.metadata` knows every table (for migrations)."""

from __future__ import annotations

from modelward.storage.metadata import ledger_tables, registry_tables

__all__ = ["ledger_tables", "registry_tables"]
