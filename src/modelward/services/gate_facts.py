"""Gathering one candidate's facts from the registry: signatures, the scan attestation,
provenance and dataset eligibility, evaluations against the reviewer-set thresholds, the version
deployed in the target environment, approvals, the latest rollback drill, the change report,
risk tier and time.

Every attestation is checked by `AttestationVerifier` first (signature by the registry key, or
a trusted key for uploader signatures and provenance, and subject = the version's root digest);
one that fails is listed in `evidence_problems` and treated as absent, so rules fail closed.
Evaluation thresholds and directions come from `eval thresholds` (registry settings), never from
the evaluation file, whose own values are shown as `declared`. Reads through repositories on a
connection the calling service owns; builds the document with `build_facts`. Writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.policy import parse_timestamp
from modelward.core.release import EnvironmentPath, Release
from modelward.errors import ModelwardError
from modelward.policy.facts import Approval, CurrentVersion, DrillOutcome, Metric, build_facts
from modelward.services.attestation_verify import (
    OMS_KINDS,
    PROVENANCE_KIND,
    REGISTRY_SIGNATURE,
    UPLOADER_SIGNATURE,
    AttestationVerifier,
    VerifiedAttestation,
)
from modelward.services.change import CHANGE_KIND
from modelward.services.context import RegistryContext
from modelward.services.forensics import FORENSICS_KIND, forensics_fact
from modelward.services.probes import PROBE_KIND, accepted_suite_digests, probes_fact
from modelward.services.provenance import dataset_eligibility, provenance_facts_in
from modelward.services.settings import view_in
from modelward.services.state_integrity import (
    check_releases,
    latest_drill_problem,
    trusted_approvals,
)
from modelward.services.thresholds import SuiteThresholds, suite_thresholds_in
from modelward.signing.keys import Verifier
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord

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
    verifier = AttestationVerifier.for_registry(conn, Verifier(ctx.signer.public_key))
    checked = verifier.check_all(repo.attestations(record.id), record.root_digest)
    problems = [*verifier.setting_problems, *(p.describe() for p in checked.problems)]
    inputs: list[tuple[str, str]] = []
    thresholds = _ThresholdCache(conn)

    def used(att: VerifiedAttestation | None) -> dict[str, Any] | None:
        if att is None:
            return None
        inputs.append((att.uri, "sha256:" + att.record.digest))
        return att.predicate

    scan_att = checked.latest(SCAN_KIND)
    scan = used(scan_att)
    change = used(checked.latest(CHANGE_KIND))
    uploader = checked.of_kind(UPLOADER_SIGNATURE)
    for att in uploader:
        used(att)
    current_releases = gate.current_releases_of_model(record.model)
    # Which version each environment runs decides rules (promoted through the previous
    # environment, regressions against the current one): every release row of the model in
    # each environment must check out against the ledger first (VerificationError otherwise).
    for release_environment in sorted(set(current_releases) | set(path.environments)):
        check_releases(conn, record.model, release_environment)
    current = current_releases.get(environment)
    current_version = None
    if current is not None:
        current_record = repo.version(record.model, current.version)
        current_checked = verifier.check_all(
            repo.attestations(current_record.id, EVALUATION_KIND), current_record.root_digest
        )
        current_version = CurrentVersion(
            model=record.model,
            version=current.version,
            digest=current.bundle_digest,
            metrics=_metrics(current_checked.of_kind(EVALUATION_KIND), thresholds, []),
            override_expired=current.override_expired(now),
        )
    previous = path.previous(environment)
    previous_release = current_releases.get(previous) if previous else None
    drill_row = gate.latest_drill(record.model, path.environments[0])
    drill = None
    if latest_drill_problem(conn, record.model, path.environments[0]) is not None:
        drill_row = None  # a drill row that fails its ledger check is absent: fail closed
    if drill_row is not None:
        drill = DrillOutcome(
            passed=drill_row.passed,
            at=parse_timestamp(drill_row.report["at"], "drill time"),
            environment=drill_row.environment,
            release_id=drill_row.report.get("release_id"),
        )
    provenance = provenance_facts_in(conn, record, verifier, checked=checked)
    for provenance_att in checked.of_kind(PROVENANCE_KIND)[:1]:  # the one the facts came from
        used(provenance_att)
    base_digest = provenance.get("base_model_digest") if provenance["present"] else None
    base_released, base_problem = _base_released(conn, base_digest)
    if base_problem is not None:
        problems.append(base_problem)
    forensics, forensics_att = forensics_fact(checked.of_kind(FORENSICS_KIND), base_digest)
    pinned_suites = view_in(conn, "probe.suites")
    if pinned_suites.problem is not None:
        problems.append(pinned_suites.problem)  # and only the shipped suites count
    probes, probes_atts = probes_fact(
        checked.of_kind(PROBE_KIND), base_digest, accepted_suite_digests(pinned_suites.value)
    )
    used(forensics_att)
    for probes_att in probes_atts:
        used(probes_att)
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
        verified_key_ids=[att.key_id for att in uploader],
        registry_signed=checked.latest(REGISTRY_SIGNATURE) is not None,
        unverified_signatures=[p.describe() for p in checked.problems if p.kind in OMS_KINDS],
        scan_verdict=_scan_verdict(scan),
        scan_findings=_scan_findings(scan),
        scanned_at=parse_timestamp(scan_att.record.created_at, "scan time") if scan_att else None,
        provenance_present=bool(provenance["present"]),
        provenance_missing=[str(m) for m in provenance["missing"]]
        + (["readable"] if provenance.get("error") else []),
        provenance_required=[str(f) for f in provenance["required"]],
        datasets=dataset_eligibility(provenance),
        metrics=_metrics(checked.of_kind(EVALUATION_KIND), thresholds, inputs),
        current=current_version,
        approvals=[
            Approval(a.reviewer, parse_timestamp(a.created_at, "approval time"), a.sign_off)
            for a in trusted_approvals(conn, record.id, environment)
        ],
        rollback_drill=drill,
        evidence_problems=problems,
        previous_override_expired=(
            previous_release.override_expired(now) if previous_release is not None else None
        ),
        base_model=base_digest,
        base_released=base_released,
        forensics=forensics,
        probes=probes,
    )
    return GatheredFacts(facts=facts, inputs=tuple(inputs), current=current)


def _base_released(conn: Connection, base_digest: object) -> tuple[bool | None, str | None]:
    """(whether the declared base is a registry version that some environment currently runs,
    a problem met on the way); (None, None) when no base is declared. Releases are believed
    only after their rows check out against the ledger (else: not released, with the reason)."""
    from modelward.core.names import parse_uri
    from modelward.errors import ModelwardError
    from modelward.services.registry import resolve_in

    if not isinstance(base_digest, str):
        return None, None
    digest = base_digest.removeprefix("sha256:")
    try:
        base = resolve_in(RegistryRepository(conn), parse_uri(f"sha256:{digest}"))
    except ModelwardError:
        return False, None  # not a version of this registry: nobody here released it
    releases = GateRepository(conn).current_releases_of_model(base.model)
    try:
        for environment in sorted(releases):
            check_releases(conn, base.model, environment)
    except ModelwardError as exc:
        return False, f"the declared base {base.uri}: {exc}"
    return any(r.version == base.number for r in releases.values()), None


class _ThresholdCache:
    """Each suite's verified thresholds, read once per gathering (VerificationError when the
    setting was tampered with: the promotion then fails closed)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._suites: dict[str, SuiteThresholds] = {}

    def of(self, suite: str) -> SuiteThresholds:
        if suite not in self._suites:
            self._suites[suite] = suite_thresholds_in(self._conn, suite)
        return self._suites[suite]


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
    attestations: list[VerifiedAttestation],
    thresholds: _ThresholdCache,
    inputs: list[tuple[str, str]],
) -> dict[str, Metric] | None:
    """Metrics of every verified evaluation, later ones winning; None when there are none. The
    pass mark and direction are the reviewer's (`eval thresholds set`); what the file declared
    is kept as `declared_*` only."""
    from modelward.provenance.evaluation import Evaluation

    metrics: dict[str, Metric] = {}
    found = False
    for att in attestations:
        try:
            evaluation = Evaluation.from_predicate(att.predicate)
        except ModelwardError:
            continue
        found = True
        inputs.append((att.uri, "sha256:" + att.record.digest))
        config = evaluation.results.configuration
        declared = config.get("thresholds", {}) if isinstance(config, Mapping) else {}
        lower = config.get("lower_is_better", []) if isinstance(config, Mapping) else []
        suite = thresholds.of(evaluation.suite)
        for name, value in evaluation.results.metrics.items():
            claimed = declared.get(name) if isinstance(declared, Mapping) else None
            if isinstance(claimed, bool) or not isinstance(claimed, (int, float)):
                claimed = None
            if claimed is not None and not math.isfinite(claimed):
                claimed = None
            setting = suite.metrics.get(name)
            metrics[name] = Metric(
                value=value,
                threshold=setting.threshold if setting else None,
                higher_is_better=setting.higher_is_better if setting else True,
                suite=evaluation.suite,
                declared_threshold=claimed,
                declared_higher_is_better=not (isinstance(lower, list) and name in lower),
            )
    return metrics if found else None
