"""Shipped default policies: good facts pass every rule; each bad variant fails the right one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from modelward.core.change_class import classify_change
from modelward.core.policy import evaluate
from modelward.policy.cel_engine import CelEngine
from modelward.policy.facts import (
    Approval,
    CurrentVersion,
    DatasetEligibility,
    DrillOutcome,
    Metric,
)
from modelward.policy.loader import DEFAULT_ENVIRONMENTS, load_default_policy

from .conftest import (
    NEW_WEIGHTS_MANIFEST,
    NOW,
    PREVIOUS_MANIFEST,
    good_inputs,
    passing_forensics,
    passing_probes,
)

MakeFacts = Callable[..., dict[str, Any]]


def _metrics(**changes: Metric) -> dict[str, Metric]:
    return {**good_inputs()["metrics"], **changes}


# (case id, build_facts overrides, rule expected to fail, text expected in its detail)
PRODUCTION_BAD = [
    ("scan-unsafe", {"scan_verdict": "unsafe"}, "scan-clean", "expression is false"),
    ("scan-unknown", {"scan_verdict": None}, "scan-clean", "fact 'scan' is null"),
    ("unsigned", {"verified_key_ids": ()}, "signature-verified", "expression is false"),
    ("signature-unchecked", {"verified_key_ids": None}, "signature-verified", "'signatures'"),
    ("skipped-canary", {"deployed_in": ("staging",)}, "promoted-in-order", "false"),
    ("no-provenance", {"provenance_present": False}, "provenance-complete", "false"),
    (
        "provenance-gaps",
        {"provenance_missing": ("datasets", "seeds")},
        "provenance-complete",
        'provenance.missing = ["datasets", "seeds"]',
    ),
    (
        "provenance-unknown",
        {"provenance_present": None},
        "provenance-complete",
        "fact 'provenance' is null",
    ),
    ("no-evaluations", {"metrics": None}, "evaluations-present", "fact 'evaluations' is null"),
    ("empty-evaluations", {"metrics": {}}, "evaluations-present", "expression is false"),
    (
        "below-threshold",
        {"metrics": _metrics(accuracy=Metric(0.80, 0.85, True))},
        "metrics-meet-thresholds",
        "expression is false",
    ),
    (
        "lower-is-better-above-threshold",
        {"metrics": _metrics(toxicity_rate=Metric(0.05, 0.02, False))},
        "metrics-meet-thresholds",
        "expression is false",
    ),
    (
        "registry-signature-only",
        {"verified_key_ids": (), "registry_signed": True},
        "signature-verified",
        "signatures.key_ids = []",
    ),
    (
        "registry-signature-bad",
        {"registry_signed": False},
        "signature-verified",
        "signatures.registry_signed = false",
    ),
    (
        "consent-withdrawn",
        {
            "datasets": DatasetEligibility(
                ("datasets:/support-chats/3",),
                {"datasets:/support-chats/3": ["consent was withdrawn on 2025-05-01"]},
            )
        },
        "datasets-eligible",
        "datasets.eligible = false",
    ),
    ("datasets-unknown", {"datasets": None}, "datasets-eligible", "fact 'datasets' is null"),
    (
        "metric-dropped",
        {"metrics": {k: v for k, v in good_inputs()["metrics"].items() if k != "mmlu"}},
        "metrics-not-dropped",
        "expression is false",
    ),
    (
        "regression",
        {"metrics": _metrics(accuracy=Metric(0.86, 0.85, True))},
        "no-regression",
        "expression is false",
    ),
    (
        "lower-is-better-regression",
        {"metrics": _metrics(toxicity_rate=Metric(0.0119, 0.02, False))},
        "no-regression",
        "expression is false",
    ),
    (
        "current-not-evaluated",
        {"current": CurrentVersion("support-assistant", 6, "sha256:" + "b" * 64, None)},
        "metrics-not-dropped",
        "fact 'current.evaluations' is null",
    ),
    ("author-unknown", {"author": None}, "author-known", "expression is false"),
    (
        "base-nobody-released",
        {"base_released": False},
        "fine-tune-base-released",
        "provenance.base_released = false",
    ),
    ("no-forensics", {"forensics": None}, "fine-tune-forensics", "expression is false"),
    (
        "forensics-flagged",
        {"forensics": passing_forensics(passed=False, findings=["12 tensor(s) moved"])},
        "fine-tune-forensics",
        "expression is false",
    ),
    (
        "forensics-against-another-base",
        {"forensics": passing_forensics(base="sha256:" + "d" * 64)},
        "fine-tune-forensics",
        "expression is false",
    ),
    ("no-probes", {"probes": None}, "fine-tune-probes", "expression is false"),
    (
        "probes-flagged",
        {"probes": passing_probes(passed=False, findings=["trigger candidate 'cf'"])},
        "fine-tune-probes",
        "expression is false",
    ),
    (
        "probes-with-an-unaccepted-suite",
        {"probes": passing_probes(suite_digest="sha256:" + "e" * 64)},
        "fine-tune-probes",
        "expression is false",
    ),
    (
        "probes-against-another-baseline",
        {"probes": passing_probes(baseline="sha256:" + "d" * 64)},
        "fine-tune-probes",
        "expression is false",
    ),
    (
        "one-approval",
        {"approvals": (Approval("bob", NOW), Approval("carol", NOW, sign_off=True))[1:]},
        "two-independent-approvals",
        "expression is false",
    ),
    (
        "self-approval-does-not-count",
        {"approvals": (Approval("alice", NOW), Approval("carol", NOW, sign_off=True))},
        "two-independent-approvals",
        "expression is false",
    ),
    ("no-drill", {"rollback_drill": None}, "rollback-drill-recent", "fact 'rollback_drill'"),
    (
        "failed-drill",
        {"rollback_drill": DrillOutcome(False, NOW - timedelta(days=1))},
        "rollback-drill-recent",
        "expression is false",
    ),
    (
        "stale-drill",
        {"rollback_drill": DrillOutcome(True, NOW - timedelta(days=31))},
        "rollback-drill-recent",
        "expression is false",
    ),
    (
        "drill-from-the-future",
        {"rollback_drill": DrillOutcome(True, NOW + timedelta(days=1))},
        "rollback-drill-recent",
        "expression is false",
    ),
    ("risk-unknown", {"risk_tier": None}, "risk-tier-known", "expression is false"),
    (
        "high-risk-without-sign-off",
        {"approvals": (Approval("bob", NOW), Approval("carol", NOW))},
        "high-risk-sign-off",
        "expression is false",
    ),
    (
        "sign-off-by-author",
        {
            "approvals": (
                Approval("bob", NOW),
                Approval("carol", NOW),
                Approval("alice", NOW, sign_off=True),
            )
        },
        "high-risk-sign-off",
        "expression is false",
    ),
    (
        "declared-prompt-but-weights-changed",
        {
            "change": classify_change(
                PREVIOUS_MANIFEST, NEW_WEIGHTS_MANIFEST, "prompt", "eval-only"
            ).to_fact()
        },
        "change-class-consistent",
        "expression is false",
    ),
    ("change-unknown", {"change": None}, "change-class-consistent", "fact 'change' is null"),
]


@pytest.fixture(scope="module")
def policies() -> dict[str, Any]:
    engine = CelEngine()
    return {env: load_default_policy(env, engine) for env in DEFAULT_ENVIRONMENTS}


def test_good_facts_pass_every_production_rule(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts
) -> None:
    decision = evaluate(policies["production"], make_facts(), engine)
    assert decision.allowed, decision.to_dict()
    assert decision.failed == () and decision.warnings == ()
    assert [r.rule_id for r in decision.results] == [r.id for r in policies["production"].rules]
    assert all(r.passed and not r.skipped for r in decision.results)


def test_every_production_rule_has_a_failing_variant(policies: dict[str, Any]) -> None:
    covered = {case[2] for case in PRODUCTION_BAD}
    deny_rules = {rule.id for rule in policies["production"].rules if rule.severity == "deny"}
    assert covered == deny_rules


@pytest.mark.parametrize("environment", ["canary", "production"])
def test_a_metric_without_a_threshold_is_reported_not_failed(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts, environment: str
) -> None:
    facts = make_facts(metrics=_metrics(mmlu=Metric(0.7, None, True)))
    assert facts["evaluations"]["unthresholded"] == ["mmlu"]
    decision = evaluate(policies[environment], facts, engine)
    assert decision.allowed, decision.to_dict()
    assert decision.warnings == ("metrics-thresholded",)
    result = next(r for r in decision.results if r.rule_id == "metrics-thresholded")
    assert 'evaluations.unthresholded = ["mmlu"]' in result.detail


@pytest.mark.parametrize("environment", ["canary", "production"])
def test_withdrawn_consent_denies_canary_and_production(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts, environment: str
) -> None:
    withdrawn = DatasetEligibility(
        ("datasets:/support-chats/3",), {"datasets:/support-chats/3": ["consent withdrawn"]}
    )
    decision = evaluate(policies[environment], make_facts(datasets=withdrawn), engine)
    assert not decision.allowed
    assert "datasets-eligible" in decision.failed


@pytest.mark.parametrize("environment", DEFAULT_ENVIRONMENTS)
def test_the_registry_signature_alone_is_not_a_trusted_signature(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts, environment: str
) -> None:
    facts = make_facts(verified_key_ids=(), registry_signed=True)
    assert facts["signatures"]["verified"] is False
    decision = evaluate(policies[environment], facts, engine)
    assert "signature-verified" in decision.failed


@pytest.mark.parametrize(
    ("overrides", "rule_id", "detail"),
    [pytest.param(o, r, d, id=case) for case, o, r, d in PRODUCTION_BAD],
)
def test_production_denies_bad_variant(
    engine: CelEngine,
    policies: dict[str, Any],
    make_facts: MakeFacts,
    overrides: dict[str, Any],
    rule_id: str,
    detail: str,
) -> None:
    policy = policies["production"]
    decision = evaluate(policy, make_facts(**overrides), engine)
    assert not decision.allowed
    assert rule_id in decision.failed
    result = next(r for r in decision.results if r.rule_id == rule_id)
    rule = next(r for r in policy.rules if r.id == rule_id)
    assert result.message == rule.message
    assert not result.passed and result.severity == "deny"
    assert detail in result.detail


def test_first_production_release_skips_comparison_rules(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts
) -> None:
    decision = evaluate(policies["production"], make_facts(current=None), engine)
    assert decision.allowed
    skipped = {r.rule_id for r in decision.results if r.skipped}
    assert skipped == {"metrics-not-dropped", "no-regression"}


def test_low_risk_needs_no_sign_off(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts
) -> None:
    facts = make_facts(risk_tier="low", approvals=(Approval("bob", NOW), Approval("carol", NOW)))
    decision = evaluate(policies["production"], facts, engine)
    assert decision.allowed
    assert next(r for r in decision.results if r.rule_id == "high-risk-sign-off").skipped


def test_staging_allows_with_a_warning_for_a_contradicted_change(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts
) -> None:
    change = classify_change(PREVIOUS_MANIFEST, NEW_WEIGHTS_MANIFEST, "prompt", "eval-only")
    facts = make_facts(environment="staging", previous_environment=None, change=change.to_fact())
    decision = evaluate(policies["staging"], facts, engine)
    assert decision.allowed
    assert decision.warnings == ("change-class-consistent",)
    assert decision.failed == ()


@pytest.mark.parametrize(
    ("overrides", "rule_id"),
    [
        ({"scan_verdict": "malformed"}, "scan-clean"),
        ({"verified_key_ids": ()}, "signature-verified"),
    ],
)
def test_staging_denies_unscanned_or_unsigned(
    engine: CelEngine,
    policies: dict[str, Any],
    make_facts: MakeFacts,
    overrides: dict[str, Any],
    rule_id: str,
) -> None:
    facts = make_facts(environment="staging", previous_environment=None, **overrides)
    decision = evaluate(policies["staging"], facts, engine)
    assert decision.failed == (rule_id,)


def test_canary_needs_one_independent_approval(
    engine: CelEngine, policies: dict[str, Any], make_facts: MakeFacts
) -> None:
    base = {"environment": "canary", "previous_environment": "staging", "current": None}
    one = make_facts(**base, approvals=(Approval("bob", NOW),))
    assert evaluate(policies["canary"], one, engine).allowed
    own = make_facts(**base, approvals=(Approval("alice", NOW),))
    assert evaluate(policies["canary"], own, engine).failed == ("independent-approval",)
