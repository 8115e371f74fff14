"""Training provenance in the registry: the push-time provenance check, completeness facts for the
gate, lineage trees, and recording (signing) a training run from the command line.

`PushProvenance` is the `provenance=` hook of `RegistryService.push`: before anything is stored
it verifies the DSSE signature against the trusted keys, that the statement is about the bundle
being pushed and that every dataset it names exists with the same manifest digest; inside the
push's transaction it stores the envelope as a `provenance` attestation, links the version to its
datasets and base model and writes the ledger event. Knows nothing of argument parsing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement
from modelward.core.manifest import Manifest, Serialization
from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import (
    DeniedError,
    InputError,
    ModelwardError,
    NotFoundError,
    PathError,
)
from modelward.provenance._attestations import parse_envelope
from modelward.provenance.lineage import LineageNode, VersionLineage, upstream
from modelward.provenance.run_capture import track_run
from modelward.provenance.slsa import (
    COMPLETENESS_FIELDS,
    BaseModel,
    DatasetUse,
    TrainingRun,
    completeness,
    training_run_of,
    verify_provenance,
)
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.datasets import (
    ineligible_datasets,
    lineage_records,
    parse_dataset_uri,
)
from modelward.services.state_integrity import anchored_append
from modelward.services.users import require
from modelward.signing.keys import Signer, Verifier, load_private_key, load_public_key
from modelward.storage.metadata.provenance_repository import ProvenanceRepository
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord
from modelward.storage.model_files import ModelFile, hash_files

PROVENANCE_KIND = "provenance"
MAX_PROVENANCE_BYTES = 16 * 1024 * 1024


def trusted_keys(home: Path, extra: Sequence[Verifier] = ()) -> list[Verifier]:
    """The keys provenance may be signed with: `extra` and `$MODELWARD_HOME/trusted_keys/*.pub`."""
    keys = list(extra)
    folder = home / "trusted_keys"
    if folder.is_dir():
        keys += [Verifier(load_public_key(p)) for p in sorted(folder.glob("*.pub"))]
    return keys


def read_provenance_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_PROVENANCE_BYTES:
            raise InputError(f"{path}: the provenance file is larger than 16 MiB")
        return path.read_bytes()
    except OSError as exc:
        raise PathError(f"{path}: cannot read provenance: {exc.strerror or exc}") from exc


class PushProvenance:
    """The provenance check and storage of one push (see the module docstring)."""

    def __init__(self, ctx: RegistryContext, document: bytes, trusted: Sequence[Verifier]) -> None:
        self.ctx = ctx
        self.document = document
        self.trusted = list(trusted)
        self.root_digest: str | None = None
        self.statement: Statement | None = None
        self.run: TrainingRun | None = None
        self.signer_key = ""

    def before_store(self, model_path: Path, files: list[ModelFile]) -> None:
        """Verify everything that can be verified before any blob is stored."""
        envelope = parse_envelope(self.document)
        digests = hash_files(files)
        root = Manifest(model_name="bundle", files=tuple(digests), serialization=Serialization())
        self.root_digest = root.root_digest
        self.statement = verify_provenance(envelope, self.trusted, self.root_digest)
        self.run = training_run_of(self.statement)
        self.signer_key = _signer_of(envelope, self.trusted)
        with self.ctx.database.read() as conn:
            self._check_references(conn)

    def _check_references(self, conn: Connection) -> list[int]:
        assert self.run is not None
        repo = ProvenanceRepository(conn)
        found = []
        for use in self.run.datasets:
            name, number = parse_dataset_uri(use.uri)
            try:
                record = repo.dataset_version(name, number)
            except NotFoundError as exc:
                raise NotFoundError(
                    f"provenance names {use.uri}, which is not in the registry: {exc}"
                ) from exc
            if record.manifest_digest != use.digest:
                raise InputError(
                    f"provenance names {use.uri} with manifest sha256:{use.digest}, "
                    f"the registry's is sha256:{record.manifest_digest}"
                )
            found.append(record.id)
        base = self.run.base_model
        if base is not None and base.uri and base.uri.startswith("models:/"):
            from modelward.services.registry import resolve_in

            version = resolve_in(RegistryRepository(conn), parse_uri(base.uri))
            if version.root_digest != base.digest:
                raise InputError(
                    f"provenance names base model {base.uri} with sha256:{base.digest}, "
                    f"the registry's is sha256:{version.root_digest}"
                )
        return found

    def store(
        self,
        conn: Connection,
        repo: RegistryRepository,
        version_id: int,
        manifest: Manifest,
        now: str,
        actor: str,
    ) -> None:
        """Inside the push's transaction: attestation, links and ledger event."""
        assert self.run is not None and self.root_digest is not None
        require(conn, actor, Action.ATTACH_PROVENANCE)
        if manifest.root_digest != self.root_digest:
            raise InputError("the bundle changed while it was being pushed")
        dataset_ids = self._check_references(conn)
        envelope = parse_envelope(self.document)
        document = json.dumps(envelope.to_dict(), sort_keys=True)
        digest = hashlib.sha256(document.encode("utf-8")).hexdigest()
        attestation_id = repo.add_attestation(
            version_id, PROVENANCE_KIND, document, digest, now, actor
        )
        base = self.run.base_model.reference if self.run.base_model else None
        ProvenanceRepository(conn).link_provenance(
            version_id, digest, base, self.signer_key, dataset_ids
        )
        record = repo.version_by_id(version_id)
        anchored_append(
            conn,
            actor,
            "provenance.attach",
            record.uri,
            {
                "model": record.model,
                "version": record.number,
                "root_digest": record.root_digest,
                "attestation_digest": digest,
                "signer_key": self.signer_key,
                "datasets": [d.uri for d in self.run.datasets],
                "base_model": base,
                "invocation_id": self.run.invocation_id,
            },
            utc_now(),
            rows=[("attestations", str(attestation_id))],
        )


def _signer_of(envelope: Envelope, trusted: Sequence[Verifier]) -> str:
    message = envelope.pae()
    for signature in envelope.signatures:
        for verifier in trusted:
            if verifier.is_valid(signature.sig, message):
                return verifier.keyid
    return ""


def provenance_facts_in(conn: Connection, record: VersionRecord) -> dict[str, Any]:
    """What the gate needs to know about a version's training provenance (never raises for a
    missing or unreadable statement: those are facts too)."""
    registry = RegistryRepository(conn)
    link = ProvenanceRepository(conn).version_provenance(record.id)
    stored = registry.attestations(record.id, PROVENANCE_KIND)
    empty = dict.fromkeys(COMPLETENESS_FIELDS, False)
    facts: dict[str, Any] = {
        "present": False,
        "signer_key": None,
        "fields": empty,
        "missing": list(COMPLETENESS_FIELDS),
        "complete": False,
        "datasets": [],
        "ineligible_datasets": {},
        "datasets_eligible": True,
        "base_model": None,
    }
    if not stored or link is None:
        return facts
    try:
        statement = Statement.from_bytes(parse_envelope(stored[0].document).payload)
    except ModelwardError as exc:
        return {**facts, "present": True, "error": str(exc)}
    fields = completeness(statement)
    ineligible = ineligible_datasets(conn, link.datasets)
    return {
        **facts,
        "present": True,
        "signer_key": link.signer_key,
        "fields": fields,
        "missing": [name for name in COMPLETENESS_FIELDS if not fields[name]],
        "complete": all(fields.values()),
        "datasets": list(link.datasets),
        "ineligible_datasets": ineligible,
        "datasets_eligible": not ineligible,
        "base_model": link.base_model,
        "attestation_digest": link.attestation_digest,
    }


def training_run_in(conn: Connection, version_id: int) -> TrainingRun | None:
    stored = RegistryRepository(conn).attestations(version_id, PROVENANCE_KIND)
    if not stored:
        return None
    try:
        return training_run_of(Statement.from_bytes(parse_envelope(stored[0].document).payload))
    except ModelwardError:
        return None


class ProvenanceService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def provenance_facts(self, version: VersionRecord | str) -> dict[str, Any]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            if isinstance(version, str):
                from modelward.services.registry import resolve_in

                version = resolve_in(RegistryRepository(conn), parse_uri(version))
            return provenance_facts_in(conn, version)

    def push_hook(
        self, provenance_path: Path, extra_keys: Sequence[Verifier] = ()
    ) -> PushProvenance:
        trusted = trusted_keys(self.ctx.home, extra_keys)
        return PushProvenance(self.ctx, read_provenance_file(provenance_path), trusted)

    # -- lineage ----------------------------------------------------------------------------

    def lineage(self, uri: str, downstream: bool = False) -> dict[str, Any]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            versions = lineage_records(conn)
            if uri.startswith("datasets:/"):
                from modelward.provenance.lineage import downstream_of_dataset

                name, number = parse_dataset_uri(uri)
                ProvenanceRepository(conn).dataset_version(name, number)
                found = downstream_of_dataset(uri, versions)
                return {"uri": uri, "downstream": [v.to_dict() for v in found]}
            from modelward.services.registry import resolve_in

            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            if downstream:
                found = _downstream_of_version(record.uri, versions)
                return {"uri": record.uri, "downstream": [v.to_dict() for v in found]}
            runs = {
                v.id: training_run_in(conn, v.id) for v in RegistryRepository(conn).all_versions()
            }
            uris = {v.uri: v.id for v in RegistryRepository(conn).all_versions()}
        tree = _with_training_runs(upstream(record.uri, versions), runs, uris)
        return {"uri": record.uri, "tree": tree.to_dict(), "lines": tree.lines()}

    # -- recording a run --------------------------------------------------------------------

    def resolve_inputs(
        self, datasets: Sequence[str], base_model: str | None
    ) -> tuple[list[DatasetUse], BaseModel | None]:
        with self.ctx.database.read() as conn:
            repo = ProvenanceRepository(conn)
            uses = []
            for uri in datasets:
                name, number = parse_dataset_uri(uri)
                record = repo.dataset_version(name, number)
                uses.append(DatasetUse(uri=record.uri, digest=record.manifest_digest))
            base = None
            if base_model is not None and not base_model.startswith("sha256:"):
                from modelward.services.registry import resolve_in

                version = resolve_in(RegistryRepository(conn), parse_uri(base_model))
                base = BaseModel(digest=version.root_digest, uri=version.uri)
        if base_model is not None and base is None:
            base = BaseModel(digest=parse_uri(base_model).digest or "")
        return uses, base


def _downstream_of_version(uri: str, versions: list[VersionLineage]) -> list[VersionLineage]:
    by_uri = {v.uri: v for v in versions}
    by_digest = {v.root_digest: v for v in versions}
    found: dict[str, VersionLineage] = {}
    pending = [uri]
    while pending:
        current = pending.pop()
        for version in versions:
            base = version.base_model
            if base is None or version.uri in found:
                continue
            target = by_digest.get(base[7:]) if base.startswith("sha256:") else by_uri.get(base)
            if target is not None and target.uri == current:
                found[version.uri] = version
                pending.append(version.uri)
    return [found[k] for k in sorted(found)]


def _with_training_runs(
    node: LineageNode, runs: dict[int, TrainingRun | None], ids: dict[str, int]
) -> LineageNode:
    """Group each version's datasets and base model under the training run that used them."""
    children = [_with_training_runs(c, runs, ids) for c in node.children]
    run = runs.get(ids.get(node.ref, -1)) if node.kind == "version" else None
    if run is None:
        return LineageNode(node.kind, node.ref, tuple(children))
    aliases = [c for c in children if c.kind == "alias"]
    inputs = [c for c in children if c.kind != "alias"]
    label = f"{run.invocation_id} ({run.builder_id}, finished {run.finished_on.isoformat()})"
    return LineageNode(
        node.kind, node.ref, (*aliases, LineageNode("training-run", label, tuple(inputs)))
    )


@dataclass(frozen=True)
class RecordedRun:
    path: Path
    root_digest: str
    completeness: dict[str, bool]


def record_run(
    *,
    output: Path,
    key: Path,
    out: Path | None,
    command: Sequence[str],
    datasets: Sequence[DatasetUse],
    base_model: BaseModel | None,
    hyperparameters: dict[str, Any],
    seeds: dict[str, int],
    timeout: float | None = None,
) -> RecordedRun:
    """Run the training command (if any) under `track_run` and write its signed provenance."""
    signer = Signer(load_private_key(key))
    with track_run(
        output=output,
        signer=signer,
        statement_path=out,
        hyperparameters=hyperparameters,
        seeds=seeds,
        datasets=datasets,
        base_model=base_model,
        command=list(command),
    ) as recorder:
        if command:
            try:
                completed = subprocess.run(list(command), check=False, timeout=timeout)
            except OSError as exc:
                raise InputError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from exc
            except subprocess.TimeoutExpired as exc:
                raise DeniedError(f"the training command ran longer than {timeout} s") from exc
            if completed.returncode != 0:
                raise DeniedError(
                    f"the training command exited with {completed.returncode}; "
                    "no provenance was written"
                )
    assert recorder.written_to is not None and recorder.statement is not None
    return RecordedRun(
        path=recorder.written_to,
        root_digest=recorder.statement.subjects[0].digest_for("sha256") or "",
        completeness=completeness(recorder.statement),
    )


def parse_seeds(values: Sequence[str]) -> dict[str, int]:
    """`NAME=N` or a bare `N` (named `seed`)."""
    seeds: dict[str, int] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        name = name if sep else "seed"
        text = number.removeprefix("-")
        if not name or not text.isdigit() or len(text) > 19:
            raise InputError(f"seed {value!r} is not NAME=INTEGER or INTEGER")
        seeds[name] = int(number)
    return seeds


def read_hyperparameters(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PathError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: hyperparameters are not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: hyperparameters must be a JSON object")
    return data
