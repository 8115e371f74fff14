"""`evidence verify`: check an evidence bundle offline, with only the public keys the caller
trusts: no registry, no database, no network.

Every link is checked on its own and reported as one `EvidenceCheck` (OK or FAIL with the
reason), so a failure names the member and what is wrong with it:

- the archive is canonical (`core.evidence_archive`), its index is signed by the registry key,
  and the members are exactly those the index lists, each with the SHA-256 it lists;
- the checkpoint is signed by the ledger key for the log the index names; the trusted witnesses
  that cosigned it are counted (and at least `witnesses_required` must have);
- each ledger event hashes, through its RFC 9162 inclusion proof, to that checkpoint's root, and
  each consistency proof leads from an older published checkpoint to it;
- the manifest has the root digest the push event recorded; each attestation passes
  `AttestationVerifier` (registry key, trusted uploader keys, predicate type, subject) and is the
  row its ledger event anchors; dataset manifests are the ones their `dataset.add` events and
  the provenance name; approvals are registry-signed statements that agree with their events;
  each decision's VSA is registry-signed, about this version, and matches its facts and event;
  each release deploys this bundle and names a decision the bundle holds;
- anything the registry left out at export (`omitted`) fails, as do unsigned approvals unless
  the caller accepts them (`allow_unsigned_approvals`: then they rest on their ledger event).

Raises InputError only for input that is not an evidence bundle at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelward.core.anchors import anchors_in, row_digest
from modelward.core.canonical import canonical_json
from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_checkpoint,
    parse_signed_note,
    parse_tlog_proof,
    verify_tlog_proof,
)
from modelward.core.consistency import verify_consistency_proof
from modelward.core.cosignature import CosignerKey, WitnessTally, tally_cosignatures
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.evidence_archive import read_archive
from modelward.core.intoto import Statement
from modelward.core.ledger_leaf import event_leaf_data
from modelward.core.merkle import leaf_hash
from modelward.core.release import Release
from modelward.core.release_authority import DecisionSummary
from modelward.errors import InputError, ModelwardError
from modelward.services.evidence_index import index_shape_problems
from modelward.signing.keys import Verifier

BUNDLE_PREDICATE_TYPE = "https://modelward.dev/evidence-bundle/v1"
INDEX_NAME = "index.dsse.json"
MAX_INDEX = 32 * 1024 * 1024


@dataclass(frozen=True)
class EvidenceCheck:
    link: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"link": self.link, "ok": self.ok, "detail": self.detail}

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.link}: {self.detail}"


@dataclass(frozen=True)
class EvidenceTrust:
    """The keys the caller trusts, by role, and the witness policy."""

    registry: Verifier
    ledger: Ed25519PublicKey | NoteVerifier
    uploaders: tuple[tuple[str, Verifier], ...] = ()
    witnesses: tuple[CosignerKey, ...] = ()
    witnesses_required: int = 0
    allow_unsigned_approvals: bool = False


@dataclass(frozen=True)
class EvidenceExpectation:
    """What the caller expects the bundle to be about; each given field must hold (the
    `expected` link), so a bundle of another model, version or release fails.

    `uri` is `models:/NAME/N` or `sha256:ROOT`; `environment` requires the bundle to be the
    evidence of a release in that environment."""

    model: str | None = None
    uri: str | None = None
    environment: str | None = None

    def __post_init__(self) -> None:
        uri = self.uri
        if uri is not None and not (
            (uri.startswith("models:/") and uri.rsplit("/", 1)[-1].isdigit() and "@" not in uri)
            or (uri.startswith("sha256:") and len(uri) == 71)
        ):
            raise InputError(
                f"--uri {uri!r}: give the version as models:/NAME/N or sha256:ROOT_DIGEST (an "
                "alias cannot be checked offline)"
            )

    @property
    def given(self) -> bool:
        return (self.model, self.uri, self.environment) != (None, None, None)


@dataclass
class EvidenceReport:
    uri: str | None
    release: str | None
    checks: list[EvidenceCheck] = field(default_factory=list)
    witnesses: WitnessTally | None = None
    exported_at: str | None = None
    exported_by: str | None = None
    checkpoint: Checkpoint | None = None  # the verified checkpoint: as of when the bundle holds

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[EvidenceCheck]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "uri": self.uri,
            "release": self.release,
            "checks": [c.to_dict() for c in self.checks],
            "failed": len(self.failures),
            "witnesses": None if self.witnesses is None else self.witnesses.to_dict(),
            "exported_at": self.exported_at,
            "exported_by": self.exported_by,
            "checkpoint": None
            if self.checkpoint is None
            else {"origin": self.checkpoint.origin, "size": self.checkpoint.size},
        }

    def as_of(self) -> str:
        """`as of the checkpoint of log ORIGIN at size N; exported at T by ACTOR`."""
        parts = []
        if self.checkpoint is not None:
            parts.append(
                f"as of the checkpoint of log {self.checkpoint.origin} at size "
                f"{self.checkpoint.size}"
            )
        if self.exported_at is not None:
            parts.append(
                f"exported at {self.exported_at}"
                + (f" by {self.exported_by}" if self.exported_by else "")
            )
        return "; ".join(parts)


class _Fail(Exception):
    pass


def _sha256(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Fail(f"{what} is not JSON: {exc}") from exc


def _dsse_signed_by(envelope: Envelope, key: Verifier) -> bool:
    message = envelope.pae()
    return any(
        (not s.keyid or s.keyid == key.keyid) and key.is_valid(s.sig, message)
        for s in envelope.signatures
    )


def _registry_statement(data: bytes, key: Verifier, what: str) -> Statement:
    try:
        envelope = Envelope.from_dict(_json(data, what))
    except ModelwardError as exc:
        raise _Fail(f"{what} is not a DSSE envelope: {exc}") from exc
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _Fail(f"{what}: payload type is {envelope.payload_type!r}, not in-toto")
    if not _dsse_signed_by(envelope, key):
        raise _Fail(f"{what}: the DSSE signature does not verify with the registry key")
    try:
        return Statement.from_bytes(envelope.payload)
    except ModelwardError as exc:
        raise _Fail(f"{what}: not an in-toto statement: {exc}") from exc


class _Verification:
    def __init__(self, members: list[tuple[str, bytes]], trust: EvidenceTrust) -> None:
        self.trust = trust
        self.members = dict(members)
        self.order = [name for name, _ in members]
        self.report = EvidenceReport(None, None)
        self.intact: set[str] = set()
        self.used: set[str] = {INDEX_NAME}
        self.events: dict[int, dict[str, Any]] = {}  # seq -> verified event document
        self.root = ""
        self.uri = ""
        self.model = ""
        self.proven_releases: dict[str, Release] = {}
        self.origin = ""
        self.checkpoint: Checkpoint | None = None
        self.ledger: NoteVerifier | None = None
        self.decisions: dict[str, DecisionSummary] = {}  # decision digest -> what it decided
        self.decision_approvals: dict[str, tuple[str, list[str]]] = {}  # -> (env, reviewers)
        self.approvals: list[tuple[str, str]] = []  # (environment, reviewer)
        self.dataset_digests: dict[str, str] = {}  # uri -> manifest digest
        self.provenance_datasets: list[tuple[str, str]] = []

    # -- reporting ---------------------------------------------------------------------------

    def ok(self, link: str, detail: str) -> None:
        self.report.checks.append(EvidenceCheck(link, True, detail))

    def fail(self, link: str, detail: str) -> None:
        self.report.checks.append(EvidenceCheck(link, False, detail))

    def run(self, link: str, check: Callable[[], str]) -> bool:
        try:
            detail = check()
        except _Fail as exc:
            self.fail(link, str(exc))
            return False
        except (ModelwardError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.fail(link, f"unreadable: {exc}")
            return False
        except RecursionError:
            self.fail(link, "unreadable: nested too deeply")
            return False
        self.ok(link, detail)
        return True

    def member(self, name: str) -> bytes:
        if name not in self.members:
            raise _Fail(f"the bundle has no member {name}")
        if name not in self.intact:
            raise _Fail(f"member {name} is not the one the index lists")
        self.used.add(name)
        return self.members[name]

    # -- the index ---------------------------------------------------------------------------

    def index(self) -> dict[str, Any] | None:
        if not self.order or self.order[0] != INDEX_NAME:
            raise InputError(f"not an evidence bundle: its first member is not {INDEX_NAME}")
        raw = self.members[INDEX_NAME]
        if len(raw) > MAX_INDEX:
            raise InputError("not an evidence bundle: the index is too large")
        try:
            envelope = Envelope.from_dict(json.loads(raw))
            statement = Statement.from_bytes(envelope.payload)
        except (ValueError, UnicodeDecodeError, ModelwardError, RecursionError) as exc:
            self.fail("index", f"unreadable (changed?): {exc}")
            return None
        predicate = dict(statement.predicate)
        version = predicate.get("version")
        registry = predicate.get("registry")
        if (
            statement.predicate_type != BUNDLE_PREDICATE_TYPE
            or not isinstance(version, dict)
            or not isinstance(registry, dict)
        ):
            self.fail("index", f"not an evidence bundle index ({statement.predicate_type})")
            return None
        malformed = index_shape_problems(predicate)
        if malformed:
            self.fail("index", "malformed index: " + "; ".join(malformed))
            return None
        self.root = str(version.get("root_digest", ""))
        self.uri = str(version.get("uri", ""))
        self.origin = str(registry.get("origin", ""))
        self.report.uri = self.uri
        self.report.release = predicate.get("release")
        self.report.exported_at = predicate.get("exported_at")
        exported_by = predicate.get("exported_by")
        self.report.exported_by = exported_by if isinstance(exported_by, str) else None
        self.model = str(version.get("model", ""))
        written = json.dumps(envelope.to_dict(), indent=2, sort_keys=True).encode() + b"\n"
        if written != raw or len(envelope.signatures) != 1:
            self.fail("index", "not byte for byte what the registry writes (changed?)")
        elif _dsse_signed_by(envelope, self.trust.registry):
            self.ok("index", f"signed by the registry key; {len(statement.subjects)} members")
        else:
            self.fail("index", "the index's signature does not verify with the registry key")
        listed = {}
        for subject in statement.subjects:
            listed[subject.name] = subject.digest_for("sha256")
        for name in self.order[1:]:
            expected = listed.pop(name, None)
            if expected is None:
                self.fail(f"member {name}", "not listed in the signed index (added)")
            elif _sha256(self.members[name]) != expected:
                self.fail(f"member {name}", "its bytes differ from the SHA-256 the index lists")
            else:
                self.intact.add(name)
        for name in listed:
            self.fail(f"member {name}", "listed in the signed index but missing (removed)")
        return predicate

    # -- the ledger --------------------------------------------------------------------------

    def check_checkpoint(self, predicate: Mapping[str, Any]) -> None:
        key = self.trust.ledger
        self.ledger = (
            key if isinstance(key, NoteVerifier) else NoteVerifier.from_public_key(self.origin, key)
        )
        named = predicate.get("checkpoint")
        name = str(named.get("name")) if isinstance(named, dict) else self.checkpoint_name
        self.checkpoint_name = name

        def check() -> str:
            assert self.ledger is not None
            note = self.member(name)
            try:
                self.checkpoint = open_checkpoint(note, self.ledger, self.origin)
            except ModelwardError as exc:
                raise _Fail(f"not this log's checkpoint: {exc}") from exc
            self.report.checkpoint = self.checkpoint
            return f"log {self.checkpoint.origin} at size {self.checkpoint.size}, signed by its key"

        if not self.run("checkpoint", check):
            return
        self.check_witnesses(name)

    def check_witnesses(self, name: str) -> None:
        if not self.trust.witnesses and not self.trust.witnesses_required:
            return
        tally = tally_cosignatures(parse_signed_note(self.members[name]), self.trust.witnesses)
        self.report.witnesses = tally
        detail = tally.summary()
        if tally.invalid:
            detail += "; " + "; ".join(tally.invalid)
        if len(tally.vouched) < self.trust.witnesses_required:
            self.fail("witnesses", f"{detail}; {self.trust.witnesses_required} required")
        else:
            self.ok("witnesses", detail)

    def check_events(self, described: Sequence[Mapping[str, Any]]) -> None:
        for entry in described:
            if entry.get("kind") != "ledger-event":
                continue
            seq = entry.get("seq")
            name = str(entry.get("name"))

            def check(seq: Any = seq, name: str = name) -> str:
                if self.checkpoint is None or self.ledger is None:
                    raise _Fail("no trusted checkpoint to prove it against")
                event = _json(self.member(name), name)
                if not isinstance(event, dict) or event.get("seq") != seq:
                    raise _Fail(f"{name} is not ledger event {seq}")
                details_json = canonical_json(event["details"]).decode("utf-8")
                if "sha256:" + _sha256(details_json) != event["details_digest"]:
                    raise _Fail("its details do not hash to the digest its leaf records")
                leaf = event_leaf_data(
                    int(event["seq"]),
                    str(event["recorded_at"]),
                    str(event["actor"]),
                    str(event["action"]),
                    str(event["subject"]),
                    str(event["details_digest"]),
                )
                proof_name = f"ledger/proofs/{int(seq):08d}.tlog-proof"
                try:
                    proof = parse_tlog_proof(self.member(proof_name))
                except ModelwardError as exc:
                    raise _Fail(f"its inclusion proof is unreadable: {exc}") from exc
                if proof.index != seq or proof.extra not in (None, leaf):
                    raise _Fail(f"its inclusion proof is for another entry (#{proof.index})")
                try:
                    under = verify_tlog_proof(proof, self.ledger, leaf_hash(leaf), self.origin)
                except ModelwardError as exc:
                    raise _Fail(f"its inclusion proof does not hold: {exc}") from exc
                if proof.index != seq:
                    raise _Fail(f"its inclusion proof is for another entry (#{proof.index})")
                if (under.size, under.root_hash) != (
                    self.checkpoint.size,
                    self.checkpoint.root_hash,
                ):
                    raise _Fail("its inclusion proof is under another checkpoint than the bundle's")
                self.events[int(seq)] = event
                return (
                    f"{event['action']} {event['subject']} by {event['actor']}, included under "
                    f"the checkpoint (size {self.checkpoint.size})"
                )

            self.run(f"ledger event #{seq}", check)

    checkpoint_name = "ledger/checkpoint.note"

    def check_consistency(self, described: Sequence[Mapping[str, Any]]) -> None:
        for entry in described:
            if entry.get("kind") != "consistency":
                continue
            name = str(entry.get("name"))

            def check(name: str = name) -> str:
                assert self.ledger is not None
                if self.checkpoint is None:
                    raise _Fail("no trusted checkpoint to lead to")
                try:
                    old, new = verify_consistency_proof(self.member(name), self.ledger, self.origin)
                except ModelwardError as exc:
                    raise _Fail(f"does not hold: {exc}") from exc
                if (new.size, new.root_hash) != (self.checkpoint.size, self.checkpoint.root_hash):
                    raise _Fail(
                        f"leads to a checkpoint of size {new.size}, not the bundle's "
                        f"(size {self.checkpoint.size})"
                    )
                return f"the checkpoint extends the published checkpoint of size {old.size}"

            self.run(f"consistency {name.rsplit('/', 1)[-1]}", check)

    def event(self, seq: Any, *actions: str) -> dict[str, Any]:
        if not isinstance(seq, int) or seq not in self.events:
            raise _Fail(f"its ledger event #{seq} is not proven in this bundle")
        event = self.events[seq]
        if actions and event["action"] not in actions:
            raise _Fail(f"ledger event #{seq} is a {event['action']!r}, not {' or '.join(actions)}")
        return event

    def anchored(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The row the entry describes, checked against the anchors of its proven event."""
        row = entry.get("row")
        if not isinstance(row, dict) or not isinstance(row.get("fields"), dict):
            raise _Fail("the index gives no row for it")
        event = self.event(entry.get("event"))
        digest = row_digest(str(row["table"]), str(row["key"]), row["fields"])
        for anchor in anchors_in(event["details"]):
            if (anchor.table, anchor.key) == (row["table"], row["key"]):
                if anchor.digest == digest:
                    return dict(row["fields"])
                raise _Fail(f"differs from the row its ledger event #{event['seq']} recorded")
        raise _Fail(f"its ledger event #{event['seq']} does not anchor it")

    # -- the evidence ------------------------------------------------------------------------

    def check_manifest(self, predicate: Mapping[str, Any]) -> None:
        from modelward.core.manifest import Manifest

        version = predicate["version"]

        def check() -> str:
            data = self.member("manifest.json")
            manifest = Manifest.from_dict(_json(data, "the manifest"))
            if manifest.root_digest != self.root:
                raise _Fail(f"its root digest is sha256:{manifest.root_digest}, not the index's")
            event = self.event(version.get("event"), "version.push")
            details = event["details"]
            if details.get("root_digest") != self.root or event["subject"] != self.uri:
                raise _Fail(f"the push event #{event['seq']} is about another version")
            if str(details.get("manifest_digest")).removeprefix("sha256:") != _sha256(data):
                raise _Fail(f"differs from the manifest the push event #{event['seq']} recorded")
            return (
                f"{self.uri}: {len(manifest.files)} files, root sha256:{self.root}, pushed by "
                f"{event['actor']} (event #{event['seq']})"
            )

        self.run("manifest", check)

    def check_attestations(self, described: Sequence[Mapping[str, Any]]) -> None:
        from modelward.core.attestation_record import AttestationRecord
        from modelward.services.attestation_verify import (
            AttestationVerifier,
            NamedKey,
            VerifiedAttestation,
        )

        verifier = AttestationVerifier(
            self.trust.registry,
            [NamedKey(n, v) for n, v in self.trust.uploaders],
            trust_hint="give the uploader's public key with --trust uploader=FILE",
        )
        model_ref = self.uri.removeprefix("models:/")
        kinds = []
        for entry in described:
            if entry.get("kind") != "attestation":
                continue
            kind = str(entry.get("attestation_kind"))
            kinds.append(kind)
            name = str(entry.get("name"))

            def check(entry: Mapping[str, Any] = entry, name: str = name, kind: str = kind) -> str:
                text = self.member(name).decode("utf-8")
                fields = self.anchored(entry)
                if fields.get("document") != "sha256:" + _sha256(text):
                    raise _Fail("differs from the attestation its ledger event anchored")
                if fields.get("version") != model_ref or fields.get("kind") != kind:
                    raise _Fail(f"its row is a {fields.get('kind')} of {fields.get('version')}")
                record = AttestationRecord(
                    int(entry["row"]["key"]),
                    0,
                    kind,
                    text,
                    str(fields.get("digest")),
                    str(fields.get("created_at")),
                    str(fields.get("created_by")),
                )
                result = verifier.check(record, self.root)
                if not isinstance(result, VerifiedAttestation):
                    raise _Fail(result.reason)
                if kind == "provenance":
                    self._provenance(result.statement)
                return f"signed by the {result.key_name} key ({result.key_id[:16]}…)"

            self.run(f"attestation {_row_key(entry)} ({kind})", check)
        if "registry-signature" not in kinds:
            self.fail("registry signature", "the bundle holds no registry signature (OMS)")

    def _provenance(self, statement: Statement) -> None:
        try:
            dependencies = statement.predicate["buildDefinition"]["resolvedDependencies"]
        except (KeyError, TypeError):
            return
        for dep in dependencies if isinstance(dependencies, list) else []:
            if isinstance(dep, dict) and dep.get("name") == "dataset":
                digest = dep.get("digest", {})
                self.provenance_datasets.append(
                    (str(dep.get("uri")), str(digest.get("sha256") if digest else ""))
                )

    def check_datasets(self, described: Sequence[Mapping[str, Any]]) -> None:
        from modelward.provenance.datasets import DatasetManifest

        for entry in described:
            if entry.get("kind") != "dataset-manifest":
                continue
            uri = str(entry.get("uri"))
            name = str(entry.get("name"))

            def check(entry: Mapping[str, Any] = entry, uri: str = uri, name: str = name) -> str:
                manifest = DatasetManifest.from_dict(_json(self.member(name), name))
                event = self.event(entry.get("event"), "dataset.add")
                if event["subject"] != uri or event["details"].get("manifest_digest") != (
                    manifest.digest
                ):
                    raise _Fail(f"is not the manifest its dataset.add event #{event['seq']} names")
                facts = {"consent": manifest.consent.value, "license": manifest.license}
                for seq in entry.get("governance_events", []):
                    change = self.event(seq, "dataset.governance")
                    details = change["details"]
                    if change["subject"] != uri or details.get("manifest_digest") != (
                        manifest.digest
                    ):
                        raise _Fail(f"governance event #{seq} is about another dataset")
                    facts[str(details.get("field"))] = details.get("value")
                self.dataset_digests[uri] = manifest.digest
                shown = ", ".join(f"{k} {v}" for k, v in sorted(facts.items()))
                return f"manifest sha256:{manifest.digest[:16]}…; {shown}"

            self.run(f"dataset {uri}", check)
        for uri, digest in self.provenance_datasets:
            if self.dataset_digests.get(uri) != digest:
                self.fail(
                    f"dataset {uri}",
                    "the provenance names it but the bundle holds no proven manifest with its "
                    "digest",
                )

    def check_approvals(
        self, described: Sequence[Mapping[str, Any]], unsigned: Sequence[Mapping[str, Any]]
    ) -> None:
        from modelward.services.approval_attestation import (
            approval_envelope_of,
            check_approval_statement,
        )

        for entry in described:
            if entry.get("kind") != "approval":
                continue
            name = str(entry.get("name"))

            def check(entry: Mapping[str, Any] = entry, name: str = name) -> str:
                data = self.member(name)
                statement = _registry_statement(data, self.trust.registry, "the approval")
                fields = self.anchored(entry)
                event = self.event(entry.get("event"), "approval.add")
                carried = approval_envelope_of(event["details"])
                if carried is None or canonical_json(carried) != canonical_json(_json(data, "")):
                    raise _Fail(f"is not the statement its ledger event #{event['seq']} carries")
                problems = check_approval_statement(
                    statement,
                    root_digest=self.root,
                    event_seq=event["seq"],
                    event_actor=event["actor"],
                    event_recorded_at=event["recorded_at"],
                    event_details=event["details"],
                    origin=self.origin,
                )
                if problems:
                    raise _Fail("; ".join(problems))
                if fields.get("reviewer") != event["actor"]:
                    raise _Fail("its row names another reviewer")
                self.approvals.append((str(fields.get("environment")), event["actor"]))
                reviewer = statement.predicate["reviewer"]
                how = (
                    f"authenticated by {reviewer.get('issuer')}"
                    if reviewer.get("authenticated")
                    else "embedded registry (unauthenticated)"
                )
                return (
                    f"{event['actor']} for {fields.get('environment')}"
                    f"{' with sign-off' if fields.get('sign_off') else ''}, {how}; signed by the "
                    "registry key"
                )

            self.run(f"approval {_row_key(entry)}", check)
        for entry in unsigned:
            key = _row_key(entry)

            def check_unsigned(entry: Mapping[str, Any] = entry) -> str:
                fields = self.anchored(entry)
                self.event(entry.get("event"), "approval.add")
                if not self.trust.allow_unsigned_approvals:
                    raise _Fail(
                        f"by {fields.get('reviewer')} for {fields.get('environment')} is unsigned "
                        "(made before approvals were signed); accept it on its ledger event "
                        "alone with --allow-unsigned-approvals"
                    )
                self.approvals.append((str(fields.get("environment")), str(fields["reviewer"])))
                return (
                    f"by {fields.get('reviewer')} for {fields.get('environment')}: UNSIGNED, "
                    f"accepted on its proven ledger event #{entry.get('event')}"
                )

            self.run(f"approval {key}", check_unsigned)

    def check_decisions(self, described: Sequence[Mapping[str, Any]]) -> None:
        from modelward.core.policy import facts_digest
        from modelward.policy.vsa import decision_from_statement

        for entry in described:
            if entry.get("kind") != "decision":
                continue
            name = str(entry.get("name"))

            def check(entry: Mapping[str, Any] = entry, name: str = name) -> str:
                data = self.member(name)
                statement = _registry_statement(data, self.trust.registry, "the VSA")
                if "sha256:" + self.root not in [
                    "sha256:" + str(s.digest_for("sha256")) for s in statement.subjects
                ]:
                    raise _Fail("the VSA is not about this version")
                decision = decision_from_statement(statement)
                fields = self.anchored(entry)
                facts_name = name.replace(".vsa.dsse.json", ".facts.json")
                facts_data = self.member(facts_name)
                facts = _json(facts_data, "the facts")
                if facts_digest(facts) != decision.facts_digest:
                    raise _Fail("its facts do not hash to the facts digest the VSA records")
                expected = {
                    "envelope": "sha256:" + _sha256(data),
                    "facts": "sha256:" + _sha256(facts_data),
                    "decision_digest": decision.digest(),
                    "allowed": decision.allowed,
                }
                for column, value in expected.items():
                    if fields.get(column) != value:
                        raise _Fail(f"its {column} differs from the row its ledger event anchored")
                event = self.event(entry.get("event"), "gate.decision", "gate.override")
                if event["details"].get("decision_digest") != decision.digest():
                    raise _Fail(f"its ledger event #{event['seq']} records another decision")
                environment = decision.environment
                if fields.get("environment") != environment:
                    raise _Fail("its row names another environment than its VSA")
                model, _, number = str(fields.get("version")).rpartition("/")
                self.decisions[decision.digest()] = DecisionSummary(
                    model=model,
                    version=int(number) if number.isdigit() else 0,
                    environment=environment,
                    allowed=decision.allowed,
                    override=None if decision.override is None else decision.override.to_dict(),
                )
                approvals = facts.get("approvals", []) if isinstance(facts, dict) else []
                self.decision_approvals[decision.digest()] = (
                    environment,
                    [
                        str(a.get("reviewer"))
                        for a in (approvals if isinstance(approvals, list) else [])
                        if isinstance(a, dict)
                    ],
                )
                verdict = "allow" if decision.allowed else "deny"
                if decision.override is not None:
                    verdict += (
                        f" by OVERRIDE of {decision.override.actor} "
                        f"({decision.override.justification!r})"
                    )
                elif not decision.allowed:
                    verdict += " (" + ", ".join(decision.failed) + ")"
                return f"{environment}: {verdict}; VSA signed by the registry key"

            self.run(f"decision {_row_key(entry)}", check)

    def check_releases(self, described: Sequence[Mapping[str, Any]]) -> None:
        from modelward.core.release_authority import release_authority_problem

        checked: list[tuple[Mapping[str, Any], Release | str]] = []
        proven = self.proven_releases
        for entry in described:
            if entry.get("kind") != "release":
                continue

            def proven_release(entry: Mapping[str, Any] = entry) -> Release:
                data = self.member(str(entry.get("name")))
                release = Release.from_dict(_json(data, "the release"))
                fields = self.anchored(entry)
                if fields.get("record") != "sha256:" + _sha256(data):
                    raise _Fail("differs from the release record its ledger event anchored")
                if release.bundle_digest != "sha256:" + self.root:
                    raise _Fail(f"deploys {release.bundle_digest}, not this version")
                if fields.get("release_id") != release.release_id:
                    raise _Fail("its row is another release")
                event = self.event(entry.get("event"), "release.create", "release.rollback")
                if event["details"].get("state_digest") != release.state_digest():
                    raise _Fail(f"its ledger event #{event['seq']} records another state")
                if (event["action"] == "release.rollback") != (fields.get("kind") == "rollback"):
                    raise _Fail(f"its ledger event #{event['seq']} records another kind of release")
                return release

            outcome: Release | str
            try:
                outcome = proven_release()
                proven[outcome.release_id] = outcome
            except _Fail as exc:
                outcome = str(exc)
            except (ModelwardError, ValueError, TypeError, KeyError, AttributeError) as exc:
                outcome = f"unreadable: {exc}"
            checked.append((entry, outcome))
        for entry, outcome in checked:

            def check(outcome: Release | str = outcome) -> str:
                if isinstance(outcome, str):
                    raise _Fail(outcome)
                release = outcome
                problem = release_authority_problem(
                    release, self.decisions, proven, "the bundle does not prove"
                )
                if problem is not None:
                    raise _Fail(problem)
                how = ""
                if release.decision_digest is not None:
                    self._approvals_counted(self.decision_approvals[release.decision_digest])
                    how = f" under decision {release.decision_digest[:19]}…"
                else:
                    how = f", a rollback to {release.restores_release_id}"
                if release.override is not None:
                    how += f", OVERRIDE by {release.override.actor}"
                return (
                    f"{release.release_id}: {release.environment} runs version "
                    f"{release.version}{how}"
                )

            self.run(f"release {_row_key(entry)}", check)
        wanted = self.report.release
        if wanted is not None and wanted not in proven:
            self.fail(f"release {wanted}", "the bundle is of this release but holds no proof of it")

    def check_expected(self, expect: EvidenceExpectation) -> None:
        def check() -> str:
            if expect.model is not None and self.model != expect.model:
                raise _Fail(f"the bundle is of model {self.model}, not {expect.model}")
            if expect.uri is not None:
                ours = ("sha256:" + self.root) if expect.uri.startswith("sha256:") else self.uri
                if ours != expect.uri:
                    raise _Fail(f"the bundle is of {ours}, not {expect.uri}")
            what = self.uri
            if expect.environment is not None:
                wanted = self.report.release
                if wanted is None:
                    raise _Fail(
                        f"the bundle is of {self.uri}, not the evidence of a release (export it "
                        "with --release ENV --model NAME)"
                    )
                release = self.proven_releases.get(wanted)
                if release is None:
                    raise _Fail(f"the bundle holds no proof of its release {wanted}")
                if release.environment != expect.environment:
                    raise _Fail(
                        f"the bundle is of release {wanted} in {release.environment}, not "
                        f"{expect.environment}"
                    )
                what = f"release {wanted} of {self.uri} in {release.environment}"
            return f"the bundle is the evidence of {what}, as expected"

        self.run("expected", check)

    def _approvals_counted(self, decided: tuple[str, list[str]]) -> None:
        environment, reviewers = decided
        for reviewer in reviewers:
            if (environment, reviewer) not in self.approvals:
                raise _Fail(
                    f"its decision counted an approval by {reviewer} for {environment} that the "
                    "bundle does not prove"
                )


def _row_key(entry: Mapping[str, Any]) -> str:
    """The row key an index entry names, for naming its link (`?` when it names none)."""
    row = entry.get("row")
    key = row.get("key") if isinstance(row, dict) else None
    return str(key) if isinstance(key, (str, int)) and not isinstance(key, bool) else "?"


def _entries(predicate: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = predicate.get(key)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def verify_evidence_bundle(
    data: bytes, trust: EvidenceTrust, expect: EvidenceExpectation | None = None
) -> EvidenceReport:
    """Check every link of an evidence bundle offline; see the module docstring. With `expect`,
    the bundle must also be about that model, version or release (the `expected` link)."""
    archive = read_archive(data)
    run = _Verification(archive.members, trust)
    predicate = run.index()
    if predicate is None:
        if expect is not None and expect.given:
            run.fail("expected", "the index cannot be read, so what the bundle is about is unknown")
        return run.report
    if archive.canonical:
        run.ok("archive", f"canonical ustar, {len(archive.members)} members")
    else:
        run.fail("archive", "not in canonical form: a header, padding or trailer byte was changed")
    described = _entries(predicate, "members")
    run.check_checkpoint(predicate)
    run.check_events(described)
    run.check_consistency(described)
    run.check_manifest(predicate)
    run.check_attestations(described)
    run.check_datasets(described)
    unsigned = _entries(predicate, "unsigned_approvals")
    run.check_approvals(described, unsigned)
    run.check_decisions(described)
    run.check_releases(described)
    for omitted in _entries(predicate, "omitted"):
        if omitted:
            run.fail(
                str(omitted.get("what")),
                f"left out at export, the registry could not vouch for it: {omitted.get('reason')}",
            )
    for name in run.order:
        if name in run.intact and name not in run.used:
            run.fail(f"member {name}", "no link of the bundle checks it (unknown member)")
    if expect is not None and expect.given:
        run.check_expected(expect)
    return run.report
