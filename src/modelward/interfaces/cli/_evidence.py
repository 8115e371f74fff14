"""Opening the provenance and evidence services for a CLI command (lazily)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelward.services.evidence import EvidenceService
    from modelward.services.provenance import ProvenanceService


@contextmanager
def evidence_service() -> Iterator[EvidenceService]:
    from modelward.services.context import open_registry
    from modelward.services.evidence import EvidenceService

    context = open_registry()
    try:
        yield EvidenceService(context)
    finally:
        context.close()


@contextmanager
def provenance_service() -> Iterator[ProvenanceService]:
    from modelward.services.context import open_registry
    from modelward.services.provenance import ProvenanceService

    context = open_registry()
    try:
        yield ProvenanceService(context)
    finally:
        context.close()
