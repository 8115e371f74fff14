"""The registry use cases: init, push, pull, resolve, show, list, aliases, verify and fsck.

Each operation is one unit of work: blobs are stored (atomically, by digest) before the database
transaction that makes a version visible, and the ledger event is appended inside that same
transaction. Knows nothing of argument parsing or rendering.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from modelward.core.canonical import canonical_json
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement, Subject
from modelward.core.manifest import DEFAULT_IGNORE_PATHS, FileDigest, Manifest, Serialization
from modelward.core.names import ModelURI, parse_uri, validate_name
from modelward.core.roles import Action
from modelward.errors import (
    DeniedError,
    DigestMismatchError,
    InputError,
    ModelwardError,
    NotFoundError,
    SignatureMismatchError,
    StorageError,
    VerificationError,
)
from modelward.services.bundle_signing import relative_ignores, verify_bundle
from modelward.services.change import CHANGE_KIND, CHANGE_PREDICATE_TYPE, ChangeHook
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.ingest import (
    SCAN_PREDICATE_TYPE,
    BundleScanner,
    push_scanner,
    scan_staged,
)
from modelward.services.pending_writes import (
    pending_writes,
)
from modelward.services.settings import setting_in
from modelward.services.state_integrity import anchored_append, check_alias
from modelward.services.users import require
from modelward.signing.keys import Verifier
from modelward.signing.oms import (
    SignatureBundle,
    manifest_from_statement,
    sign_manifest,
    verify_with_key,
)
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord
from modelward.storage.model_files import list_model_files, refuse_unprintable_names
from modelward.storage.staging import StagedBundle, StagedFile, stage_bundle

if TYPE_CHECKING:
    from modelward.services.provenance import PushProvenance
    from modelward.services.pull import PullResult

REGISTRY_SIGNATURE = "registry-signature"
UPLOADER_SIGNATURE = "uploader-signature"
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class PushResult:
    version: VersionRecord
    created: bool
    manifest: Manifest


@dataclass
class CheckReport:
    """Problems found by `verify` or `fsck`; empty means all is well."""

    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class RegistryService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    # -- writing ----------------------------------------------------------------------------

    def push(
        self,
        model_path: Path,
        name: str,
        *,
        description: str = "",
        signature_path: Path | None = None,
        public_key: Verifier | None = None,
        scanner: BundleScanner | None = None,
        accept_malformed: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        change: ChangeHook | None = None,
        provenance: PushProvenance | None = None,
    ) -> PushResult:
        """See `_push`; registered as a pending writer while it runs, so that fsck spares the
        blobs it stores before its transaction commits."""
        with pending_writes(self.ctx.blobs, f"push models:/{name}"):
            return self._push(
                model_path,
                name,
                description=description,
                signature_path=signature_path,
                public_key=public_key,
                scanner=scanner,
                accept_malformed=accept_malformed,
                progress=progress,
                change=change,
                provenance=provenance,
            )

    def _push(
        self,
        model_path: Path,
        name: str,
        *,
        description: str = "",
        signature_path: Path | None = None,
        public_key: Verifier | None = None,
        scanner: BundleScanner | None = None,
        accept_malformed: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        change: ChangeHook | None = None,
        provenance: PushProvenance | None = None,
    ) -> PushResult:
        """Store the bundle and make it the next version of `name` (or report the existing one).

        Every push is scanned. The files are read once, into a private staged copy; the
        registry's own scanner (`push_scanner` with the `scan.allow` setting and
        `accept_malformed`) scans that copy, and its report must name each file's sha256, equal to
        the digest stored. An injected `scanner` runs as well and may refuse, but its report is
        never kept as the scan. The report is kept as a signed
        attestation; on DeniedError nothing is stored and the refusal is written to the ledger.
        `change` classifies the file diff against the previous version (kept as a signed
        "change" attestation). `provenance` checks a training-provenance statement before
        anything is stored and keeps it with the version, in the same transaction.
        """
        validate_name(name, "model name")
        self._require(Action.PUSH, model=name)
        if len(description) > 10_000:
            raise InputError("the description is longer than 10,000 characters")
        model_path = Path(model_path)
        ignores = set(DEFAULT_IGNORE_PATHS)
        if signature_path is not None and model_path.is_dir():
            ignores.update(relative_ignores(model_path, [signature_path]))
        files = list_model_files(model_path, ignore_paths=sorted(ignores))
        refuse_unprintable_names(files, model_path.name if files[0].name == "." else None)
        uploader: SignatureBundle | None = None
        if signature_path is not None or public_key is not None:
            if signature_path is None or public_key is None:
                raise InputError("--signature and --public-key go together")
            verify_bundle(model_path, public_key=public_key, signature_path=signature_path)
            from modelward.services.bundle_signing import read_signature

            uploader = read_signature(signature_path)
        with self.ctx.database.read() as conn:
            allow = setting_in(conn, "scan.allow")
        # The registry's own scanner always runs and its report is the one kept; an injected
        # scanner may only refuse more (its report is never trusted as the scan).
        own_scanner = push_scanner(allow=allow, accept_malformed=accept_malformed)
        with stage_bundle(files, self.ctx.home / "staging", single_name=model_path.name) as staged:
            try:
                if scanner is not None:
                    scan_staged(staged, scanner)
                scan_report = scan_staged(staged, own_scanner)
            except DeniedError as exc:
                self.record_refusal(
                    name, str(exc), {"findings": exc.reasons[:50], "files": len(files)}
                )
                raise
            if uploader is not None and public_key is not None:
                _check_uploader_covers(uploader, public_key, staged)
            if provenance is not None:
                provenance.before_store(staged.scan_path, staged.model_files())
            stored = self._store_files(staged.files, progress)
        manifest = Manifest(
            model_name=name,
            files=tuple(stored),
            serialization=Serialization(ignore_paths=tuple(sorted(ignores))),
        )
        registry_bundle = sign_manifest(manifest, self.ctx.signer)
        manifest_json = canonical_json(manifest.to_dict()).decode("utf-8")
        now = format_time(utc_now())
        with self.ctx.database.transaction() as conn:
            repo = RegistryRepository(conn)
            # the model's row lock allocates its version numbers; the ledger lock is taken later,
            # by ledger.size(), so pushes of other models do their reads meanwhile
            model_id = repo.lock_model(name, now, self.actor)
            existing = repo.find_by_root(model_id, manifest.root_digest)
            if existing is not None:
                return PushResult(existing, created=False, manifest=existing.manifest())
            number = repo.next_version_number(model_id)
            change_fact = None
            if change is not None:
                previous = repo.version(name, number - 1).manifest() if number > 1 else None
                change_fact = change(previous, manifest)
            ledger = LedgerRepository(conn)
            push_seq = ledger.size()  # takes the ledger lock: the seq of this push's event
            version_id = repo.insert_version(
                model_id,
                number,
                manifest,
                manifest_json,
                description,
                now,
                self.actor,
                push_seq,
            )
            attested = [self._attest(repo, version_id, REGISTRY_SIGNATURE, registry_bundle, now)]
            if uploader is not None:
                attested.append(self._attest(repo, version_id, UPLOADER_SIGNATURE, uploader, now))
            if scan_report is not None:
                attested.append(
                    self.add_statement(
                        repo, version_id, "scan", SCAN_PREDICATE_TYPE, manifest, scan_report, now
                    )
                )
            if change_fact is not None:
                attested.append(
                    self.add_statement(
                        repo,
                        version_id,
                        CHANGE_KIND,
                        CHANGE_PREDICATE_TYPE,
                        manifest,
                        change_fact,
                        now,
                    )
                )
            event = anchored_append(
                conn,
                self.actor,
                "version.push",
                f"models:/{name}/{number}",
                {
                    "model": name,
                    "version": number,
                    "root_digest": manifest.root_digest,
                    "manifest_digest": _sha256(manifest_json),
                    "files": len(manifest.files),
                    "uploader_key": uploader.public_key_hint if uploader else None,
                    # a single file's own name, so that pull can write it under that name
                    **({"file_name": model_path.name} if list(manifest.digests()) == ["."] else {}),
                },
                utc_now(),
                rows=[("attestations", str(att_id)) for att_id in attested],
            )
            if event.seq != push_seq:
                raise StorageError("the ledger moved during a push; nothing was changed")
            if provenance is not None:
                provenance.store(conn, repo, version_id, manifest, now, self.actor, model=name)
            record = repo.version_by_id(version_id)
        return PushResult(record, created=True, manifest=manifest)

    def _attest(
        self,
        repo: RegistryRepository,
        version_id: int,
        kind: str,
        bundle: SignatureBundle,
        now: str,
    ) -> int:
        document = json.dumps(bundle.to_dict(), sort_keys=True)
        return repo.add_attestation(version_id, kind, document, _sha256(document), now, self.actor)

    def add_statement(
        self,
        repo: RegistryRepository,
        version_id: int,
        kind: str,
        predicate_type: str,
        manifest: Manifest,
        predicate: dict[str, Any],
        now: str,
    ) -> int:
        """Store an in-toto statement about the version, DSSE-signed with the registry key;
        returns the attestation's id (the caller's ledger event anchors it)."""
        statement = Statement(
            subjects=(Subject.of(manifest.model_name, sha256=manifest.root_digest),),
            predicate_type=predicate_type,
            predicate=predicate,
        )
        envelope = Envelope.sign(
            IN_TOTO_PAYLOAD_TYPE,
            statement.to_bytes(),
            self.ctx.signer.sign,
            keyid=self.ctx.signer.keyid,
        )
        document = json.dumps(envelope.to_dict(), sort_keys=True)
        return repo.add_attestation(version_id, kind, document, _sha256(document), now, self.actor)

    def record_refusal(self, name: str, reason: str, details: dict[str, Any]) -> None:
        """Write a refused push to the ledger (nothing else is stored)."""
        with self.ctx.database.transaction() as conn:
            LedgerRepository(conn).append(
                self.actor,
                "push.refused",
                f"models:/{name}",
                {"reason": reason, **details},
                utc_now(),
            )

    def _store_files(
        self, files: list[StagedFile], progress: ProgressCallback | None
    ) -> list[FileDigest]:
        """Store the staged copies; each must still hash to what was staged (and scanned)."""

        def store(staged: StagedFile) -> FileDigest:
            info = self.ctx.blobs.put_file(staged.path, expected_digest=staged.digest)
            if progress is not None:
                progress(info.size)
            return FileDigest(staged.name, "sha256", info.digest, info.size)

        workers = min(len(files), os.cpu_count() or 1)
        # threads pay off only for large bundles; a small one is stored faster inline
        if workers <= 1 or sum(f.size for f in files) < (32 << 20):
            return [store(f) for f in files]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(store, files))

    def store_scanned_file(self, path: Path) -> str:
        """Scan one file a release carries (a prompt template, a policy file) and store the
        very bytes scanned; returns `sha256:<digest>`. ScanRefusedError (nothing stored) when
        the scan finds anything unsafe or malformed."""
        files = list_model_files(Path(path))
        with self.ctx.database.read() as conn:
            allow = setting_in(conn, "scan.allow")
        with stage_bundle(files, self.ctx.home / "staging", single_name=Path(path).name) as staged:
            scan_staged(staged, push_scanner(allow=allow, refusing=f"storing {Path(path).name}"))
            (stored,) = self._store_files(staged.files, None)
        return "sha256:" + stored.digest

    def _require(self, action: Action, model: str | None = None) -> None:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, action, model=model)

    def set_alias(self, name: str, alias: str, number: int) -> VersionRecord:
        """Point `name@alias` at version `number`; environment aliases (the registry's
        `gate.environments`) are refused: they move only by promote or rollback."""
        validate_name(alias, "alias")
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.PUSH, model=name)
            _refuse_environment_alias(conn, alias)
            repo = RegistryRepository(conn)
            record = repo.version(name, number)
            model_id = repo.require_model_id(name)
            repo.set_alias(model_id, alias, record.id, format_time(utc_now()), self.actor)
            anchored_append(
                conn,
                self.actor,
                "alias.set",
                f"models:/{name}@{alias}",
                {
                    "model": name,
                    "alias": alias,
                    "version": number,
                    "root_digest": record.root_digest,
                },
                utc_now(),
                rows=[("aliases", f"{name}@{alias}")],
            )
        return record

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove `name@alias`; environment aliases are refused as in `set_alias`."""
        validate_name(alias, "alias")
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.PUSH, model=name)
            _refuse_environment_alias(conn, alias)
            repo = RegistryRepository(conn)
            model_id = repo.require_model_id(name)
            if not repo.delete_alias(model_id, alias):
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            anchored_append(
                conn,
                self.actor,
                "alias.delete",
                f"models:/{name}@{alias}",
                {"model": name, "alias": alias},
                utc_now(),
                removed=[("aliases", f"{name}@{alias}")],
            )

    # -- reading ----------------------------------------------------------------------------

    def resolve(self, uri: str | ModelURI) -> VersionRecord:
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return resolve_in(RegistryRepository(conn), parsed)

    def list_models(self) -> list[dict[str, Any]]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return RegistryRepository(conn).list_models()

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        validate_name(name, "model name")
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = RegistryRepository(conn)
            return [
                {**v.to_dict(), "aliases": repo.aliases_of(v.id)} for v in repo.list_versions(name)
            ]

    def show(self, uri: str) -> dict[str, Any]:
        parsed = parse_uri(uri)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = RegistryRepository(conn)
            record = resolve_in(repo, parsed)
            manifest = record.manifest()
            from modelward.services.attestation_verify import (
                AttestationVerifier,
                VerifiedAttestation,
            )

            verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
            attestations = []
            for att in repo.attestations(record.id):
                entry: dict[str, Any] = {
                    "id": att.id,
                    "kind": att.kind,
                    "digest": att.digest,
                    "created_at": att.created_at,
                    "by": att.created_by,
                }
                checked = verifier.check(att, record.root_digest)
                if isinstance(checked, VerifiedAttestation):
                    entry.update(verified=True, key_id=checked.key_id, key_name=checked.key_name)
                    if att.kind not in (REGISTRY_SIGNATURE, UPLOADER_SIGNATURE):
                        entry["statement"] = checked.statement.to_dict()
                else:
                    entry.update(verified=False, problem=checked.reason)
                attestations.append(entry)
            now = utc_now()
            expired = sorted(
                env
                for env, release in GateRepository(conn)
                .current_releases_of_model(record.model)
                .items()
                if release.version == record.number and release.override_expired(now)
            )
            return {
                **record.to_dict(),
                "aliases": repo.aliases_of(record.id),
                # environments where this version is current under an override that expired
                "override_expired_in": expired,
                "manifest": manifest.to_dict(),
                "attestations": attestations,
                "trust_problems": verifier.setting_problems,
                **version_evidence(conn, record, Verifier(self.ctx.signer.public_key)),
            }

    def attestations(self, record: VersionRecord, kind: str | None = None) -> list[Any]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return list(RegistryRepository(conn).attestations(record.id, kind))

    def pull(self, uri: str, out_dir: Path) -> VersionRecord:
        """Write the bundle to `out_dir`, verified (see `pull_to`)."""
        return self.pull_to(uri, out_dir).version

    def pull_to(
        self,
        uri: str | VersionRecord,
        out_dir: Path,
        *,
        signature_path: Path | None = None,
        file_name: str | None = None,
    ) -> PullResult:
        """Write the bundle to `out_dir`, verified, with its OMS signature when
        `signature_path` is given; see `modelward.services.pull.pull_bundle`."""
        from modelward.services.pull import pull_bundle

        record = self.resolve(uri) if isinstance(uri, str) else uri
        manifest, bundle = self._checked_signature(record)
        return pull_bundle(
            self.ctx,
            record,
            manifest,
            bundle,
            out_dir,
            signature_path=signature_path,
            file_name=file_name,
        )

    def _checked_manifest(self, record: VersionRecord) -> Manifest:
        """The version's manifest, after checking the registry's signature over it."""
        return self._checked_signature(record)[0]

    def _checked_signature(self, record: VersionRecord) -> tuple[Manifest, SignatureBundle]:
        """The version's manifest and registry signature, after checking one against the other."""
        manifest = record.manifest()
        if manifest.root_digest != record.root_digest:
            raise VerificationError(f"{record.uri}: the stored manifest does not match its digest")
        signatures = self.attestations(record, REGISTRY_SIGNATURE)
        if not signatures:
            raise VerificationError(f"{record.uri}: the registry signature is missing")
        bundle = SignatureBundle.from_dict(json.loads(signatures[0].document))
        pinned, hint = self.ctx.registry_key_id, bundle.public_key_hint
        key = self.ctx.signer.public_key
        if hint is not None and hint != pinned:
            retired = self.ctx.retired_keys.get("registry", {})
            if hint not in retired:
                raise SignatureMismatchError(
                    f"{record.uri}: the registry signature is by key {hint}, not by the "
                    f"registry's pinned key {pinned}"
                )
            key = retired[hint]  # signed before a `keys rotate`
        signed = manifest_from_statement(verify_with_key(bundle, Verifier(key)))
        if signed.root_digest != record.root_digest or signed.digests() != manifest.digests():
            raise VerificationError(f"{record.uri}: the registry signature covers other files")
        return manifest, bundle

    def verify(self, uri: str) -> CheckReport:
        """Re-hash every stored blob, check the registry signature and the ledger inclusion;
        a version row that disagrees with its push event is reported, not raised."""
        report = CheckReport()
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri), check=False)
        report.details["uri"] = record.uri
        report.details["root_digest"] = record.root_digest
        try:
            manifest = self._checked_manifest(record)
        except ModelwardError as exc:
            report.problems.append(str(exc))
            return report
        for entry in manifest.files:
            try:
                for _ in self.ctx.blobs.read_chunks(entry.digest):
                    pass
            except DigestMismatchError:
                report.problems.append(
                    f"{record.uri}: file {entry.name}: stored bytes do not match {entry.digest}"
                )
            except NotFoundError:
                report.problems.append(
                    f"{record.uri}: file {entry.name}: blob {entry.digest} is missing"
                )
        report.problems.extend(self._check_ledger_entry(record))
        report.details["files"] = len(manifest.files)
        return report

    def _check_ledger_entry(self, record: VersionRecord) -> list[str]:
        from modelward.core import merkle

        with self.ctx.database.read() as conn:
            ledger = LedgerRepository(conn)
            size = ledger.size()
            if record.ledger_seq >= size:
                return [f"{record.uri}: its push event #{record.ledger_seq} is not in the ledger"]
            try:
                event = ledger.event(record.ledger_seq)
            except NotFoundError:
                return [f"{record.uri}: its push event #{record.ledger_seq} is missing"]
            problems = version_event_problems(record, event.action, event.details, event.actor)
            try:
                leaf = merkle.leaf_hash(event.leaf_data())
                proof = merkle.inclusion_proof(record.ledger_seq, size, ledger.node)
                root = merkle.root_from_nodes(size, ledger.node)
                merkle.verify_inclusion(record.ledger_seq, size, leaf, proof, root)
            except ModelwardError as exc:
                problems.append(f"{record.uri}: ledger inclusion proof failed: {exc}")
        return problems

    def fsck(self, repair: bool = False, grace_seconds: float = 3600.0) -> CheckReport:
        """Find (and with `repair` remove) orphan blobs and half-finished writes; see
        `modelward.services.fsck`. Repair needs the admin role."""
        from modelward.services.fsck import check_blobs

        return check_blobs(self.ctx, self.actor, repair=repair, grace_seconds=grace_seconds)


def _refuse_environment_alias(conn: Connection, alias: str) -> None:
    from modelward.services.gate_config import gate_config_in

    environments = gate_config_in(conn).environments
    if alias in environments:
        raise InputError(
            f"alias {alias!r} is an environment alias (the promotion path is "
            f"{' → '.join(environments)}): it moves only by promote or rollback"
        )


def resolve_in(repo: RegistryRepository, uri: ModelURI, *, check: bool = True) -> VersionRecord:
    """The version `uri` names, after checking its row against the sealed ledger event that
    pushed it (VerificationError when the row was edited behind modelward's back); `check=False`
    leaves that to the caller (`verify`, which reports it)."""
    record = _resolve_row(repo, uri)
    return check_version_row(repo, record) if check else record


def _resolve_row(repo: RegistryRepository, uri: ModelURI) -> VersionRecord:
    if uri.kind != "models":
        raise InputError(f"{uri} is not a model URI")
    if uri.digest is not None:
        matches = repo.versions_by_root(uri.digest)
        if not matches:
            raise NotFoundError(f"no version has root digest sha256:{uri.digest}")
        return matches[0]
    assert uri.name is not None
    if uri.alias is not None:
        target = repo.alias_target(uri.name, uri.alias)
        check_alias(repo.connection, uri.name, uri.alias)  # a moved alias is refused
        return target
    assert uri.version is not None
    return repo.version(uri.name, uri.version)


def check_version_row(repo: RegistryRepository, record: VersionRecord) -> VersionRecord:
    """`record`, if it agrees with its push event (which must be a trusted, sealed event)."""
    from modelward.services.state_integrity import keeper_of

    conn = repo.connection
    try:
        event = LedgerRepository(conn).event(record.ledger_seq)
    except NotFoundError as exc:
        raise VerificationError(
            f"{record.uri}: its push event #{record.ledger_seq} is missing; it is not trusted"
        ) from exc
    keeper = keeper_of(conn)
    problem = keeper.event_problem(event) if keeper is not None else None
    if problem is not None and event.seal is None and _vouched_by_baseline(conn, record, keeper):
        problem = None  # pushed before seals existed; a sealed upgrade baseline lists it
    problems = [problem] if problem else []
    problems += version_event_problems(record, event.action, event.details, event.actor)
    if problems:
        raise VerificationError(
            f"{record.uri}: the version row does not match the ledger; it is not trusted: "
            + "; ".join(problems[:3])
        )
    return record


def _vouched_by_baseline(conn: Connection, record: VersionRecord, keeper: Any) -> bool:
    """Whether a trusted (sealed) upgrade baseline after the push lists this version."""
    for event in LedgerRepository(conn).subject_events("ledger", record.ledger_seq):
        if event.action != "ledger.baseline" or keeper.event_problem(event) is not None:
            continue
        if [record.model, record.number] in event.details.get("versions", []):
            return True
    return False


def version_event_problems(
    record: VersionRecord, action: str, details: dict[str, Any], actor: str | None = None
) -> list[str]:
    """What differs between a version row and the ledger event that created it (and, when
    `actor` is given, the event's actor)."""
    expected = {
        "model": record.model,
        "version": record.number,
        "root_digest": record.root_digest,
        "manifest_digest": _sha256(record.manifest_json),
    }
    if action != "version.push":
        return [f"{record.uri}: ledger event #{record.ledger_seq} is a {action!r}, not its push"]
    problems = []
    for key, value in expected.items():
        if details.get(key) != value:
            problems.append(
                f"{record.uri}: {key} differs from its ledger event #{record.ledger_seq} "
                f"(ledger {details.get(key)!r}, database {value!r})"
            )
    try:
        manifest = record.manifest()
        if manifest.root_digest != record.root_digest:
            problems.append(f"{record.uri}: the stored manifest does not hash to its root digest")
    except ModelwardError as exc:
        problems.append(f"{record.uri}: the stored manifest is unreadable: {exc}")
    if actor is not None and actor != record.created_by:
        problems.append(
            f"{record.uri}: created_by differs from its ledger event #{record.ledger_seq} "
            f"(ledger {actor!r}, database {record.created_by!r})"
        )
    return problems


def registry_state_checks(conn: Connection) -> list[str]:
    """Audit hook: every version and alias must agree with the ledger events that made it."""
    repo = RegistryRepository(conn)
    ledger = LedgerRepository(conn)
    problems: list[str] = []
    size = ledger.size()
    for record in repo.all_versions():
        if record.ledger_seq >= size:
            problems.append(f"{record.uri}: its push event is not in the ledger")
            continue
        try:
            event = ledger.event(record.ledger_seq)
        except NotFoundError:
            problems.append(f"{record.uri}: its push event #{record.ledger_seq} is missing")
            continue
        problems.extend(version_event_problems(record, event.action, event.details, event.actor))
    expected: dict[tuple[str, str], object] = {}
    alias_moves = ("alias.set", "release.create", "release.rollback")
    for event in ledger.events(0, size):
        details = event.details
        key = (str(details.get("model")), str(details.get("alias")))
        if event.action == "alias.delete":
            expected.pop(key, None)
        elif event.action in alias_moves and details.get("alias"):
            expected[key] = details.get("version")
    actual: dict[tuple[str, str], object] = {(m, a): n for m, a, n in repo.all_aliases()}
    for key in sorted(set(expected) | set(actual), key=str):
        if expected.get(key) != actual.get(key):
            model, alias = key
            problems.append(
                f"alias {model}@{alias}: database says version {actual.get(key)}, "
                f"the ledger says {expected.get(key)}"
            )
    return problems


def version_evidence(
    conn: Connection, record: VersionRecord, registry_key: Verifier
) -> dict[str, Any]:
    """Provenance facts and evaluations of a version, for `show`."""
    from modelward.services.evidence import evidence_in

    return evidence_in(conn, record, registry_key)


def _check_uploader_covers(
    uploader: SignatureBundle, public_key: Verifier, staged: StagedBundle
) -> None:
    """The uploader's signature must cover the staged bytes (not only the working tree)."""
    digests = {f.name: f.digest for f in staged.files}
    signed = manifest_from_statement(verify_with_key(uploader, public_key))
    for entry in signed.files:
        if digests.get(entry.name) != entry.digest:
            raise VerificationError(
                f"{entry.name}: the stored bytes are not the ones the uploader signed "
                "(the file changed during the push); nothing was stored"
            )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
