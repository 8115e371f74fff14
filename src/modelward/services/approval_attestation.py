"""Signed approvals: the in-toto statement an approval becomes, signed with the registry key.

When `approve` records an approval it also makes a DSSE envelope over an in-toto Statement v1
(predicate type `APPROVAL_PREDICATE_TYPE`) whose subject is the version's root digest and whose
predicate names the reviewer (with the issuer, subject and token id the server authenticated;
`null` in the embedded mode, which authenticates nobody), the environment, the comment, the
sign-off, the time, the approval's row id and the ledger event (origin and seq) that records it.
The envelope is kept in that event's details under `attestation`, so the ledger's leaf (which
covers the details' digest) and its seal cover it; no table changes.

`approval_envelope_of(details)` reads it back; `check_approval_statement` checks a verified
statement against the event that carries it (pure; used by `evidence verify`). Approvals made
before approvals were signed carry no envelope: the gate still counts them (their rows are
anchored), and evidence bundles name them as unsigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement, Subject
from modelward.core.principal import Principal
from modelward.signing.keys import Signer

APPROVAL_PREDICATE_TYPE = "https://modelward.dev/approval/v1"
APPROVAL_ACTION = "approval.add"
ATTESTATION_FIELD = "attestation"


def _ledger_time(moment: datetime) -> str:
    """The ledger's time form (`ledger_repository.format_time`), without its database imports."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def approval_predicate(
    *,
    approval_id: int,
    uri: str,
    environment: str,
    reviewer: str,
    principal: Principal | None,
    comment: str,
    sign_off: bool,
    at: datetime,
    origin: str,
    seq: int,
) -> dict[str, Any]:
    identity: dict[str, Any] = {"name": reviewer, "authenticated": principal is not None}
    if principal is not None:
        identity.update(
            {
                "issuer": principal.issuer,
                "subject": principal.subject or principal.name,
                "tokenId": principal.token_id,
            }
        )
    return {
        "approval": {
            "id": approval_id,
            "uri": uri,
            "environment": environment,
            "comment": comment,
            "signOff": sign_off,
            "approvedAt": _ledger_time(at),
        },
        "reviewer": identity,
        "ledger": {"origin": origin, "seq": seq, "action": APPROVAL_ACTION},
    }


def sign_approval(
    signer: Signer, model: str, root_digest: str, predicate: Mapping[str, Any]
) -> Envelope:
    statement = Statement(
        subjects=(Subject.of(model, sha256=root_digest),),
        predicate_type=APPROVAL_PREDICATE_TYPE,
        predicate=dict(predicate),
    )
    return Envelope.sign(IN_TOTO_PAYLOAD_TYPE, statement.to_bytes(), signer.sign, signer.keyid)


def approval_envelope_of(details: Mapping[str, Any]) -> dict[str, Any] | None:
    """The envelope an `approval.add` event carries, or None (an approval made unsigned)."""
    value = details.get(ATTESTATION_FIELD)
    return value if isinstance(value, dict) else None


def check_approval_statement(
    statement: Statement,
    *,
    root_digest: str,
    event_seq: int,
    event_actor: str,
    event_recorded_at: str,
    event_details: Mapping[str, Any],
    origin: str,
) -> list[str]:
    """Why a (signature-verified) approval statement does not match its ledger event, or []."""
    problems: list[str] = []
    if statement.predicate_type != APPROVAL_PREDICATE_TYPE:
        problems.append(f"predicate type is {statement.predicate_type}, not an approval")
        return problems
    if root_digest not in [s.digest_for("sha256") for s in statement.subjects]:
        problems.append(f"the statement is not about this version (sha256:{root_digest})")
    predicate = statement.predicate
    approval = predicate.get("approval")
    reviewer = predicate.get("reviewer")
    ledger = predicate.get("ledger")
    if not (isinstance(approval, dict) and isinstance(reviewer, dict) and isinstance(ledger, dict)):
        return [*problems, "the predicate lacks approval, reviewer or ledger"]
    if ledger.get("seq") != event_seq or ledger.get("origin") != origin:
        problems.append(
            f"the statement names ledger event {ledger.get('seq')} of {ledger.get('origin')}, "
            f"not event {event_seq} of {origin}"
        )
    if reviewer.get("name") != event_actor or event_details.get("reviewer") != event_actor:
        problems.append(
            f"the statement's reviewer {reviewer.get('name')!r} is not the event's {event_actor!r}"
        )
    for ours, theirs in (
        ("environment", "environment"),
        ("comment", "comment"),
        ("signOff", "sign_off"),
    ):
        if approval.get(ours) != event_details.get(theirs):
            problems.append(f"the statement's {ours} differs from its ledger event's")
    if approval.get("approvedAt") != event_recorded_at:
        problems.append("the statement's time differs from its ledger event's")
    auth = event_details.get("auth")
    if isinstance(auth, dict) and (
        reviewer.get("issuer") != auth.get("iss") or reviewer.get("tokenId") != auth.get("token_id")
    ):
        problems.append("the statement's issuer or token differs from the event's authentication")
    return problems
