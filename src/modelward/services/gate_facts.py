"""Gathering one candidate's facts from the registry: signatures (re-verified), the scan
attestation, provenance, evaluations, the version deployed in the target environment, approvals,
the latest rollback drill, the change report, risk tier and time.

Reads through repositories on a connection the calling service owns; builds the document with
`modelward.policy.facts.build_facts`. Writes nothing. Evaluation metrics come from attestations
of kind "evaluation" (in-toto test-result with a `modelwardEvaluation` field); a suite declares
pass marks in `configuration.thresholds` (name → number) and metrics where lower is better in
`configuration.lower_is_better` (a list of names).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement
from modelward.core.policy import parse_timestamp
from modelward.core.release import EnvironmentPath, Release
from modelward.errors import ModelwardError
from modelward.policy.facts import Approval, CurrentVersion, DrillOutcome, Metric, build_facts
from modelward.services.change import CHANGE_KIND
from modelward.services.context import RegistryContext
from modelward.signing.keys import Verifier
from modelward.signing.oms import SignatureBundle, verify_with_key
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.registry_repository import (
    AttestationRecord,
    RegistryRepository,
    VersionRecord,
)

EVALUATION_KIND = "evaluation"
SCAN_KIND = "scan"


@dataclass(frozen=True)
class GatheredFacts:
    facts: dict[str, Any]
    inputs: tuple[tuple[str, str], ...]  # (attestation uri, sha256:HEX) the facts came from
    current: Release | None


def gather_facts(
    ctx: RegistryContext,
    conn: Connection,
    record: VersionRecord,
    environment: str,
    path: EnvironmentPath,
    *,
    risk_tier: str | None,
    now: datetime,
) -> GatheredFacts:
    repo = RegistryRepository(conn)
    gate = GateRepository(conn)
    attestations = repo.attestations(record.id)
    inputs: list[tuple[str, str]] = []

    def latest(kind: str) -> tuple[dict[str, Any] | None, AttestationRecord | None]:
        for att in reversed(attestations):
            if att.kind == kind:
                predicate = _predicate(att)
                if predicate is not None:
                    inputs.append((f"attestation:{att.id}:{kind}", "sha256:" + att.digest))
                    return predicate, att
        return None, None

    scan, scan_att = latest(SCAN_KIND)
    change, _ = latest(CHANGE_KIND)
    current_releases = gate.current_releases_of_model(record.model)
    current = current_releases.get(environment)
    current_version = None
    if current is not None:
        current_record = repo.version(record.model, current.version)
        current_version = CurrentVersion(
            model=record.model,
            version=current.version,
            digest=current.bundle_digest,
            metrics=_metrics(repo.attestations(current_record.id, EVALUATION_KIND), []),
            override_expired=current.override_expired(now),
        )
    previous = path.previous(environment)
    previous_release = current_releases.get(previous) if previous else None
    drill_row = gate.latest_drill(record.model, path.environments[0])
    drill = None
    if drill_row is not None:
        drill = DrillOutcome(
            passed=drill_row.passed,
            at=parse_timestamp(drill_row.report["at"], "drill time"),
            environment=drill_row.environment,
            release_id=drill_row.report.get("release_id"),
        )
    present, missing = _provenance(ctx, conn, record)
    facts = build_facts(
        time=now,
        environment=environment,
        previous_environment=path.previous(environment),
        model=record.model,
        version=record.number,
        digest="sha256:" + record.root_digest,
        author=record.created_by or None,
        created_at=parse_timestamp(record.created_at, "version created_at"),
        deployed_in=[env for env, rel in current_releases.items() if rel.version == record.number],
        risk_tier=risk_tier,
        change=change,
        verified_key_ids=_verified_key_ids(ctx, attestations, record),
        scan_verdict=_scan_verdict(scan),
        scan_findings=_scan_findings(scan),
        scanned_at=parse_timestamp(scan_att.created_at, "scan time") if scan_att else None,
        provenance_present=present,
        provenance_missing=missing,
        metrics=_metrics([a for a in attestations if a.kind == EVALUATION_KIND], inputs),
        current=current_version,
        approvals=[
            Approval(a.reviewer, parse_timestamp(a.created_at, "approval time"), a.sign_off)
            for a in gate.approvals(record.id, environment)
        ],
        rollback_drill=drill,
        previous_override_expired=(
            previous_release.override_expired(now) if previous_release is not None else None
        ),
    )
    return GatheredFacts(facts=facts, inputs=tuple(inputs), current=current)


def _predicate(att: AttestationRecord) -> dict[str, Any] | None:
    try:
        envelope = Envelope.from_dict(json.loads(att.document))
        predicate = Statement.from_bytes(envelope.payload).predicate
    except (ModelwardError, ValueError):
        return None
    return dict(predicate) if isinstance(predicate, Mapping) else None


def _verified_key_ids(
    ctx: RegistryContext, attestations: list[AttestationRecord], record: VersionRecord
) -> list[str]:
    """The registry's signature, re-verified now; an uploader's, verified when it was pushed."""
    from modelward.signing.oms import manifest_from_statement

    key_ids: list[str] = []
    for att in attestations:
        if att.kind not in ("registry-signature", "uploader-signature"):
            continue
        try:
            bundle = SignatureBundle.from_dict(json.loads(att.document))
        except (ModelwardError, ValueError):
            continue
        if att.kind == "registry-signature":
            try:
                signed = manifest_from_statement(
                    verify_with_key(bundle, Verifier(ctx.signer.public_key))
                )
            except ModelwardError:
                continue
            if signed.root_digest == record.root_digest:
                key_ids.append(ctx.signer.keyid)
        elif bundle.public_key_hint:
            key_ids.append(bundle.public_key_hint)
    return key_ids


def _scan_verdict(scan: dict[str, Any] | None) -> str | None:
    if scan is None:
        return None
    verdict = scan.get("verdict")
    return verdict if verdict in ("clean", "unsafe", "malformed") else "error"


def _scan_findings(scan: dict[str, Any] | None) -> int | None:
    if scan is None:
        return None
    findings = scan.get("summary", {}).get("findings")
    return findings if isinstance(findings, int) and not isinstance(findings, bool) else None


def _metrics(
    attestations: list[AttestationRecord], inputs: list[tuple[str, str]]
) -> dict[str, Metric] | None:
    """Metrics of every evaluation attestation, later ones winning; None when there are none."""
    from modelward.provenance.evaluation import Evaluation

    metrics: dict[str, Metric] = {}
    found = False
    for att in attestations:
        predicate = _predicate(att)
        if predicate is None:
            continue
        try:
            evaluation = Evaluation.from_predicate(predicate)
        except ModelwardError:
            continue
        found = True
        inputs.append((f"attestation:{att.id}:{EVALUATION_KIND}", "sha256:" + att.digest))
        config = evaluation.results.configuration
        thresholds = config.get("thresholds", {}) if isinstance(config, Mapping) else {}
        lower = config.get("lower_is_better", []) if isinstance(config, Mapping) else []
        for name, value in evaluation.results.metrics.items():
            threshold = thresholds.get(name) if isinstance(thresholds, Mapping) else None
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                threshold = None
            metrics[name] = Metric(
                value=value,
                threshold=threshold,
                higher_is_better=not (isinstance(lower, list) and name in lower),
            )
    return metrics if found else None


def _provenance(
    ctx: RegistryContext, conn: Connection, record: VersionRecord
) -> tuple[bool | None, list[str]]:
    """Provenance facts from the provenance service when it is installed; absent otherwise, so
    rules that need provenance fail closed."""
    try:
        module = importlib.import_module("modelward.services.provenance")
    except ImportError:
        return False, []
    provider = getattr(module, "provenance_facts_in", None) or getattr(
        module, "provenance_facts", None
    )
    if not callable(provider):
        return False, []
    try:
        result = provider(conn, record)
    except (ModelwardError, TypeError):
        return False, []
    if not isinstance(result, Mapping) or not isinstance(result.get("present"), bool):
        return False, []
    raw = result.get("missing", [])
    missing = [str(m) for m in raw] if isinstance(raw, list) else ["missing"]
    if result.get("error"):
        missing.append("readable")
    if result.get("complete") is False and not missing:
        missing.append("complete")
    return bool(result["present"]), missing
