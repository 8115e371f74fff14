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

from modelward.core.dsse import Envelope, EnvelopeSignature
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
from modelward.policy.facts import DatasetEligibility
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
from modelward.services.attestation_verify import AttestationVerifier, CheckedAttestations
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.datasets import (
    ineligible_datasets,
    parse_dataset_uri,
)
from modelward.services.provenance_requirements import requirements_in
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
        *,
        model: str | None = None,
    ) -> None:
        """Inside the push's transaction: attestation, links and ledger event."""
        assert self.run is not None and self.root_digest is not None
        require(conn, actor, Action.ATTACH_PROVENANCE, model=model)
        if manifest.root_digest != self.root_digest:
            raise InputError("the bundle changed while it was being pushed")
        dataset_ids = self._check_references(conn)
        envelope = parse_envelope(self.document)
        # The registry countersigns what it verified, so readers check one pinned key; the
        # trainer's signature stays in the envelope.
        countersignature = EnvelopeSignature(
            self.ctx.signer.sign(envelope.pae()), self.ctx.signer.keyid
        )
        envelope = Envelope(
            envelope.payload_type, envelope.payload, (*envelope.signatures, countersignature)
        )
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


def provenance_facts_in(
    conn: Connection,
    record: VersionRecord,
    verifier: AttestationVerifier,
    *,
    checked: CheckedAttestations | None = None,
    required: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What the gate and `show` know about a version's training provenance, from its verified
    provenance attestation only (an unverifiable one is reported under `unverified` and treated
    as absent). `missing` lists the `required` fields (default: the registry's setting) that
    are absent; datasets and their eligibility come from the verified statement. Never raises
    for a missing or bad statement: those are facts too."""
    if checked is None:
        checked = verifier.check_all(
            RegistryRepository(conn).attestations(record.id, PROVENANCE_KIND), record.root_digest
        )
    if required is None:
        required = requirements_in(conn).required
    unverified = [p.reason for p in checked.problems if p.kind == PROVENANCE_KIND]
    empty = dict.fromkeys(COMPLETENESS_FIELDS, False)
    facts: dict[str, Any] = {
        "present": False,
        "signer_key": None,
        "verified_by": None,
        "fields": empty,
        "required": list(required),
        "missing": list(required),
        "complete": False,
        "datasets": [],
        "ineligible_datasets": {},
        "datasets_eligible": None,
        "base_model": None,
        "base_model_digest": None,
        "unverified": unverified,
    }
    verified = checked.of_kind(PROVENANCE_KIND)
    if not verified:
        return facts
    attestation = verified[0]
    fields = completeness(attestation.statement)
    missing = [name for name in required if not fields.get(name, False)]
    facts.update(
        present=True,
        signer_key=attestation.key_id,
        verified_by=attestation.key_name,
        fields=fields,
        missing=missing,
        complete=not missing,
        attestation_digest=attestation.record.digest,
    )
    try:
        run = training_run_of(attestation.statement)
    except ModelwardError as exc:
        facts["error"] = f"the training run cannot be read: {exc}"
        return facts
    uris = [use.uri for use in run.datasets]
    facts.update(
        datasets=uris,
        base_model=run.base_model.reference if run.base_model else None,
        base_model_digest=(
            "sha256:" + run.base_model.digest if run.base_model and run.base_model.digest else None
        ),
        ineligible_datasets=_ineligible(conn, run.datasets),
    )
    facts["datasets_eligible"] = not facts["ineligible_datasets"]
    return facts


def _ineligible(conn: Connection, uses: Sequence[DatasetUse]) -> dict[str, list[str]]:
    """Why each dataset a run used is not eligible today; unknown or changed datasets are not."""
    repo = ProvenanceRepository(conn)
    known: list[str] = []
    found: dict[str, list[str]] = {}
    for use in uses:
        name, number = parse_dataset_uri(use.uri)
        try:
            stored = repo.dataset_version(name, number)
        except NotFoundError:
            found[use.uri] = ["the dataset is not in the registry"]
            continue
        if stored.manifest_digest != use.digest:
            found[use.uri] = ["the registry's manifest differs from the one the run used"]
            continue
        known.append(use.uri)
    found.update(ineligible_datasets(conn, known))
    return found


def dataset_eligibility(facts: dict[str, Any]) -> DatasetEligibility | None:
    """The gate's `datasets` fact from `provenance_facts_in`; None when no verified provenance
    names the training data (so rules about it fail closed)."""
    if not facts.get("present") or facts.get("datasets_eligible") is None:
        return None
    return DatasetEligibility(tuple(facts["datasets"]), dict(facts["ineligible_datasets"]))


def verified_lineage_records(
    conn: Connection, verifier: AttestationVerifier
) -> tuple[list[VersionLineage], dict[int, TrainingRun | None], list[str]]:
    """Every version with the datasets and base model its verified provenance names, each
    version's training run, and the problems of provenance that did not verify."""
    registry = RegistryRepository(conn)
    aliases: dict[tuple[str, int], list[str]] = {}
    for model, alias, number in registry.all_aliases():
        aliases.setdefault((model, number), []).append(f"models:/{model}@{alias}")
    found: list[VersionLineage] = []
    runs: dict[int, TrainingRun | None] = {}
    problems: list[str] = []
    for version in registry.all_versions():
        checked = verifier.check_all(
            registry.attestations(version.id, PROVENANCE_KIND), version.root_digest
        )
        problems += [f"{version.uri}: {p.describe()}" for p in checked.problems]
        run = None
        for attestation in checked.of_kind(PROVENANCE_KIND)[:1]:
            try:
                run = training_run_of(attestation.statement)
            except ModelwardError as exc:
                problems.append(f"{version.uri}: provenance unreadable: {exc}")
        runs[version.id] = run
        found.append(
            VersionLineage(
                uri=version.uri,
                root_digest=version.root_digest,
                datasets=tuple(use.uri for use in run.datasets) if run else (),
                base_model=run.base_model.reference if run and run.base_model else None,
                aliases=tuple(aliases.get((version.model, version.number), ())),
            )
        )
    return found, runs, problems


def training_run_in(
    conn: Connection, version_id: int, verifier: AttestationVerifier
) -> TrainingRun | None:
    """The training run of a version's verified provenance (None when there is none)."""
    repo = RegistryRepository(conn)
    record = repo.version_by_id(version_id)
    checked = verifier.check_all(repo.attestations(version_id, PROVENANCE_KIND), record.root_digest)
    for attestation in checked.of_kind(PROVENANCE_KIND):
        try:
            return training_run_of(attestation.statement)
        except ModelwardError:
            return None
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
            verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
            return provenance_facts_in(conn, version, verifier)

    def push_hook(
        self, provenance_path: Path, extra_keys: Sequence[Verifier] = ()
    ) -> PushProvenance:
        from modelward.services.trusted_keys import trusted_keys_in

        with self.ctx.database.read() as conn:
            registered = [k.verifier() for k in trusted_keys_in(conn)]
        trusted = trusted_keys(self.ctx.home, [*extra_keys, *registered])
        return PushProvenance(self.ctx, read_provenance_file(provenance_path), trusted)

    # -- lineage ----------------------------------------------------------------------------

    def lineage(self, uri: str, downstream: bool = False) -> dict[str, Any]:
        """Lineage from verified provenance only: a version whose provenance attestation does
        not verify shows no datasets or base model, and is listed under `unverified`."""
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
            versions, runs, unverified = verified_lineage_records(conn, verifier)
            # a caller limited to some models (a token's pattern) sees nothing of the others:
            # not what derives from this version, nor which of them failed verification
            versions = [v for v in versions if _visible(v.uri)]
            unverified = [u for u in unverified if _visible(u.split(": ", 1)[0])]
            if uri.startswith("datasets:/"):
                from modelward.provenance.lineage import downstream_of_dataset

                name, number = parse_dataset_uri(uri)
                ProvenanceRepository(conn).dataset_version(name, number)
                found = downstream_of_dataset(uri, versions)
                return {
                    "uri": uri,
                    "downstream": [v.to_dict() for v in found],
                    "unverified": unverified,
                }
            from modelward.services.registry import resolve_in

            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            if downstream:
                found = _downstream_of_version(record.uri, versions)
                return {
                    "uri": record.uri,
                    "downstream": [v.to_dict() for v in found],
                    "unverified": unverified,
                }
            uris = {v.uri: v.id for v in RegistryRepository(conn).all_versions()}
        tree = _with_training_runs(upstream(record.uri, versions), runs, uris)
        return {
            "uri": record.uri,
            "tree": tree.to_dict(),
            "lines": tree.lines(),
            "unverified": unverified,
        }

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


def _visible(uri: str) -> bool:
    """Whether the principal bound to the request (if any) may see the model `uri` names."""
    from modelward.core.principal import bound_principal

    principal = bound_principal()
    if principal is None or not uri.startswith("models:/"):
        return True
    name = uri[len("models:/") :].split("/", 1)[0].split("@", 1)[0]
    return principal.allows_model(name)
