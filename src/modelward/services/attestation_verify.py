"""The one verifier of stored attestations: nothing read from the `attestations` table is used
(by the gate, `show`, `lineage`, `bom` or evidence export) until it passes here.

`AttestationVerifier.check(row, root_digest)` returns a `VerifiedAttestation` only when

- the row's stored digest is the SHA-256 of its document;
- its signature verifies: for DSSE statements (scan, change, evaluation, reproduction, …) with
  the registry key; for `provenance` with the registry key or a trusted key; for the OMS bundles
  `registry-signature` with the registry key and `uploader-signature` with a key recorded as
  trusted (`modelward keys trust`), never the registry's own;
- the statement's predicate type is the one its kind has; and
- its subject digest is the version's root digest (so a row moved to another version, or a
  signed statement about other bytes, is refused).

Otherwise it returns an `AttestationProblem` with the reason; callers report it and treat the
attestation as absent, so rules that need it fail closed. Reads nothing itself: the trusted keys
come from `trusted_keys_in` (a tampered setting is a problem, and then no key is trusted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelward.core.attestation_record import AttestationRecord
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import SCAN_PREDICATE_TYPE, Statement
from modelward.errors import ModelwardError
from modelward.services.change import CHANGE_KIND, CHANGE_PREDICATE_TYPE
from modelward.signing.keys import Verifier
from modelward.signing.oms import PREDICATE_TYPE as OMS_PREDICATE_TYPE
from modelward.signing.oms import SignatureBundle, manifest_from_statement, verify_with_key

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

REGISTRY_SIGNATURE = "registry-signature"
UPLOADER_SIGNATURE = "uploader-signature"
OMS_KINDS = (REGISTRY_SIGNATURE, UPLOADER_SIGNATURE)
PROVENANCE_KIND = "provenance"
REGISTRY_KEY_NAME = "registry"

# The predicate type each kind must carry; kinds not listed accept any (registry-signed) type.
PREDICATE_TYPES = {
    "scan": SCAN_PREDICATE_TYPE,
    CHANGE_KIND: CHANGE_PREDICATE_TYPE,
    "evaluation": "https://in-toto.io/attestation/test-result/v0.1",
    "reproduction": "https://modelward.dev/reproduction/v1",
    "forensics": "https://modelward.dev/forensics/v1",
    "probe": "https://modelward.dev/probe/v1",
    PROVENANCE_KIND: "https://slsa.dev/provenance/v1",
    REGISTRY_SIGNATURE: OMS_PREDICATE_TYPE,
    UPLOADER_SIGNATURE: OMS_PREDICATE_TYPE,
}


@dataclass(frozen=True)
class VerifiedAttestation:
    """An attestation whose signature and subject checked out; only `check` makes one."""

    record: AttestationRecord
    statement: Statement
    envelope: Envelope  # the DSSE envelope (inside the Sigstore bundle for OMS kinds)
    key_id: str
    key_name: str  # "registry" or the trusted key's name

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def predicate(self) -> dict[str, Any]:
        return dict(self.statement.predicate)

    @property
    def uri(self) -> str:
        return f"attestation:{self.record.id}:{self.record.kind}"


@dataclass(frozen=True)
class AttestationProblem:
    record: AttestationRecord
    reason: str

    @property
    def kind(self) -> str:
        return self.record.kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.record.id,
            "kind": self.record.kind,
            "digest": self.record.digest,
            "reason": self.reason,
        }

    def describe(self) -> str:
        return f"attestation {self.record.id} ({self.record.kind}): {self.reason}"


@dataclass(frozen=True)
class NamedKey:
    name: str
    verifier: Verifier


class _Refused(Exception):
    pass


@dataclass
class CheckedAttestations:
    """Every attestation of one version, split into verified ones and problems (in id order)."""

    verified: list[VerifiedAttestation] = field(default_factory=list)
    problems: list[AttestationProblem] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[VerifiedAttestation]:
        return [v for v in self.verified if v.kind == kind]

    def latest(self, kind: str) -> VerifiedAttestation | None:
        found = self.of_kind(kind)
        return found[-1] if found else None

    def result_of(self, record_id: int) -> VerifiedAttestation | AttestationProblem | None:
        for verified in self.verified:
            if verified.record.id == record_id:
                return verified
        for problem in self.problems:
            if problem.record.id == record_id:
                return problem
        return None


class AttestationVerifier:
    def __init__(
        self,
        registry_key: Verifier,
        trusted: Sequence[NamedKey] = (),
        setting_problems: Sequence[str] = (),
        trust_hint: str = "modelward keys trust",
    ) -> None:
        """`trust_hint` says how to trust an uploader key where this verifier runs (the
        registry's `modelward keys trust`; offline, the verifier's own key options)."""
        self.registry = NamedKey(REGISTRY_KEY_NAME, registry_key)
        self.trust_hint = trust_hint
        # The registry's own key never counts as a trusted uploader key.
        self.trusted = [k for k in trusted if k.verifier.keyid != registry_key.keyid]
        self.setting_problems = list(setting_problems)

    @classmethod
    def for_registry(cls, conn: Connection, registry_key: Verifier) -> AttestationVerifier:
        """A verifier with the registry key and the verified trusted keys of the registry."""
        from modelward.services.trusted_keys import trusted_keys_in

        try:
            keys = [NamedKey(k.name, k.verifier()) for k in trusted_keys_in(conn)]
        except ModelwardError as exc:
            return cls(registry_key, (), [f"trusted keys are not used: {exc}"])
        return cls(registry_key, keys)

    def check(
        self, record: AttestationRecord, root_digest: str
    ) -> VerifiedAttestation | AttestationProblem:
        try:
            return self._check(record, root_digest)
        except _Refused as exc:
            return AttestationProblem(record, str(exc))
        except (ModelwardError, ValueError, TypeError, KeyError) as exc:
            return AttestationProblem(record, f"unreadable: {exc}")

    def check_all(
        self, records: Iterable[AttestationRecord], root_digest: str
    ) -> CheckedAttestations:
        checked = CheckedAttestations()
        for record in records:
            result = self.check(record, root_digest)
            if isinstance(result, VerifiedAttestation):
                checked.verified.append(result)
            else:
                checked.problems.append(result)
        return checked

    def _check(self, record: AttestationRecord, root_digest: str) -> VerifiedAttestation:
        actual = hashlib.sha256(record.document.encode("utf-8")).hexdigest()
        if actual != record.digest:
            raise _Refused("the stored document does not match its recorded digest")
        document = json.loads(record.document)
        if record.kind in OMS_KINDS:
            return self._check_oms(record, document, root_digest)
        envelope = Envelope.from_dict(document)
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise _Refused(f"payload type is {envelope.payload_type!r}, not in-toto")
        keys = [self.registry]
        if record.kind == PROVENANCE_KIND:
            keys += self.trusted
        signer = _dsse_signer(envelope, keys)
        if signer is None:
            who = "the registry key or a trusted key" if len(keys) > 1 else "the registry key"
            raise _Refused(f"the DSSE signature does not verify with {who}")
        statement = Statement.from_bytes(envelope.payload)
        _check_predicate_type(record.kind, statement)
        subjects = [s.digest_for("sha256") for s in statement.subjects]
        if root_digest not in subjects:
            shown = ", ".join(f"sha256:{d}" for d in subjects if d) or "no sha256 digest"
            raise _Refused(
                f"the statement is about {shown}, not this version (sha256:{root_digest})"
            )
        return VerifiedAttestation(record, statement, envelope, signer.verifier.keyid, signer.name)

    def _check_oms(
        self, record: AttestationRecord, document: Any, root_digest: str
    ) -> VerifiedAttestation:
        bundle = SignatureBundle.from_dict(document, f"attestation {record.id}")
        if bundle.uses_certificates:
            raise _Refused("certificate-based signatures are not checked against trusted keys")
        if record.kind == REGISTRY_SIGNATURE:
            candidates = [self.registry]
        else:
            hint = bundle.public_key_hint
            candidates = [k for k in self.trusted if hint is None or k.verifier.keyid == hint]
            if not candidates:
                shown = f"key {hint[:16]}…" if hint else "an unnamed key"
                if hint == self.registry.verifier.keyid:
                    raise _Refused(
                        "signed with the registry's own key, which is not an uploader key"
                    )
                raise _Refused(f"signed with {shown}, which is not trusted ({self.trust_hint})")
        statement: Statement | None = None
        signer: NamedKey | None = None
        for key in candidates:
            try:
                statement = verify_with_key(bundle, key.verifier)
            except ModelwardError:
                continue
            signer = key
            break
        if statement is None or signer is None:
            raise _Refused(f"the signature does not verify with the {candidates[0].name!r} key")
        signed = manifest_from_statement(statement)
        if signed.root_digest != root_digest:
            raise _Refused(
                f"the signature covers sha256:{signed.root_digest}, not this version "
                f"(sha256:{root_digest})"
            )
        return VerifiedAttestation(
            record, statement, bundle.envelope, signer.verifier.keyid, signer.name
        )


def _dsse_signer(envelope: Envelope, keys: Sequence[NamedKey]) -> NamedKey | None:
    message = envelope.pae()
    for signature in envelope.signatures:
        for key in keys:
            if signature.keyid and signature.keyid != key.verifier.keyid:
                continue
            if key.verifier.is_valid(signature.sig, message):
                return key
    return None


def _check_predicate_type(kind: str, statement: Statement) -> None:
    expected = PREDICATE_TYPES.get(kind)
    if expected is not None and statement.predicate_type != expected:
        raise _Refused(
            f"a {kind!r} attestation must have predicate type {expected}, "
            f"not {statement.predicate_type}"
        )


def verified_attestations_in(
    conn: Connection, version_id: int, root_digest: str, registry_key: Verifier
) -> tuple[AttestationVerifier, CheckedAttestations]:
    """Check every stored attestation of a version (see the module docstring)."""
    from modelward.storage.metadata.registry_repository import RegistryRepository

    verifier = AttestationVerifier.for_registry(conn, registry_key)
    records = RegistryRepository(conn).attestations(version_id)
    return verifier, verifier.check_all(records, root_digest)


def attestation_state_check(registry_key: Verifier) -> Callable[[Connection], list[str]]:
    """An `audit verify` state check: every stored attestation of every version must verify.
    An uploader signature by a key nobody trusted is not tampering and is not reported."""

    def check(conn: Connection) -> list[str]:
        from modelward.storage.metadata.registry_repository import RegistryRepository

        repo = RegistryRepository(conn)
        verifier = AttestationVerifier.for_registry(conn, registry_key)
        problems = list(verifier.setting_problems)
        for version in repo.all_versions():
            checked = verifier.check_all(repo.attestations(version.id), version.root_digest)
            for problem in checked.problems:
                if problem.kind == UPLOADER_SIGNATURE and problem.reason.endswith(
                    "(modelward keys trust)"
                ):
                    continue
                problems.append(f"{version.uri}: {problem.describe()}")
        return problems

    return check
