"""Policy evaluation: fail-closed rules, warn versus deny, skipping, decisions, overrides."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelward.core.canonical import canonical_digest
from modelward.core.policy import (
    Decision,
    Override,
    Policy,
    Rule,
    apply_override,
    evaluate,
    fact_paths,
    facts_digest,
    missing_fact,
)
from modelward.errors import InputError, PolicyError
from modelward.policy.cel_engine import CelEngine

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _policy(*rules: Rule) -> Policy:
    return Policy.create("production", list(rules))


def _result(decision: Decision, rule_id: str) -> Any:
    return next(r for r in decision.results if r.rule_id == rule_id)


def test_missing_nested_field_fails_closed_naming_it(engine: CelEngine) -> None:
    policy = _policy(Rule("scan", "facts.scan.verdict == 'clean'", "must scan clean"))
    decision = evaluate(policy, {"scan": {}}, engine)
    assert not decision.allowed
    assert decision.failed == ("scan",)
    assert _result(decision, "scan").detail == "failed closed: missing fact 'scan.verdict'"


def test_null_parent_fails_closed_naming_it(engine: CelEngine) -> None:
    policy = _policy(Rule("drill", "facts.drill.passed", "drill"))
    detail = _result(evaluate(policy, {"drill": None}, engine), "drill").detail
    assert detail == "failed closed: fact 'drill' is null (reading 'drill.passed')"


def test_type_error_fails_closed_naming_the_fact_and_its_type(engine: CelEngine) -> None:
    policy = _policy(Rule("count", "facts.findings > 3", "few findings"))
    result = _result(evaluate(policy, {"findings": "many"}, engine), "count")
    assert not result.passed
    assert "could not be evaluated" in result.detail
    assert "findings (string)" in result.detail


def test_non_bool_result_fails_closed(engine: CelEngine) -> None:
    policy = _policy(Rule("value", "facts.level", "level"))
    result = _result(evaluate(policy, {"level": 3}, engine), "value")
    assert not result.passed
    assert result.detail == "failed closed: expression returned int 3, not a bool"


def test_evaluation_error_fails_closed(engine: CelEngine) -> None:
    policy = _policy(Rule("div", "facts.a / facts.b > 1", "ratio"))
    result = _result(evaluate(policy, {"a": 1, "b": 0}, engine), "div")
    assert not result.passed
    assert "divide by zero" in result.detail


def test_when_false_skips_and_when_error_fails_closed(engine: CelEngine) -> None:
    rule = Rule("signoff", "facts.signed", "sign-off", when="facts.risk == 'high'")
    policy = _policy(rule)
    skipped = _result(evaluate(policy, {"risk": "low"}, engine), "signoff")
    assert skipped.passed and skipped.skipped
    failing = _result(evaluate(policy, {"risk": "high", "signed": False}, engine), "signoff")
    assert not failing.passed and not failing.skipped
    unknown = _result(evaluate(policy, {}, engine), "signoff")
    assert not unknown.passed
    assert unknown.detail == "failed closed in 'when': missing fact 'risk'"


def test_warn_failures_are_listed_but_allow(engine: CelEngine) -> None:
    policy = _policy(
        Rule("must", "facts.ok", "must be ok"),
        Rule("should", "facts.nice", "should be nice", severity="warn"),
    )
    decision = evaluate(policy, {"ok": True, "nice": False}, engine)
    assert decision.allowed
    assert decision.failed == () and decision.warnings == ("should",)
    assert [r.rule_id for r in decision.failed_results()] == ["should"]
    denied = evaluate(policy, {"ok": False, "nice": False}, engine)
    assert not denied.allowed and denied.failed == ("must",)


def test_uncompilable_expression_fails_its_rule_not_the_call(engine: CelEngine) -> None:
    # Policies are compiled at load time; a policy built by hand still fails closed.
    policy = _policy(Rule("broken", "facts.a +", "broken"))
    result = _result(evaluate(policy, {"a": 1}, engine), "broken")
    assert not result.passed and "invalid expression at line 1" in result.detail


def test_engine_without_bind_is_supported() -> None:
    class Compiled:
        def __init__(self, key: str) -> None:
            self.key = key

        def evaluate(self, facts: Mapping[str, Any]) -> object:
            return facts[self.key]

    class DictEngine:
        def compile(self, expression: str) -> Compiled:
            return Compiled(expression)

    policy = _policy(Rule("a", "a", "a"), Rule("b", "b", "b"))
    decision = evaluate(policy, {"a": True}, DictEngine())
    assert decision.failed == ("b",)
    assert "missing" not in _result(decision, "b").detail  # the engine's KeyError is reported


def test_facts_must_be_an_object(engine: CelEngine) -> None:
    with pytest.raises(InputError):
        evaluate(_policy(Rule("a", "true", "a")), [1, 2], engine)  # type: ignore[arg-type]


def test_decision_round_trips_and_digests(engine: CelEngine) -> None:
    policy = _policy(Rule("a", "facts.a", "a"), Rule("b", "facts.b", "b", severity="warn"))
    facts = {"a": False, "b": False}
    decision = evaluate(policy, facts, engine)
    again = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again == decision
    assert again.digest() == decision.digest()
    assert decision.policy_digest == policy.digest
    assert decision.facts_digest == "sha256:" + canonical_digest(facts)


def test_policy_digest_covers_rules() -> None:
    one = _policy(Rule("a", "facts.a", "a"))
    two = _policy(Rule("a", "facts.a", "a", severity="warn"))
    assert one.digest != two.digest
    assert Policy.from_dict(one.to_dict()) == one
    tampered = dict(one.to_dict(), digest=two.digest)
    with pytest.raises(PolicyError, match="does not match"):
        Policy.from_dict(tampered)


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(PolicyError, match="'a' appears more than once"):
        _policy(Rule("a", "true", "x"), Rule("a", "false", "y"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": "Bad Id"}, "rule id"),
        ({"expression": "  "}, "expression must be a non-empty string"),
        ({"message": ""}, "message must be a non-empty string"),
        ({"severity": "error"}, "severity 'error'"),
        ({"when": ""}, "'when' must be a non-empty string"),
    ],
)
def test_rule_validation(fields: dict[str, Any], message: str) -> None:
    base = {"id": "ok", "expression": "true", "message": "m"}
    with pytest.raises(PolicyError, match=message):
        Rule(**{**base, **fields})


def test_fact_paths_stop_at_macros_and_read_brackets() -> None:
    expression = "facts.approvals.filter(a, a.x) && facts['risk'].tier == facts.b.c.size()"
    assert fact_paths(expression) == [("approvals",), ("risk", "tier"), ("b", "c")]
    assert missing_fact(expression, {"approvals": [], "risk": {"tier": 1}}) == "missing fact 'b'"


def test_override_requires_justification_and_future_expiry() -> None:
    with pytest.raises(InputError, match="justification"):
        Override.create("rita", "   ", NOW + timedelta(hours=1), NOW)
    with pytest.raises(InputError, match="not in the future"):
        Override.create("rita", "incident 42", NOW - timedelta(seconds=1), NOW)
    with pytest.raises(InputError, match="more than"):
        Override.create("rita", "x", NOW + timedelta(days=30), NOW, max_duration=timedelta(days=1))
    override = Override.create("rita", " incident 42 ", NOW + timedelta(hours=1), NOW)
    assert override.justification == "incident 42"
    assert Override.from_dict(override.to_dict()) == override


def test_override_makes_denial_visible_allow(engine: CelEngine) -> None:
    policy = _policy(Rule("a", "facts.a", "a"))
    denied = evaluate(policy, {"a": False}, engine)
    override = Override.create("rita", "incident 42", NOW + timedelta(hours=1), NOW)
    allowed = apply_override(denied, override, NOW + timedelta(minutes=5))
    assert allowed.allowed and allowed.overridden
    assert allowed.failed == ("a",)
    assert allowed.to_dict()["override"]["justification"] == "incident 42"
    assert allowed.digest() != denied.digest()
    with pytest.raises(InputError, match="expired"):
        apply_override(denied, override, NOW + timedelta(hours=2))
    with pytest.raises(InputError, match="nothing to override"):
        apply_override(evaluate(policy, {"a": True}, engine), override, NOW)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=5))
def test_facts_digest_equals_rfc8785(facts: dict[str, Any]) -> None:
    assert facts_digest(facts) == "sha256:" + canonical_digest(facts)


@pytest.mark.parametrize(
    "value", [1.0, -0.0, 0.5, 1e-4, 9.999e15, 1e16, 1e21, 1e-7, 123456.789, math.pi, 2**53 - 1]
)
def test_facts_digest_numbers(value: float) -> None:
    facts = {"v": value, "k": ["é", "\U0001d11e", "\u2028"], "\ufb01": 1, "\U0001d11e": 2}
    assert facts_digest(facts) == "sha256:" + canonical_digest(facts)
