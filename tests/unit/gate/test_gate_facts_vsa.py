"""Facts documents match their schema and stay explicit about unknowns; decisions become VSAs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement
from modelward.core.policy import evaluate
from modelward.errors import InputError, SignatureFormatError
from modelward.policy.cel_engine import CelEngine
from modelward.policy.facts import FACTS_SCHEMA, Approval, Metric, build_facts
from modelward.policy.loader import load_default_policy
from modelward.policy.vsa import (
    VSA_PREDICATE_TYPE,
    decision_from_statement,
    decision_statement,
    sign_statement,
)
from modelward.signing.keys import Signer, Verifier, generate_private_key

MakeFacts = Callable[..., dict[str, Any]]
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_good_facts_match_the_schema(make_facts: MakeFacts) -> None:
    jsonschema.Draft202012Validator.check_schema(FACTS_SCHEMA)
    jsonschema.validate(make_facts(), FACTS_SCHEMA)


def test_unknowns_are_explicit_nulls(make_facts: MakeFacts) -> None:
    facts = build_facts(
        time=NOW,
        environment="staging",
        previous_environment=None,
        model="m",
        version=1,
        digest="sha256:" + "a" * 64,
        author=None,
    )
    jsonschema.validate(facts, FACTS_SCHEMA)
    assert set(facts) == set(FACTS_SCHEMA["required"])
    for key in ("risk_tier", "change", "signatures", "scan", "provenance", "evaluations"):
        assert facts[key] is None
    assert facts["current"] is None and facts["rollback_drill"] is None
    assert facts["approvals"] == []
    assert facts["time"] == "2025-06-01T12:00:00Z"


def test_approvals_are_one_per_reviewer_sorted(make_facts: MakeFacts) -> None:
    facts = make_facts(
        approvals=(
            Approval("zoe", NOW - timedelta(days=2), sign_off=True),
            Approval("bob", NOW - timedelta(days=1)),
            Approval("zoe", NOW - timedelta(hours=1)),
        )
    )
    assert facts["approvals"] == [
        {"reviewer": "bob", "at": "2025-05-31T12:00:00Z", "sign_off": False},
        {"reviewer": "zoe", "at": "2025-06-01T11:00:00Z", "sign_off": True},
    ]


def test_provenance_gaps_make_it_incomplete(make_facts: MakeFacts) -> None:
    assert make_facts(provenance_missing=("datasets",))["provenance"] == {
        "present": True,
        "complete": False,
        "missing": ["datasets"],
        "required": None,
        "base_model": "sha256:" + "c" * 64,
        "base_released": True,
    }
    assert make_facts(provenance_present=False)["provenance"]["complete"] is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 0}, "positive integer"),
        ({"risk_tier": "extreme"}, "risk tier 'extreme'"),
        ({"scan_verdict": "ok"}, "scan verdict 'ok'"),
        ({"metrics": {"acc": Metric(float("nan"))}}, "must be finite"),
        ({"metrics": {"acc": Metric("high")}}, "must be a number"),  # type: ignore[arg-type]
        ({"model": ""}, "model must be a non-empty string"),
        ({"time": datetime(2025, 1, 1)}, "time zone"),
    ],
)
def test_bad_inputs_are_refused(
    make_facts: MakeFacts, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        make_facts(**overrides)


def test_decision_becomes_a_signed_vsa(engine: CelEngine, make_facts: MakeFacts) -> None:
    policy = load_default_policy("production", engine)
    facts = make_facts(approvals=(Approval("bob", NOW),))
    decision = evaluate(policy, facts, engine)
    assert not decision.allowed
    statement = decision_statement(
        decision,
        resource_uri="models:/support-assistant/7",
        subject_digest=facts["candidate"]["digest"],
        time_verified=NOW,
        input_attestations=[("attestations/scan", "sha256:" + "c" * 64)],
        verifier_version="0.1.0",
    )
    body = statement.to_dict()
    assert body["predicateType"] == VSA_PREDICATE_TYPE
    assert body["subject"] == [
        {"name": "models:/support-assistant/7", "digest": {"sha256": "a" * 64}}
    ]
    predicate = body["predicate"]
    assert predicate["verificationResult"] == "FAILED"
    assert predicate["policy"] == {
        "uri": "modelward:policy/production",
        "digest": {"sha256": policy.digest.removeprefix("sha256:")},
    }
    assert predicate["timeVerified"] == "2025-06-01T12:00:00Z"
    assert predicate["modelward"]["factsDigest"] == {
        "sha256": decision.facts_digest.removeprefix("sha256:")
    }
    assert predicate["inputAttestations"][0]["uri"] == "attestations/scan"

    signer = Signer(generate_private_key("ed25519"))
    envelope = sign_statement(statement, signer.sign, signer.keyid)
    parsed = Envelope.from_dict(envelope.to_dict())
    Verifier(signer.public_key).verify(parsed.signatures[0].sig, parsed.pae())
    again = decision_from_statement(Statement.from_bytes(parsed.payload))
    assert again == decision


def test_vsa_that_disagrees_with_its_decision_is_refused(
    engine: CelEngine, make_facts: MakeFacts
) -> None:
    decision = evaluate(load_default_policy("staging", engine), make_facts(), engine)
    statement = decision_statement(
        decision,
        resource_uri="models:/m/1",
        subject_digest="sha256:" + "a" * 64,
        time_verified=NOW,
        verifier_version="0.1.0",
    )
    body = statement.to_dict()
    body["predicate"]["verificationResult"] = "FAILED"
    with pytest.raises(SignatureFormatError, match="verificationResult disagrees"):
        decision_from_statement(Statement.from_dict(body))
    with pytest.raises(InputError, match="ALGORITHM:HEX"):
        decision_statement(decision, resource_uri="m", subject_digest="abc", time_verified=NOW)
