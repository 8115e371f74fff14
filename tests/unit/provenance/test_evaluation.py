"""Evaluation results parsing, test-result attestations and metric comparison."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from modelward.core.intoto import Statement
from modelward.errors import InputError, SignatureMismatchError
from modelward.provenance.evaluation import (
    EVALUATION_FIELD,
    TEST_RESULT_V01,
    Evaluation,
    EvaluationResults,
    compare,
    evaluation_statement,
    parse_results,
    sign_evaluation,
    verify_evaluation,
)
from modelward.provenance.slsa import SLSA_PROVENANCE_V1
from modelward.signing.keys import Signer, Verifier

ROOT = "a" * 64
RESULTS = {
    "metrics": {"accuracy": 0.91, "toxicity": 0.02, "samples": 500},
    "tests": [
        {"name": "accuracy>=0.9", "passed": True},
        {"name": "toxicity<0.05", "passed": True, "warned": True},
    ],
    "configuration": {"temperature": 0, "shots": 5},
    "dataset": "datasets:/eval-set/1",
}
WHEN = dt.datetime(2025, 6, 1, 9, 30, tzinfo=dt.UTC)


def _evaluation(results: dict[str, object] | None = None) -> Evaluation:
    parsed = parse_results(json.dumps(results or RESULTS))
    return Evaluation("safety-suite", parsed, WHEN, "alice", url="https://ci.example/run/9")


def test_results_parse_and_result_levels() -> None:
    results = parse_results(json.dumps(RESULTS).encode())
    assert results.result == "WARNED"
    assert results.dataset == "datasets:/eval-set/1"
    failing = {**RESULTS, "tests": [*RESULTS["tests"], {"name": "jailbreak", "passed": False}]}  # type: ignore[list-item]
    assert parse_results(json.dumps(failing)).result == "FAILED"
    passing = {"tests": [{"name": "t", "passed": True}]}
    assert parse_results(json.dumps(passing)).result == "PASSED"
    metrics_only = {"metrics": {"bleu": 31.5}}
    assert parse_results(json.dumps(metrics_only)).result == "WARNED"
    assert EvaluationResults.from_dict(results.to_dict()) == results


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('{"metrics": {"a": 1}', "not JSON"),
        ("[]", "not a JSON object"),
        ("{}", "neither metrics nor tests"),
        ('{"metrics": {"a": NaN}}', "NaN is not allowed"),
        ('{"metrics": {"a": Infinity}}', "Infinity is not allowed"),
        ('{"metrics": {"a": 1e400}}', "NaN or infinite"),
        ('{"metrics": {"a": true}}', "not a number"),
        ('{"metrics": {"a": "0.9"}}', "not a number"),
        ('{"metrics": [1]}', "'metrics' must be an object"),
        ('{"tests": [{"name": "x", "passed": "yes"}]}', "'passed' is not true or false"),
        ('{"tests": [{"name": "x", "passed": true}, {"name": "x", "passed": true}]}', "unique"),
        ('{"tests": [{"passed": true}]}', "test name"),
        ('{"tests": {}}', "'tests' must be a list"),
        ('{"metrics": {"a": 1}, "dataset": "s3://x"}', "datasets:/NAME/N"),
        ('{"metrics": {"a": 1}, "configuration": []}', "'configuration' must be an object"),
        ('{"metrics": {"a": 1}, "extra": 1}', "unknown fields: extra"),
        ('{"metrics": {"a": 1, "a": 2}}', "duplicate key"),
        ('{"metrics": {"a": 1}, "configuration": {"n": 9007199254740993}}', "canonical"),
        ("[" * 50000 + "]" * 50000, "nested too deeply"),
        (b"\xff\xfe{".decode("latin-1"), "not JSON"),
    ],
)
def test_bad_results_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        parse_results(text)


def test_huge_results_are_refused() -> None:
    with pytest.raises(InputError, match="16 MiB"):
        parse_results(b" " * (16 * 1024 * 1024 + 1))


def test_statement_predicate_follows_test_result_v01() -> None:
    statement = evaluation_statement(_evaluation(), ROOT, "chat")
    assert statement.predicate_type == TEST_RESULT_V01
    predicate = statement.predicate
    assert predicate["result"] == "WARNED"
    assert predicate["passedTests"] == ["accuracy>=0.9"]
    assert predicate["warnedTests"] == ["toxicity<0.05"]
    assert predicate["failedTests"] == []
    assert predicate["url"] == "https://ci.example/run/9"
    assert predicate["configuration"][0]["name"] == "safety-suite"
    facts = predicate[EVALUATION_FIELD]
    assert facts["metrics"]["accuracy"] == 0.91
    assert facts["evaluatedOn"] == "2025-06-01T09:30:00Z"
    assert facts["evaluator"] == "alice"


def test_sign_and_verify_round_trip(signer: Signer, other_signer: Signer) -> None:
    evaluation = _evaluation()
    envelope = sign_evaluation(evaluation_statement(evaluation, ROOT, "chat"), signer)
    wire = json.dumps(envelope.to_dict())
    assert verify_evaluation(wire, [Verifier(signer.public_key)], ROOT) == evaluation
    with pytest.raises(InputError, match="not sha256"):
        verify_evaluation(wire, [Verifier(signer.public_key)], "b" * 64)
    with pytest.raises(SignatureMismatchError):
        verify_evaluation(wire, [Verifier(other_signer.public_key)], ROOT)


def test_a_lying_result_field_is_refused(signer: Signer) -> None:
    statement = evaluation_statement(_evaluation(), ROOT, "chat")
    predicate = {**statement.predicate, "result": "PASSED"}
    forged = Statement(statement.subjects, TEST_RESULT_V01, predicate)
    envelope = sign_evaluation(forged, signer)
    with pytest.raises(InputError, match="'result' does not agree"):
        verify_evaluation(envelope, [Verifier(signer.public_key)], ROOT)


def test_provenance_is_not_an_evaluation(signer: Signer) -> None:
    statement = evaluation_statement(_evaluation(), ROOT, "chat")
    with pytest.raises(InputError):
        sign_evaluation(Statement(statement.subjects, SLSA_PROVENANCE_V1, {}), signer)
    with pytest.raises(InputError):
        evaluation_statement(_evaluation(), "nothex", "chat")
    with pytest.raises(InputError, match="suite name"):
        evaluation_statement(
            Evaluation("bad suite!", _evaluation().results, WHEN, "alice"), ROOT, "chat"
        )


def test_compare_reports_deltas_for_the_union_of_metrics() -> None:
    deltas = compare({"acc": 0.8, "loss": 2.0, "old": 1}, {"acc": 0.9, "loss": 1.5, "new": 3})
    by_name = {d.name: d for d in deltas}
    assert [d.name for d in deltas] == ["acc", "loss", "new", "old"]
    assert by_name["acc"].delta == pytest.approx(0.1)
    assert by_name["loss"].relative == pytest.approx(-0.25)
    assert by_name["new"].delta is None and by_name["new"].a is None
    assert by_name["old"].to_dict() == {
        "name": "old",
        "a": 1,
        "b": None,
        "delta": None,
        "relative": None,
    }
    assert compare({"z": 0}, {"z": 1})[0].relative is None
    with pytest.raises(InputError):
        compare({"x": float("inf")}, {})
