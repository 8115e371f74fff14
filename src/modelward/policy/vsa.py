"""Gate decisions as SLSA Verification Summary Attestations (VSA v1) in in-toto Statements.

`decision_statement` wraps a `Decision` for one candidate as a Statement whose predicate follows
`https://slsa.dev/verification_summary/v1`: the policy is named by its digest, the result is
PASSED or FAILED, and the full decision (every rule result, the facts digest, any override) rides
in a `modelward` extension field so an auditor can recompute it. `sign_statement` puts it in a
DSSE envelope. Storing and logging the envelope is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement, Subject
from modelward.core.policy import Decision, format_timestamp
from modelward.errors import InputError, SignatureFormatError

VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://modelward.dev/gate/v1"
POLICY_URI_PREFIX = "modelward:policy/"
EXTENSION_KEY = "modelward"


def _modelward_version() -> str:
    import importlib.metadata  # only when signing: verifying need not pay for it

    try:
        return importlib.metadata.version("modelward")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _split_digest(digest: str, what: str) -> dict[str, str]:
    algorithm, sep, value = digest.partition(":")
    if not sep or not algorithm or not value:
        raise InputError(f"{what} {digest!r} is not of the form ALGORITHM:HEX")
    return {algorithm: value}


def decision_statement(
    decision: Decision,
    *,
    resource_uri: str,
    subject_digest: str,
    time_verified: datetime,
    input_attestations: Sequence[tuple[str, str]] = (),
    verified_levels: Sequence[str] = (),
    verifier_version: str | None = None,
) -> Statement:
    """The VSA statement for `decision` about the bundle `subject_digest` (`sha256:HEX`).

    `input_attestations` are (uri, `sha256:HEX`) pairs of the attestations the facts came from.
    `verified_levels` are the SLSA levels the caller established (often none for models yet).
    """
    subject = Subject(
        name=resource_uri, digest=tuple(sorted(_split_digest(subject_digest, "subject").items()))
    )
    predicate: dict[str, Any] = {
        "verifier": {
            "id": VERIFIER_ID,
            "version": {"modelward": verifier_version or _modelward_version()},
        },
        "timeVerified": format_timestamp(time_verified),
        "resourceUri": resource_uri,
        "policy": {
            "uri": POLICY_URI_PREFIX + (decision.policy_name or decision.environment),
            "digest": _split_digest(decision.policy_digest, "policy digest"),
        },
        "inputAttestations": [
            {"uri": uri, "digest": _split_digest(digest, f"attestation {uri}")}
            for uri, digest in sorted(input_attestations)
        ],
        "verificationResult": "PASSED" if decision.allowed else "FAILED",
        "verifiedLevels": list(verified_levels),
        "slsaVersion": "1.0",
        EXTENSION_KEY: {
            "environment": decision.environment,
            "factsDigest": _split_digest(decision.facts_digest, "facts digest"),
            "decisionDigest": _split_digest(decision.digest(), "decision digest"),
            "decision": decision.to_dict(),
        },
    }
    return Statement(subjects=(subject,), predicate_type=VSA_PREDICATE_TYPE, predicate=predicate)


def sign_statement(
    statement: Statement, sign: Callable[[bytes], bytes], keyid: str = ""
) -> Envelope:
    """A DSSE envelope over the statement's canonical bytes (`sign` is e.g. `Signer.sign`)."""
    return Envelope.sign(IN_TOTO_PAYLOAD_TYPE, statement.to_bytes(), sign, keyid)


def decision_from_statement(statement: Statement) -> Decision:
    """Read the decision back out of a VSA statement, checking it agrees with the summary."""
    if statement.predicate_type != VSA_PREDICATE_TYPE:
        raise SignatureFormatError(
            f"statement predicate is {statement.predicate_type}, not a SLSA VSA"
        )
    predicate = statement.predicate
    extension = predicate.get(EXTENSION_KEY)
    if not isinstance(extension, Mapping) or not isinstance(extension.get("decision"), Mapping):
        raise SignatureFormatError("the VSA carries no modelward decision")
    try:
        decision = Decision.from_dict(extension["decision"])
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise SignatureFormatError(f"the VSA's decision is malformed: {exc}") from exc
    expected_result = "PASSED" if decision.allowed else "FAILED"
    if predicate.get("verificationResult") != expected_result:
        raise SignatureFormatError("the VSA's verificationResult disagrees with its decision")
    policy = predicate.get("policy")
    if not isinstance(policy, Mapping) or policy.get("digest") != _split_digest(
        decision.policy_digest, "policy digest"
    ):
        raise SignatureFormatError("the VSA's policy digest disagrees with its decision")
    return decision
