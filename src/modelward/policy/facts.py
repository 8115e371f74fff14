"""The facts document a policy sees: its JSON schema and `build_facts`, which assembles it.

`build_facts` takes plain values the registry already knows (digests, verdicts, approvals, times)
and returns a JSON-ready dict. Every top-level key is always present; what the registry does not
know is `null` (or an empty list), so rules that need it fail closed. It does not look anything up,
verify signatures or read the clock: the caller passes the time and what it has checked. The
schema is documented for policy authors in `docs/facts.md`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelward.core.policy import format_timestamp
from modelward.errors import InputError

FACTS_SCHEMA_VERSION = "modelward.facts/v1"
RISK_TIERS = ("low", "medium", "high")
SCAN_VERDICTS = ("clean", "unsafe", "malformed", "error")


@dataclass(frozen=True)
class Metric:
    """One evaluation metric. `threshold` and `higher_is_better` are the pass mark and direction
    a reviewer set for the suite (None / True when none was set); `declared_*` is what the
    evaluation file itself claimed, shown for information and never used by the default rules."""

    value: float
    threshold: float | None = None
    higher_is_better: bool = True
    suite: str | None = None
    declared_threshold: float | None = None
    declared_higher_is_better: bool | None = None

    def to_fact(self, name: str) -> dict[str, Any]:
        _check_number(self.value, f"metric {name!r} value")
        if self.threshold is not None:
            _check_number(self.threshold, f"metric {name!r} threshold")
        if self.declared_threshold is not None:
            _check_number(self.declared_threshold, f"metric {name!r} declared threshold")
        return {
            "value": self.value,
            "threshold": self.threshold,
            "higher_is_better": bool(self.higher_is_better),
            "suite": self.suite,
            "declared": {
                "threshold": self.declared_threshold,
                "higher_is_better": self.declared_higher_is_better,
            },
        }


@dataclass(frozen=True)
class DatasetEligibility:
    """The datasets a version's verified provenance names, and why any is not eligible today
    (withdrawn consent, expired retention, ...)."""

    uris: tuple[str, ...] = ()
    ineligible: Mapping[str, Sequence[str]] | None = None


@dataclass(frozen=True)
class Approval:
    reviewer: str
    at: datetime
    sign_off: bool = False


@dataclass(frozen=True)
class DrillOutcome:
    passed: bool
    at: datetime
    environment: str = "staging"
    release_id: str | None = None


@dataclass(frozen=True)
class CurrentVersion:
    """The version deployed in the target environment now (the one a candidate would replace)."""

    model: str
    version: int
    digest: str
    metrics: Mapping[str, Metric] | None = None
    override_expired: bool = False  # it was deployed by an override whose expiry has passed


def build_facts(
    *,
    time: datetime,
    environment: str,
    previous_environment: str | None,
    model: str,
    version: int,
    digest: str,
    author: str | None,
    created_at: datetime | None = None,
    deployed_in: Sequence[str] = (),
    risk_tier: str | None = None,
    change: Mapping[str, Any] | None = None,
    verified_key_ids: Sequence[str] | None = None,
    scan_verdict: str | None = None,
    scan_findings: int | None = None,
    scanned_at: datetime | None = None,
    provenance_present: bool | None = None,
    provenance_missing: Sequence[str] = (),
    metrics: Mapping[str, Metric] | None = None,
    current: CurrentVersion | None = None,
    approvals: Sequence[Approval] = (),
    rollback_drill: DrillOutcome | None = None,
    registry_signed: bool | None = None,
    unverified_signatures: Sequence[str] = (),
    provenance_required: Sequence[str] | None = None,
    datasets: DatasetEligibility | None = None,
    evidence_problems: Sequence[str] = (),
    previous_override_expired: bool | None = None,
    base_model: str | None = None,
    base_released: bool | None = None,
    forensics: Mapping[str, Any] | None = None,
    probes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble one candidate's facts. Unknowns become null; InputError on malformed input.

    `verified_key_ids` lists the trusted keys (never the registry's own) whose signatures over
    `digest` the caller verified (None: not checked); `registry_signed` says whether the
    registry's own signature verified; `unverified_signatures` describes signatures that did not
    count. `provenance_present` None means unknown; `provenance_missing` names the required
    provenance fields found missing, `provenance_required` the fields required. `datasets` is
    None when no verified provenance names the training data. `evidence_problems` lists the
    stored evidence that failed verification and was treated as absent. Approvals are reduced
    to one per reviewer (the latest). `change` is the dict from
    `modelward.core.change_class.ChangeReport.to_fact()`.
    `previous_override_expired` says whether the previous environment's current release is an
    override past its expiry (None: not looked up, or no previous environment).
    `base_model` is the base model's `sha256:` root digest named by verified provenance;
    `base_released` whether that digest is a registry version some environment currently runs
    under a release that checks out (a base nobody released vouches for nothing);
    `forensics` and `probes` are the facts of the verified weight-forensics and behavioural-probe
    attestations (`modelward.services.forensics.forensics_fact`, `...probes.probes_fact`).
    """
    _check_text(environment, "environment")
    _check_text(model, "model")
    _check_text(digest, "digest")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"version must be a positive integer, not {version!r}")
    if risk_tier is not None and risk_tier not in RISK_TIERS:
        raise InputError(f"risk tier {risk_tier!r} is not one of {', '.join(RISK_TIERS)}")
    if scan_verdict is not None and scan_verdict not in SCAN_VERDICTS:
        raise InputError(f"scan verdict {scan_verdict!r} is not one of {', '.join(SCAN_VERDICTS)}")
    return {
        "schema_version": FACTS_SCHEMA_VERSION,
        "time": format_timestamp(time),
        "environment": {
            "name": environment,
            "previous": previous_environment,
            "previous_override_expired": previous_override_expired,
        },
        "candidate": {
            "uri": f"models:/{model}/{version}",
            "model": model,
            "version": version,
            "digest": digest,
            "author": author,
            "created_at": format_timestamp(created_at) if created_at else None,
            "deployed_in": sorted(set(deployed_in)),
        },
        "risk_tier": risk_tier,
        "change": dict(change) if change is not None else None,
        "signatures": _signatures(verified_key_ids, registry_signed, unverified_signatures),
        "scan": _scan(scan_verdict, scan_findings, scanned_at),
        "provenance": _provenance(
            provenance_present, provenance_missing, provenance_required, base_model, base_released
        ),
        "datasets": _datasets(datasets),
        "evaluations": _evaluations(metrics),
        "current": _current(current),
        "approvals": _approvals(approvals),
        "rollback_drill": _drill(rollback_drill),
        "evidence_problems": [str(p) for p in evidence_problems],
        "forensics": dict(forensics) if forensics is not None else None,
        "probes": dict(probes) if probes is not None else None,
    }


def _signatures(
    key_ids: Sequence[str] | None, registry_signed: bool | None, unverified: Sequence[str]
) -> dict[str, Any] | None:
    if key_ids is None:
        return None
    for key_id in key_ids:
        _check_text(key_id, "signature key id")
    ids = sorted(set(key_ids))
    return {
        "verified": bool(ids),
        "key_ids": ids,
        "registry_signed": registry_signed,
        "unverified": [str(u) for u in unverified],
    }


def _scan(verdict: str | None, findings: int | None, at: datetime | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "verdict": verdict,
        "findings": findings,
        "scanned_at": format_timestamp(at) if at else None,
    }


def _provenance(
    present: bool | None,
    missing: Sequence[str],
    required: Sequence[str] | None,
    base_model: str | None = None,
    base_released: bool | None = None,
) -> dict[str, Any] | None:
    if present is None:
        return None
    gaps = sorted(set(missing)) if present else ["provenance"]
    if base_model is not None:
        _check_text(base_model, "base model digest")
    return {
        "present": present,
        "complete": present and not gaps,
        "missing": gaps,
        "required": sorted(set(required)) if required is not None else None,
        "base_model": base_model if present else None,
        "base_released": (base_released is True) if present and base_model is not None else None,
    }


def _datasets(datasets: DatasetEligibility | None) -> dict[str, Any] | None:
    if datasets is None:
        return None
    for uri in datasets.uris:
        _check_text(uri, "dataset URI")
    ineligible = {
        uri: [str(r) for r in reasons]
        for uri, reasons in sorted((datasets.ineligible or {}).items())
    }
    return {
        "uris": sorted(set(datasets.uris)),
        "eligible": not ineligible,
        "ineligible": ineligible,
    }


def _evaluations(metrics: Mapping[str, Metric] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    for name in metrics:
        _check_text(name, "metric name")
    return {
        "metrics": {name: metrics[name].to_fact(name) for name in sorted(metrics)},
        "unthresholded": sorted(name for name in metrics if metrics[name].threshold is None),
    }


def _current(current: CurrentVersion | None) -> dict[str, Any] | None:
    if current is None:
        return None
    return {
        "uri": f"models:/{current.model}/{current.version}",
        "version": current.version,
        "digest": current.digest,
        "evaluations": _evaluations(current.metrics),
        "override_expired": bool(current.override_expired),
    }


def _approvals(approvals: Sequence[Approval]) -> list[dict[str, Any]]:
    latest: dict[str, datetime] = {}
    signed_off: set[str] = set()
    for approval in approvals:
        _check_text(approval.reviewer, "approval reviewer")
        known = latest.get(approval.reviewer)
        if known is None or approval.at > known:
            latest[approval.reviewer] = approval.at
        if approval.sign_off:
            signed_off.add(approval.reviewer)
    return [
        {
            "reviewer": reviewer,
            "at": format_timestamp(latest[reviewer]),
            "sign_off": reviewer in signed_off,
        }
        for reviewer in sorted(latest)
    ]


def _drill(drill: DrillOutcome | None) -> dict[str, Any] | None:
    if drill is None:
        return None
    return {
        "passed": bool(drill.passed),
        "at": format_timestamp(drill.at),
        "environment": drill.environment,
        "release_id": drill.release_id,
    }


def _check_text(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} must be a non-empty string")


def _check_number(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{what} must be finite")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TIME = {"type": "string", "format": "date-time"}
_METRICS = {
    "type": "object",
    "required": ["metrics"],
    "properties": {
        "metrics": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["value", "threshold", "higher_is_better"],
                "properties": {
                    "value": {"type": "number"},
                    "threshold": {"type": ["number", "null"]},
                    "higher_is_better": {"type": "boolean"},
                    "suite": {"type": ["string", "null"]},
                    "declared": {
                        "type": "object",
                        "properties": {
                            "threshold": {"type": ["number", "null"]},
                            "higher_is_better": {"type": ["boolean", "null"]},
                        },
                    },
                },
            },
        },
        "unthresholded": {"type": "array", "items": {"type": "string"}},
    },
}

FACTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://modelward.dev/schemas/facts/v1.json",
    "title": "modelward gate facts",
    "type": "object",
    "required": [
        "schema_version",
        "time",
        "environment",
        "candidate",
        "risk_tier",
        "change",
        "signatures",
        "scan",
        "provenance",
        "evaluations",
        "current",
        "approvals",
        "rollback_drill",
        "datasets",
        "evidence_problems",
        "forensics",
        "probes",
    ],
    "properties": {
        "schema_version": {"const": FACTS_SCHEMA_VERSION},
        "time": _TIME,
        "environment": {
            "type": "object",
            "required": ["name", "previous"],
            "properties": {
                "name": {"type": "string"},
                "previous": {"type": ["string", "null"]},
                "previous_override_expired": {"type": ["boolean", "null"]},
            },
        },
        "candidate": {
            "type": "object",
            "required": ["uri", "model", "version", "digest", "author", "deployed_in"],
            "properties": {
                "uri": {"type": "string"},
                "model": {"type": "string"},
                "version": {"type": "integer", "minimum": 1},
                "digest": {"type": "string"},
                "author": {"type": ["string", "null"]},
                "created_at": _nullable(_TIME),
                "deployed_in": {"type": "array", "items": {"type": "string"}},
            },
        },
        "risk_tier": {"enum": [*RISK_TIERS, None]},
        "change": _nullable(
            {
                "type": "object",
                "required": ["class", "compat", "first_version", "consistent", "contradictions"],
                "properties": {
                    "class": {"type": ["string", "null"]},
                    "compat": {"type": ["string", "null"]},
                    "first_version": {"type": "boolean"},
                    "consistent": {"type": "boolean"},
                    "roles_changed": {"type": "array", "items": {"type": "string"}},
                    "files": {"type": "object"},
                    "contradictions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["code", "message", "files"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "files": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                },
            }
        ),
        "signatures": _nullable(
            {
                "type": "object",
                "required": ["verified", "key_ids"],
                "properties": {
                    "verified": {"type": "boolean"},
                    "key_ids": {"type": "array", "items": {"type": "string"}},
                    "registry_signed": {"type": ["boolean", "null"]},
                    "unverified": {"type": "array", "items": {"type": "string"}},
                },
            }
        ),
        "scan": _nullable(
            {
                "type": "object",
                "required": ["verdict", "findings", "scanned_at"],
                "properties": {
                    "verdict": {"enum": list(SCAN_VERDICTS)},
                    "findings": {"type": ["integer", "null"]},
                    "scanned_at": _nullable(_TIME),
                },
            }
        ),
        "provenance": _nullable(
            {
                "type": "object",
                "required": ["present", "complete", "missing"],
                "properties": {
                    "present": {"type": "boolean"},
                    "complete": {"type": "boolean"},
                    "missing": {"type": "array", "items": {"type": "string"}},
                    "required": {"type": ["array", "null"], "items": {"type": "string"}},
                    "base_model": {"type": ["string", "null"]},
                    "base_released": {"type": ["boolean", "null"]},
                },
            }
        ),
        "forensics": _nullable(
            {
                "type": "object",
                "required": ["passed", "base", "claim", "changed_tensors", "findings"],
                "properties": {
                    "passed": {"type": "boolean"},
                    "base": {"type": "string"},
                    "claim": {"type": ["string", "null"]},
                    "changed_tensors": {"type": "integer"},
                    "added_tensors": {"type": "integer"},
                    "removed_tensors": {"type": "integer"},
                    "max_relative_change": {"type": ["number", "null"]},
                    "findings": {"type": "array", "items": {"type": "string"}},
                },
            }
        ),
        "probes": _nullable(
            {
                "type": "object",
                "required": [
                    "passed",
                    "baseline",
                    "suite",
                    "suite_digest",
                    "accepted_suite_digests",
                    "findings",
                ],
                "properties": {
                    "passed": {"type": "boolean"},
                    "baseline": {"type": "string"},
                    "suite": {"type": "string"},
                    "suite_version": {"type": "integer"},
                    "suite_digest": {"type": "string"},
                    "suite_accepted": {"type": "boolean"},
                    "accepted_suite_digests": {"type": "array", "items": {"type": "string"}},
                    "runs": {"type": "integer"},
                    "failed_runs": {"type": "integer"},
                    "clean_kl_median": {"type": ["number", "null"]},
                    "trigger_kl_median": {"type": ["number", "null"]},
                    "findings": {"type": "array", "items": {"type": "string"}},
                },
            }
        ),
        "datasets": _nullable(
            {
                "type": "object",
                "required": ["uris", "eligible", "ineligible"],
                "properties": {
                    "uris": {"type": "array", "items": {"type": "string"}},
                    "eligible": {"type": "boolean"},
                    "ineligible": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    },
                },
            }
        ),
        "evidence_problems": {"type": "array", "items": {"type": "string"}},
        "evaluations": _nullable(_METRICS),
        "current": _nullable(
            {
                "type": "object",
                "required": ["uri", "version", "digest", "evaluations"],
                "properties": {
                    "uri": {"type": "string"},
                    "version": {"type": "integer"},
                    "digest": {"type": "string"},
                    "evaluations": _nullable(_METRICS),
                    "override_expired": {"type": "boolean"},
                },
            }
        ),
        "approvals": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["reviewer", "at", "sign_off"],
                "properties": {
                    "reviewer": {"type": "string"},
                    "at": _TIME,
                    "sign_off": {"type": "boolean"},
                },
            },
        },
        "rollback_drill": _nullable(
            {
                "type": "object",
                "required": ["passed", "at", "environment"],
                "properties": {
                    "passed": {"type": "boolean"},
                    "at": _TIME,
                    "environment": {"type": "string"},
                    "release_id": {"type": ["string", "null"]},
                },
            }
        ),
    },
}
