"""SLSA Provenance v1 for training runs: build, sign, verify, parse, completeness."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import replace

import pytest

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement, Subject
from modelward.errors import InputError, SignatureFormatError, SignatureMismatchError
from modelward.provenance.slsa import (
    COMPLETENESS_FIELDS,
    SLSA_PROVENANCE_V1,
    TRAINING_BUILD_TYPE,
    BaseModel,
    DatasetUse,
    TrainingRun,
    completeness,
    provenance_statement,
    sign_provenance,
    training_run_of,
    verify_provenance,
)
from modelward.signing.keys import Signer, Verifier

ROOT = "e" * 64


def test_predicate_shape(training_run: TrainingRun) -> None:
    statement = provenance_statement(training_run, ROOT, "chat-model")
    data = statement.to_dict()
    assert data["predicateType"] == SLSA_PROVENANCE_V1
    assert data["subject"] == [{"name": "chat-model", "digest": {"sha256": ROOT}}]
    build = data["predicate"]["buildDefinition"]
    assert build["buildType"] == TRAINING_BUILD_TYPE
    assert build["externalParameters"]["datasets"] == ["datasets:/chat-sft/3"]
    assert build["externalParameters"]["baseModel"] == "models:/base-llm/7"
    assert build["internalParameters"]["gpu"] == "NVIDIA A100"
    names = [d["name"] for d in build["resolvedDependencies"]]
    assert names == ["source", "dataset", "baseModel"]
    assert build["resolvedDependencies"][0]["digest"] == {"gitCommit": "c" * 40}
    metadata = data["predicate"]["runDetails"]["metadata"]
    assert metadata["startedOn"] == "2025-03-01T12:00:00Z"
    assert metadata["finishedOn"] == "2025-03-01T14:00:00.000005Z"


def test_sign_verify_and_parse_back(training_run: TrainingRun, signer: Signer) -> None:
    envelope = sign_provenance(provenance_statement(training_run, ROOT, "m"), signer)
    wire = json.dumps(envelope.to_dict()).encode()
    statement = verify_provenance(wire, [Verifier(signer.public_key)], ROOT)
    assert training_run_of(statement) == training_run
    assert verify_provenance(envelope.to_dict(), [Verifier(signer.public_key)], None)


def test_subject_of_another_bundle_is_refused(training_run: TrainingRun, signer: Signer) -> None:
    envelope = sign_provenance(provenance_statement(training_run, ROOT, "m"), signer)
    with pytest.raises(InputError, match=f"not sha256:{'f' * 64}"):
        verify_provenance(envelope, [Verifier(signer.public_key)], "f" * 64)


def test_unknown_key_and_bad_signature_are_refused(
    training_run: TrainingRun, signer: Signer, other_signer: Signer
) -> None:
    envelope = sign_provenance(provenance_statement(training_run, ROOT, "m"), signer)
    with pytest.raises(SignatureMismatchError, match="unknown key"):
        verify_provenance(envelope, [Verifier(other_signer.public_key)], ROOT)
    with pytest.raises(SignatureMismatchError, match="no trusted keys"):
        verify_provenance(envelope, [], ROOT)
    forged_payload = envelope.payload.replace(ROOT.encode(), b"f" * 64)
    forged = replace(envelope, payload=forged_payload)
    with pytest.raises(SignatureMismatchError, match="does not verify"):
        verify_provenance(forged, [Verifier(signer.public_key)], "f" * 64)


def test_unsigned_and_malformed_envelopes(training_run: TrainingRun, signer: Signer) -> None:
    envelope = sign_provenance(provenance_statement(training_run, ROOT, "m"), signer)
    unsigned = {**envelope.to_dict(), "signatures": []}
    trusted = [Verifier(signer.public_key)]
    for bad in (json.dumps(unsigned), b"", b"{", b"[]", "null", b"\xff\xfe"):
        with pytest.raises(SignatureFormatError):
            verify_provenance(bad, trusted, ROOT)
    other_type = {**envelope.to_dict(), "payloadType": "text/plain"}
    with pytest.raises(SignatureFormatError, match="payload type"):
        verify_provenance(other_type, trusted, ROOT)


def test_other_predicate_type_is_refused(signer: Signer) -> None:
    statement = Statement((Subject.of("m", sha256=ROOT),), "https://example.org/other", {})
    envelope = Envelope.sign(
        "application/vnd.in-toto+json", statement.to_bytes(), signer.sign, signer.keyid
    )
    with pytest.raises(InputError, match="predicate type"):
        verify_provenance(envelope, [Verifier(signer.public_key)], ROOT)
    with pytest.raises(InputError):
        sign_provenance(statement, signer)


def test_signed_payload_that_is_not_a_statement(signer: Signer) -> None:
    envelope = Envelope.sign("application/vnd.in-toto+json", b"not json", signer.sign)
    with pytest.raises(SignatureFormatError):
        verify_provenance(envelope, [Verifier(signer.public_key)], ROOT)
    data = envelope.to_dict()
    data["payload"] = base64.b64encode(b"x").decode()
    with pytest.raises(SignatureMismatchError):
        verify_provenance(data, [Verifier(signer.public_key)], ROOT)


def test_completeness_of_a_full_and_an_empty_run(training_run: TrainingRun) -> None:
    full = completeness(provenance_statement(training_run, ROOT, "m"))
    assert set(full) == set(COMPLETENESS_FIELDS)
    assert all(full.values()), full
    bare = TrainingRun(
        builder_id="b",
        invocation_id="i",
        started_on=training_run.started_on,
        finished_on=training_run.started_on,
    )
    facts = completeness(provenance_statement(bare, ROOT, "m"))
    present = {name for name, ok in facts.items() if ok}
    assert present == {"builder_id", "invocation_id", "started_on", "finished_on", "subject_digest"}


def test_completeness_flags_invalid_values(training_run: TrainingRun) -> None:
    predicate = training_run.to_predicate()
    predicate["buildDefinition"]["externalParameters"]["source"]["commit"] = "not-a-commit"
    predicate["buildDefinition"]["internalParameters"]["environmentDigest"] = "md5:abc"
    predicate["buildDefinition"]["resolvedDependencies"][1]["uri"] = "s3://bucket/data"
    predicate["runDetails"]["metadata"]["finishedOn"] = "2020-01-01T00:00:00Z"
    predicate["buildDefinition"]["externalParameters"]["seeds"] = {"torch": "1"}
    facts = completeness(Statement((Subject.of("m", sha256="x"),), SLSA_PROVENANCE_V1, predicate))
    for name in ("source_commit", "environment_digest", "datasets", "finished_on", "seeds"):
        assert facts[name] is False, name
    assert facts["subject_digest"] is False
    assert facts["started_on"] is True
    garbage = Statement((Subject.of("m", sha256=ROOT),), SLSA_PROVENANCE_V1, {"x": [1]})
    assert not any(completeness(garbage)[k] for k in COMPLETENESS_FIELDS if k != "subject_digest")


def test_training_run_validation(training_run: TrainingRun) -> None:
    with pytest.raises(InputError, match="finished before it started"):
        replace(training_run, finished_on=training_run.started_on - dt.timedelta(seconds=1))
    with pytest.raises(InputError, match="time zone"):
        replace(training_run, started_on=dt.datetime(2025, 1, 1))
    with pytest.raises(InputError, match="NaN"):
        replace(training_run, hyperparameters={"lr": float("nan")})
    with pytest.raises(InputError):
        replace(training_run, hyperparameters={"big": 2**60})
    with pytest.raises(InputError, match="seed"):
        replace(training_run, seeds={"torch": True})
    with pytest.raises(InputError, match="datasets:/NAME/N"):
        DatasetUse("datasets:/x/0", "a" * 64)
    with pytest.raises(InputError):
        BaseModel(digest="short")
    with pytest.raises(InputError):
        provenance_statement(training_run, "ROOT", "m")


def test_from_predicate_rejects_malformed_predicates(training_run: TrainingRun) -> None:
    good = training_run.to_predicate()
    broken = [
        None,
        {},
        {**good, "buildDefinition": {**good["buildDefinition"], "buildType": "x"}},
        {**good, "runDetails": {"builder": {}, "metadata": {}}},
        {**good, "buildDefinition": {**good["buildDefinition"], "resolvedDependencies": {}}},
        {
            **good,
            "buildDefinition": {
                **good["buildDefinition"],
                "resolvedDependencies": [{"name": "dataset", "digest": {"sha256": "x"}}],
            },
        },
        {
            **good,
            "runDetails": {
                **good["runDetails"],
                "metadata": {**good["runDetails"]["metadata"], "startedOn": "yesterday"},
            },
        },
    ]
    for bad in broken:
        with pytest.raises(InputError):
            TrainingRun.from_predicate(bad)
