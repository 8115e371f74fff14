"""`evidence export`: one self-contained file holding every piece of evidence about a version
(or the release deploying it), for checking offline with only public keys (`evidence_verify`).

What goes in (docs/evidence.md has the layout): the version's manifest; every attestation of the
version that `AttestationVerifier` accepts (the registry's and uploader's OMS signatures as
Sigstore bundles, scan, change, provenance, evaluations, …); the manifests of the datasets its
provenance names; its approvals (signed approval statements); every gate decision (VSA) with its
facts, overrides included; the releases deploying it; every ledger event that records one of
those (dataset additions and governance changes too) with its RFC 9162 inclusion proof under one
signed checkpoint (the most-cosigned stored checkpoint that covers them, else a fresh one); and
consistency proofs from the most recent older published checkpoints to it.

Each anchored row is checked before it is exported (`state_integrity`, `AttestationVerifier`,
the keeper's seal check); what fails is left out and named in the index's `omitted` list, which
`evidence verify` reports as failures. The index (`index.dsse.json`, the first member) is an
in-toto statement signed with the registry key whose subjects are every other member with its
SHA-256, and whose predicate describes each member. Knows nothing of argument parsing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.canonical import canonical_json
from modelward.core.checkpoint import open_checkpoint, parse_signed_note
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.evidence_archive import write_archive
from modelward.core.intoto import Statement, Subject
from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import InputError, ModelwardError, NotFoundError
from modelward.services.approval_attestation import approval_envelope_of
from modelward.services.attestation_verify import OMS_KINDS, AttestationVerifier
from modelward.services.audit import AuditService
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import load_gate_config
from modelward.services.ledger_keeper import CHECKPOINT_AREA, published_checkpoints
from modelward.services.registry import resolve_in
from modelward.services.state_integrity import row_problem, trusted_approval_keys
from modelward.services.users import require
from modelward.signing.keys import Verifier
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import LedgerEvent, LedgerRepository, format_time
from modelward.storage.metadata.provenance_repository import ProvenanceRepository
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord
from modelward.storage.metadata.state_repository import StateRepository, StateRow

BUNDLE_PREDICATE_TYPE = "https://modelward.dev/evidence-bundle/v1"
BUNDLE_FORMAT = 1
INDEX_NAME = "index.dsse.json"
MANIFEST_NAME = "manifest.json"
CHECKPOINT_NAME = "ledger/checkpoint.note"
MAX_OLDER_CHECKPOINTS = 32
MEDIA_TYPE = "application/vnd.modelward.evidence.v1+tar"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ExportedBundle:
    """An exported evidence bundle: its bytes and what it holds."""

    data: bytes
    uri: str
    release_id: str | None
    members: int
    events: int
    checkpoint_size: int
    omitted: tuple[str, ...]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "release": self.release_id,
            "members": self.members,
            "ledger_events": self.events,
            "checkpoint_size": self.checkpoint_size,
            "omitted": list(self.omitted),
            "bytes": len(self.data),
            "digest": self.digest,
            "media_type": MEDIA_TYPE,
        }


@dataclass
class _Collected:
    members: list[tuple[str, bytes]] = field(default_factory=list)
    described: list[dict[str, Any]] = field(default_factory=list)
    omitted: list[dict[str, Any]] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    unsigned_approvals: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, content: bytes, description: dict[str, Any]) -> None:
        self.members.append((name, content))
        self.described.append({"name": name, **description})
        event = description.get("event")
        if isinstance(event, int):
            self.seqs.add(event)

    def omit(self, what: str, reason: str) -> None:
        self.omitted.append({"what": what, "reason": reason})


def _row(row: StateRow) -> dict[str, Any]:
    return {"table": row.table, "key": row.key, "fields": row.fields}


def _json_bytes(value: Any) -> bytes:
    return canonical_json(value)


def export_bundle(
    context: RegistryContext,
    uri: str | None = None,
    *,
    model: str | None = None,
    environment: str | None = None,
    actor: str | None = None,
) -> bytes:
    """The evidence bundle of version `uri`, or of the current release of `model` in
    `environment`, as bytes (a canonical ustar archive, media type `MEDIA_TYPE`)."""
    service = EvidenceBundleService(context, actor)
    return service.export(uri, model=model, environment=environment).data


class EvidenceBundleService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def export(
        self, uri: str | None = None, *, model: str | None = None, environment: str | None = None
    ) -> ExportedBundle:
        if (uri is None) == (model is None or environment is None):
            raise InputError("give a version URI, or a model and an environment (--release)")
        audit = AuditService.for_registry(self.ctx)
        got = _Collected()
        release_id: str | None = None
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = RegistryRepository(conn)
            if uri is not None:
                record = resolve_in(repo, parse_uri(uri))
            else:
                assert model is not None and environment is not None
                load_gate_config(self.ctx).path.index(environment)
                current = GateRepository(conn).current_release(model, environment)
                if current is None:
                    raise NotFoundError(f"models:/{model} has no release in {environment}")
                release_id = current.release.release_id
                record = repo.version(model, current.release.version)
            self._version(conn, record, got)
            self._attestations(conn, record, got)
            self._approvals(conn, record, got)
            self._decisions(conn, record, got)
            self._releases(conn, record, got)
            events = self._events(conn, got)
        note = self._anchor_checkpoint(audit, max(got.seqs) + 1 if got.seqs else 1)
        anchor = open_checkpoint(note, audit.verifier)
        for seq, proof in zip(
            sorted(events), audit.inclusion_proofs(sorted(events), note), strict=True
        ):
            got.add(f"ledger/proofs/{seq:08d}.tlog-proof", proof.encode("utf-8"), _proof(seq))
        got.add(CHECKPOINT_NAME, note.encode("utf-8"), {"kind": "checkpoint"})
        older = self._consistency(audit, note, anchor.size, got)
        index = self._index(record, release_id, got, anchor.size, older)
        data = write_archive([(INDEX_NAME, index), *got.members])
        return ExportedBundle(
            data=data,
            uri=record.uri,
            release_id=release_id,
            members=len(got.members) + 1,
            events=len(events),
            checkpoint_size=anchor.size,
            omitted=tuple(f"{o['what']}: {o['reason']}" for o in got.omitted),
        )

    # -- the pieces -------------------------------------------------------------------------

    def _version(self, conn: Connection, record: VersionRecord, got: _Collected) -> None:
        got.add(
            MANIFEST_NAME,
            record.manifest_json.encode("utf-8"),
            {"kind": "manifest", "event": record.ledger_seq},
        )

    def _attestations(self, conn: Connection, record: VersionRecord, got: _Collected) -> None:
        repo = RegistryRepository(conn)
        state = StateRepository(conn)
        verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
        for setting_problem in verifier.setting_problems:
            got.omit("uploader signatures", setting_problem)
        checked = verifier.check_all(repo.attestations(record.id), record.root_digest)
        for bad in checked.problems:
            got.omit(f"attestation {bad.record.id} ({bad.kind})", bad.reason)
        dataset_uris: list[str] = []
        for item in checked.verified:
            row = state.row("attestations", str(item.record.id))
            problem: str | None = "it has no row" if row is None else row_problem(conn, row)
            if problem is not None or row is None:
                got.omit(f"attestation {item.record.id} ({item.kind})", str(problem))
                continue
            suffix = "sigstore.json" if item.kind in OMS_KINDS else "dsse.json"
            name = f"attestations/{item.record.id:04d}-{_UNSAFE.sub('_', item.kind)}.{suffix}"
            got.add(
                name,
                item.record.document.encode("utf-8"),
                {
                    "kind": "attestation",
                    "attestation_kind": item.kind,
                    "key_name": item.key_name,
                    "row": _row(row),
                    "event": row.ledger_seq,
                },
            )
            if item.kind == "provenance":
                dataset_uris += _provenance_datasets(item.statement.predicate)
        self._datasets(conn, dataset_uris, got)

    def _datasets(self, conn: Connection, uris: Iterable[str], got: _Collected) -> None:
        repo = ProvenanceRepository(conn)
        keeper_events = LedgerRepository(conn)
        for uri in dict.fromkeys(uris):
            try:
                name, _, number = uri.removeprefix("datasets:/").rpartition("/")
                record = repo.dataset_version(name, int(number))
            except (ModelwardError, ValueError) as exc:
                got.omit(f"dataset {uri}", f"not in the registry: {exc}")
                continue
            governance = [g.ledger_seq for g in repo.governance(record.id)]
            for seq in (record.ledger_seq, *governance):
                keeper_events.event(seq)  # NotFoundError for a missing event
                got.seqs.add(seq)
            got.add(
                f"datasets/{_UNSAFE.sub('_', record.name)}-{record.number}.manifest.json",
                record.manifest_json.encode("utf-8"),
                {
                    "kind": "dataset-manifest",
                    "uri": record.uri,
                    "event": record.ledger_seq,
                    "governance_events": governance,
                },
            )

    def _approvals(self, conn: Connection, record: VersionRecord, got: _Collected) -> None:
        state = StateRepository(conn)
        ledger = LedgerRepository(conn)
        good, problems = trusted_approval_keys(conn, record.id)
        for problem in problems:
            got.omit("approval", problem)
        for key in state.approval_keys(record.id):
            if key not in good:
                continue
            row = state.row("gate_approvals", key)
            assert row is not None and row.ledger_seq is not None
            event = ledger.event(row.ledger_seq)
            envelope = approval_envelope_of(event.details)
            description = {"kind": "approval", "row": _row(row), "event": row.ledger_seq}
            if envelope is None:
                got.seqs.add(row.ledger_seq)
                got.unsigned_approvals.append(description)
                continue
            got.add(f"approvals/{int(key):04d}.dsse.json", _json_bytes(envelope), description)

    def _decisions(self, conn: Connection, record: VersionRecord, got: _Collected) -> None:
        state = StateRepository(conn)
        for decision in GateRepository(conn).decisions(record.id):
            key = str(decision.id)
            row = state.row("gate_decisions", key)
            found: str | None = "it has no row" if row is None else row_problem(conn, row)
            if found is not None or row is None:
                got.omit(f"decision {key}", str(found))
                continue
            description = {"kind": "decision", "row": _row(row), "event": row.ledger_seq}
            got.add(
                f"decisions/{decision.id:04d}.vsa.dsse.json",
                decision.envelope.encode("utf-8"),
                description,
            )
            got.add(
                f"decisions/{decision.id:04d}.facts.json",
                decision.facts.encode("utf-8"),
                {"kind": "facts", "decision": key},
            )

    def _releases(self, conn: Connection, record: VersionRecord, got: _Collected) -> None:
        state = StateRepository(conn)
        gate = GateRepository(conn)
        for environment in load_gate_config(self.ctx).path.environments:
            for key in state.release_keys(record.model, environment):
                row = state.row("gate_releases", key)
                if row is None or row.fields.get("version") != f"{record.model}/{record.number}":
                    continue
                problem = row_problem(conn, row)
                stored = gate.release_by_id(key)
                if problem is not None or stored is None:
                    got.omit(f"release {key}", str(problem or "it cannot be read"))
                    continue
                text = canonical_json(stored.release.to_dict())
                got.add(
                    f"releases/{_UNSAFE.sub('_', key)}.json",
                    text,
                    {"kind": "release", "row": _row(row), "event": row.ledger_seq},
                )

    def _events(self, conn: Connection, got: _Collected) -> dict[int, LedgerEvent]:
        ledger = LedgerRepository(conn)
        keeper = self.ctx.keeper
        events: dict[int, LedgerEvent] = {}
        for seq in sorted(got.seqs):
            event = ledger.event(seq)
            problem = (
                "the ledger key is not available to check its seal"
                if keeper is None
                else keeper.event_problem(event)
            )
            if problem is not None:
                got.omit(f"ledger event {seq}", problem)
            events[seq] = event
            got.add(
                f"ledger/events/{seq:08d}.json",
                _json_bytes(_event_document(event)),
                {"kind": "ledger-event", "seq": seq},
            )
        return events

    # -- the ledger's proofs ----------------------------------------------------------------

    def _anchor_checkpoint(self, audit: AuditService, needed: int) -> str:
        """The stored checkpoint with the most cosignatures that covers `needed` events (the
        largest such), else a fresh one."""
        best: tuple[int, int, str] | None = None
        with self.ctx.database.read() as conn:
            for stored in LedgerRepository(conn).checkpoints():
                if stored.size < needed:
                    continue
                signatures = len(parse_signed_note(stored.note).signatures)
                if signatures < 2:
                    continue
                try:
                    open_checkpoint(stored.note, audit.verifier)
                except ModelwardError:
                    continue
                candidate = (signatures, stored.size, stored.note)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
        return best[2] if best is not None else audit.checkpoint()

    def _consistency(
        self, audit: AuditService, note: str, size: int, got: _Collected
    ) -> list[dict[str, Any]]:
        if self.ctx.blobs is None:
            return []
        try:
            published = published_checkpoints(self.ctx.blobs)
        except ModelwardError as exc:
            got.omit("published checkpoints", str(exc))
            return []
        older = [(s, n) for s, n in published if 0 < s < size][-MAX_OLDER_CHECKPOINTS:]
        listed = []
        for old_size, name in older:
            try:
                old_note = self.ctx.blobs.get_named(CHECKPOINT_AREA, name).decode("utf-8")
                text = audit.consistency(old_note, note)
            except (ModelwardError, UnicodeDecodeError) as exc:
                got.omit(f"published checkpoint {name}", str(exc))
                continue
            member = f"ledger/consistency/{old_size:016d}.consistency"
            got.add(member, text.encode("utf-8"), {"kind": "consistency", "old_size": old_size})
            listed.append({"name": member, "published_as": f"{CHECKPOINT_AREA}/{name}"})
        return listed

    # -- the index --------------------------------------------------------------------------

    def _index(
        self,
        record: VersionRecord,
        release_id: str | None,
        got: _Collected,
        checkpoint_size: int,
        older: list[dict[str, Any]],
    ) -> bytes:
        predicate = {
            "format": BUNDLE_FORMAT,
            "exported_at": format_time(utc_now()),
            "exported_by": self.actor,
            "registry": {"key_id": self.ctx.signer.keyid, "origin": self.ctx.origin},
            "version": {
                "uri": record.uri,
                "model": record.model,
                "number": record.number,
                "root_digest": record.root_digest,
                "created_by": record.created_by,
                "event": record.ledger_seq,
            },
            "release": release_id,
            "checkpoint": {"name": CHECKPOINT_NAME, "size": checkpoint_size},
            "older_checkpoints": older,
            "members": got.described,
            "unsigned_approvals": got.unsigned_approvals,
            "omitted": got.omitted,
        }
        statement = Statement(
            subjects=tuple(
                Subject.of(name, sha256=hashlib.sha256(content).hexdigest())
                for name, content in got.members
            ),
            predicate_type=BUNDLE_PREDICATE_TYPE,
            predicate=predicate,
        )
        envelope = Envelope.sign(
            IN_TOTO_PAYLOAD_TYPE, statement.to_bytes(), self.ctx.signer.sign, self.ctx.signer.keyid
        )
        return json.dumps(envelope.to_dict(), indent=2, sort_keys=True).encode("utf-8") + b"\n"


def _proof(seq: int) -> dict[str, Any]:
    return {"kind": "inclusion-proof", "seq": seq}


def _event_document(event: LedgerEvent) -> dict[str, Any]:
    """A ledger event as exported: its fields and details (the seal is an HMAC only the
    registry can check; the inclusion proof stands in for it)."""
    data = event.to_dict()
    data.pop("seal", None)
    data.pop("leaf_hash", None)
    return data


def _provenance_datasets(predicate: Any) -> list[str]:
    try:
        dependencies = predicate["buildDefinition"]["resolvedDependencies"]
    except (KeyError, TypeError):
        return []
    if not isinstance(dependencies, list):
        return []
    return [
        str(d["uri"])
        for d in dependencies
        if isinstance(d, dict) and d.get("name") == "dataset" and isinstance(d.get("uri"), str)
    ]
