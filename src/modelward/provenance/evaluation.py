"""Evaluation evidence: results files, in-toto test-result attestations, metric comparison.

A results file (JSON, at most 16 MiB) has this schema:

    {
      "metrics": {"NAME": number, ...},             finite numbers, booleans refused
      "tests": [{"name": "...", "passed": bool, "warned": bool?}, ...],   names unique
      "configuration": {...},                        any JSON object (optional)
      "dataset": "datasets:/NAME/N"                  optional
    }

At least one metric or test is required. It becomes an in-toto Statement with predicate type
`https://in-toto.io/attestation/test-result/v0.1` about the version's root digest: `result` is
FAILED if any test failed, WARNED if any warned or there were no tests at all (nothing was
checked), else PASSED; `configuration` holds one resource descriptor (the suite name and the
SHA-256 of the canonical configuration); `passedTests`, `warnedTests`, `failedTests` list test
names. modelward's own facts (suite, metrics, full configuration, dataset, time, evaluator) live
in the extra predicate field `modelwardEvaluation`.

Does not run evaluations, read the clock or store attestations.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelward.core.canonical import canonical_digest, canonical_json
from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement, Subject
from modelward.errors import InputError
from modelward.provenance._attestations import sign_statement, verify_envelope
from modelward.provenance.slsa import format_time, parse_time
from modelward.signing.keys import Signer, Verifier

TEST_RESULT_V01 = "https://in-toto.io/attestation/test-result/v0.1"
EVALUATION_FIELD = "modelwardEvaluation"
MAX_RESULTS_BYTES = 16 * 1024 * 1024
_MAX_NAME = 256
_DATASET_URI = re.compile(r"^datasets:/[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[1-9][0-9]*$")
_SUITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        raise InputError(f"{what} must be a non-empty string of at most {_MAX_NAME} characters")
    if any(ord(c) < 32 for c in value):
        raise InputError(f"{what} {value!r} contains control characters")
    return value


def _number(value: Any, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{what} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{what} is NaN or infinite")
    return value


def validate_suite(suite: Any) -> str:
    if not isinstance(suite, str) or not _SUITE.match(suite):
        raise InputError(
            f"suite name {suite!r} must be 1-128 letters, digits or . _ : / - characters"
        )
    return suite


@dataclass(frozen=True)
class EvaluationCheck:
    """One named check of an evaluation and whether it passed (possibly with a warning)."""

    name: str
    passed: bool
    warned: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "passed": self.passed}
        if self.warned:
            data["warned"] = True
        return data

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationCheck:
        if not isinstance(data, dict):
            raise InputError("each test must be an object with 'name' and 'passed'")
        passed, warned = data.get("passed"), data.get("warned", False)
        name = _name(data.get("name"), "test name")
        if not isinstance(passed, bool):
            raise InputError(f"test {name!r}: 'passed' is not true or false")
        if not isinstance(warned, bool):
            raise InputError(f"test {name!r}: 'warned' is not true or false")
        return cls(name=name, passed=passed, warned=warned)


@dataclass(frozen=True)
class EvaluationResults:
    metrics: Mapping[str, float | int] = field(default_factory=dict)
    tests: tuple[EvaluationCheck, ...] = ()
    configuration: Mapping[str, Any] = field(default_factory=dict)
    dataset: str | None = None

    def __post_init__(self) -> None:
        for metric_name, value in self.metrics.items():
            _number(value, f"metric {_name(metric_name, 'metric name')!r}")
        names = [t.name for t in self.tests]
        if len(set(names)) != len(names):
            raise InputError("test names must be unique")
        if not self.metrics and not self.tests:
            raise InputError("the results have neither metrics nor tests")
        if self.dataset is not None and not (
            isinstance(self.dataset, str) and _DATASET_URI.match(self.dataset)
        ):
            raise InputError(f"dataset {self.dataset!r} is not of the form datasets:/NAME/N")
        canonical_json(dict(self.configuration))  # refuses what cannot be signed

    @property
    def result(self) -> str:
        if any(not t.passed for t in self.tests):
            return "FAILED"
        if not self.tests or any(t.warned for t in self.tests):
            return "WARNED"
        return "PASSED"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "metrics": dict(self.metrics),
            "tests": [t.to_dict() for t in self.tests],
            "configuration": dict(self.configuration),
        }
        if self.dataset is not None:
            data["dataset"] = self.dataset
        return data

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationResults:
        if not isinstance(data, dict):
            raise InputError("evaluation results are not a JSON object")
        unknown = set(data) - {"metrics", "tests", "configuration", "dataset"}
        if unknown:
            raise InputError(
                f"evaluation results have unknown fields: {', '.join(sorted(unknown))}"
            )
        metrics = data.get("metrics", {})
        tests = data.get("tests", [])
        configuration = data.get("configuration", {})
        if not isinstance(metrics, dict):
            raise InputError("'metrics' must be an object of names to numbers")
        if not isinstance(tests, list):
            raise InputError("'tests' must be a list")
        if not isinstance(configuration, dict):
            raise InputError("'configuration' must be an object")
        return cls(
            metrics=metrics,
            tests=tuple(EvaluationCheck.from_dict(t) for t in tests),
            configuration=configuration,
            dataset=data.get("dataset"),
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InputError(f"evaluation results: duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise InputError(f"evaluation results: {name} is not allowed")


def parse_results(data: bytes | str) -> EvaluationResults:
    """Parse and validate a results file's content (see the module docstring for the schema)."""
    if len(data) > MAX_RESULTS_BYTES:
        raise InputError("evaluation results are larger than 16 MiB")
    if not data.strip():
        raise InputError("evaluation results are empty")
    try:
        parsed = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"evaluation results are not JSON: {exc}") from exc
    except RecursionError as exc:
        raise InputError("evaluation results are nested too deeply") from exc
    return EvaluationResults.from_dict(parsed)


@dataclass(frozen=True)
class Evaluation:
    """An evaluation of one version, as attested."""

    suite: str
    results: EvaluationResults
    evaluated_on: dt.datetime
    evaluator: str  # the actor who ran or attached it
    url: str | None = None

    @property
    def result(self) -> str:
        return self.results.result

    def to_predicate(self) -> dict[str, Any]:
        tests = self.results.tests
        predicate: dict[str, Any] = {
            "result": self.result,
            "configuration": [
                {
                    "name": self.suite,
                    "digest": {"sha256": canonical_digest(dict(self.results.configuration))},
                    "mediaType": "application/json",
                }
            ],
            "passedTests": [t.name for t in tests if t.passed and not t.warned],
            "warnedTests": [t.name for t in tests if t.passed and t.warned],
            "failedTests": [t.name for t in tests if not t.passed],
            EVALUATION_FIELD: {
                "suite": self.suite,
                "evaluatedOn": format_time(self.evaluated_on),
                "evaluator": self.evaluator,
                **self.results.to_dict(),
            },
        }
        if self.url:
            predicate["url"] = self.url
        return predicate

    @classmethod
    def from_predicate(cls, predicate: Any) -> Evaluation:
        if not isinstance(predicate, dict) or not isinstance(predicate.get(EVALUATION_FIELD), dict):
            raise InputError(f"test-result predicate has no '{EVALUATION_FIELD}' object")
        facts = dict(predicate[EVALUATION_FIELD])
        suite = validate_suite(facts.pop("suite", None))
        evaluated_on = parse_time(facts.pop("evaluatedOn", None), "evaluatedOn")
        evaluator = _name(facts.pop("evaluator", None), "evaluator")
        url = predicate.get("url")
        evaluation = cls(
            suite=suite,
            results=EvaluationResults.from_dict(facts),
            evaluated_on=evaluated_on,
            evaluator=evaluator,
            url=url if isinstance(url, str) else None,
        )
        expected = evaluation.to_predicate()
        for key in ("result", "passedTests", "warnedTests", "failedTests", "configuration"):
            if predicate.get(key) != expected[key]:
                raise InputError(f"test-result '{key}' does not agree with the modelward fields")
        return evaluation


def evaluation_statement(evaluation: Evaluation, root_digest: str, model_name: str) -> Statement:
    if not re.fullmatch(r"[0-9a-f]{64}", root_digest):
        raise InputError("version root digest is not a hex SHA-256")
    validate_suite(evaluation.suite)
    return Statement(
        subjects=(Subject.of(model_name, sha256=root_digest),),
        predicate_type=TEST_RESULT_V01,
        predicate=evaluation.to_predicate(),
    )


def sign_evaluation(statement: Statement, signer: Signer) -> Envelope:
    if statement.predicate_type != TEST_RESULT_V01:
        raise InputError(f"not a test-result statement: {statement.predicate_type}")
    return sign_statement(statement, signer)


def verify_evaluation(
    envelope: bytes | str | dict[str, Any] | Envelope,
    trusted: Sequence[Verifier],
    expected_root_digest: str | None,
) -> Evaluation:
    """The evaluation inside a trusted, well-formed test-result attestation about the version."""
    statement = verify_envelope(
        envelope,
        trusted,
        predicate_type=TEST_RESULT_V01,
        expected_sha256=expected_root_digest,
        what="evaluation",
    )
    return Evaluation.from_predicate(statement.predicate)


@dataclass(frozen=True)
class MetricDelta:
    name: str
    a: float | int | None
    b: float | int | None

    @property
    def delta(self) -> float | int | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def relative(self) -> float | None:
        """(b - a) / |a|, or None when either is missing or a is zero."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / abs(self.a)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "relative": self.relative,
        }


def compare(
    metrics_a: Mapping[str, float | int], metrics_b: Mapping[str, float | int]
) -> list[MetricDelta]:
    """Deltas from A to B for every metric either has, sorted by name."""
    for label, metrics in (("A", metrics_a), ("B", metrics_b)):
        for metric_name, value in metrics.items():
            _number(value, f"metric {metric_name!r} of {label}")
    return [
        MetricDelta(name=name, a=metrics_a.get(name), b=metrics_b.get(name))
        for name in sorted(set(metrics_a) | set(metrics_b))
    ]
