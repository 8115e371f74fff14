"""Distributing versions through OCI registries: `push` writes a CNCF ModelPack artifact (one
raw layer per file, so each layer digest is the file's sha256 in the signed OMS manifest) and
attaches the registry's OMS signature, the verified SLSA provenance, the ML-BOM and an evidence
file as OCI 1.1 referrers, using the referrers tag schema (`sha256-<hex>` index) when the
registry does not report `OCI-Subject`.

`pull` trusts nothing the registry says: the manifest must hash to the digest asked for, a
signature referrer must verify with a trusted key and name exactly the layers' paths and digests
before any layer is downloaded, and every layer is hashed as it streams into a private folder
that is renamed into place only when every file checked. Knows nothing of argument parsing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core import oci
from modelward.core.oci import Descriptor, ModelFile, Reference
from modelward.errors import (
    InputError,
    ModelwardError,
    NotFoundError,
    PathError,
    SignatureMismatchError,
    VerificationError,
)
from modelward.services.context import RegistryContext, current_actor
from modelward.signing.keys import Verifier
from modelward.signing.oms import (
    MAX_SIGNATURE_BYTES,
    PREDICATE_TYPE,
    SignatureBundle,
    manifest_from_statement,
    sign_manifest,
    verify_with_key,
)
from modelward.storage.oci_client import OciClient

ClientFactory = Callable[[str], OciClient]
ProgressCallback = Callable[[int], None]
MAX_SIGNATURE_REFERRERS = 16


@dataclass(frozen=True)
class Referrer:
    kind: str  # signature | provenance | bom | evidence
    artifact_type: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "artifact_type": self.artifact_type,
            "digest": self.digest,
            "size": self.size,
        }


@dataclass(frozen=True)
class OciPushResult:
    uri: str
    root_digest: str
    reference: str  # REGISTRY/REPO:TAG
    digest: str  # the ModelPack manifest's
    layers: int
    uploaded_bytes: int
    reused_blobs: int  # already in the registry, not uploaded again
    referrers: tuple[Referrer, ...]
    referrers_mode: str  # "referrers-api" | "tag-schema"
    skipped: tuple[str, ...]  # what was not attached, and why

    @property
    def pinned(self) -> str:
        return self.reference.rsplit(":", 1)[0] + "@" + self.digest

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "root_digest": self.root_digest,
            "reference": self.reference,
            "digest": self.digest,
            "pull_reference": self.pinned,
            "layers": self.layers,
            "uploaded_bytes": self.uploaded_bytes,
            "reused_blobs": self.reused_blobs,
            "referrers": [r.to_dict() for r in self.referrers],
            "referrers_mode": self.referrers_mode,
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True)
class OciPullResult:
    reference: str
    digest: str
    out: Path
    signature: Path
    files: int
    bytes: int
    key_id: str
    referrers_mode: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "out": str(self.out),
            "signature": str(self.signature),
            "files": self.files,
            "bytes": self.bytes,
            "key_id": self.key_id,
            "referrers_mode": self.referrers_mode,
            "verified": True,
        }


@dataclass(frozen=True)
class _Attachment:
    kind: str
    artifact_type: str
    media_type: str
    annotations: dict[str, str]
    data: bytes | None = None
    path: Path | None = None


class OciService:
    """Push versions of a registry to OCI registries and pull verified bundles from them.
    `context` is needed to push, and to pull when no trusted key is given."""

    def __init__(
        self,
        client_factory: ClientFactory,
        context: RegistryContext | None = None,
        actor: str | None = None,
    ) -> None:
        self.client_factory = client_factory
        self.ctx = context
        self.actor = actor or current_actor()

    # -- push ---------------------------------------------------------------------------------

    def push(
        self,
        uri: str,
        target: str,
        *,
        evidence: Path | None = None,
        evidence_media_type: str | None = None,
        progress: ProgressCallback | None = None,
        on_total: ProgressCallback | None = None,
    ) -> OciPushResult:
        from modelward.services.pull import _folder_form, _pushed_file_name, _single_file_name
        from modelward.services.registry import RegistryService

        if self.ctx is None:
            raise InputError("pushing to an OCI registry needs the local registry")
        ctx = self.ctx
        ref = oci.parse_reference(target)
        if ref.digest is not None:
            raise InputError(f"{target}: push to a tag (REGISTRY/REPO:TAG); the digest is made")
        evidence_attachment = _evidence(evidence, evidence_media_type) if evidence else None
        registry = RegistryService(ctx, self.actor)
        record = registry.resolve(uri)
        if evidence_attachment is None:  # the version's own evidence bundle, exported now
            from modelward.services.evidence_bundle import MEDIA_TYPE, export_bundle

            exported = export_bundle(ctx, record.uri, actor=self.actor)
            evidence_attachment = _Attachment(
                "evidence",
                oci.EVIDENCE,
                MEDIA_TYPE,
                {oci.ANNOTATION_TITLE: f"{record.model}-{record.number}.evidence.tar"},
                data=exported,
            )
        manifest, bundle = registry._checked_signature(record)
        if [f.name for f in manifest.files] == ["."]:
            # One file: its layer needs a name, and the signature must name it too.
            name = _single_file_name(_pushed_file_name(ctx, record) or record.model)
            manifest = _folder_form(manifest, name)
            bundle = sign_manifest(manifest, ctx.signer)
        files = [
            ModelFile(f.name, f.digest, f.size if f.size is not None else ctx.blobs.size(f.digest))
            for f in manifest.files
        ]
        created = record.created_at
        if on_total is not None:
            on_total(sum(f.size for f in files))
        with self.client_factory(ref.registry) as client:
            repo = ref.repository
            uploaded = reused = 0
            for entry in files:
                digest = f"sha256:{entry.digest}"
                if client.blob_exists(repo, digest, push=True):
                    reused += 1
                    if progress is not None:
                        progress(entry.size)
                    continue
                with ctx.blobs.open(entry.digest) as reader:
                    client.push_blob(repo, digest, entry.size, _Counting(reader, progress))
                    if reader.read(1):  # reaching the end is what checks the stored bytes
                        raise VerificationError(f"blob {digest} is longer than its manifest says")
                uploaded += entry.size
            config = oci.model_config(
                record.model, str(record.number), created, files, record.description
            )
            config_digest = client.push_blob_bytes(repo, config)
            annotations = {
                oci.ANNOTATION_CREATED: created,
                oci.ANNOTATION_TITLE: record.model,
                oci.ANNOTATION_URI: record.uri,
                oci.ANNOTATION_ROOT_DIGEST: f"sha256:{record.root_digest}",
                "org.opencontainers.image.version": str(record.number),
            }
            model_manifest = oci.image_manifest(
                Descriptor(oci.MODEL_CONFIG, config_digest, len(config)),
                oci.model_layers(files, created),
                artifact_type=oci.MODEL_ARTIFACT,
                annotations=annotations,
            )
            # by digest first; the tag is set last, so a failed push never tags an artifact
            # without its signature
            digest = oci.digest_of(model_manifest)
            client.put_manifest(repo, digest, model_manifest, oci.OCI_MANIFEST)
            subject = Descriptor(oci.OCI_MANIFEST, digest, len(model_manifest))
            attachments = [
                _Attachment(
                    "signature",
                    oci.SIGSTORE_BUNDLE,
                    oci.SIGSTORE_BUNDLE,
                    {oci.ANNOTATION_PREDICATE: PREDICATE_TYPE},
                    data=bundle.to_json(),
                ),
                *self._provenance(record),
            ]
            skipped: list[str] = []
            if len(attachments) == 1:
                skipped.append("provenance: the version has no verified SLSA provenance")
            attachments.append(self._bom(record.uri))  # the version resolved, not an alias
            if evidence_attachment is not None:
                attachments.append(evidence_attachment)
            referrers, mode = _attach(client, repo, subject, attachments, created)
            client.put_manifest(repo, ref.reference, model_manifest, oci.OCI_MANIFEST)
        return OciPushResult(
            uri=record.uri,
            root_digest=record.root_digest,
            reference=str(ref),
            digest=digest,
            layers=len(files),
            uploaded_bytes=uploaded,
            reused_blobs=reused,
            referrers=tuple(referrers),
            referrers_mode=mode,
            skipped=tuple(skipped),
        )

    def _provenance(self, record: Any) -> list[_Attachment]:
        """The version's provenance envelopes that verify (registry countersignature)."""
        from modelward.services.attestation_verify import AttestationVerifier, VerifiedAttestation
        from modelward.services.provenance import PROVENANCE_KIND
        from modelward.storage.metadata.registry_repository import RegistryRepository

        assert self.ctx is not None
        found = []
        with self.ctx.database.read() as conn:
            verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
            for att in RegistryRepository(conn).attestations(record.id, PROVENANCE_KIND):
                checked = verifier.check(att, record.root_digest)
                if isinstance(checked, VerifiedAttestation):
                    found.append(
                        _Attachment(
                            "provenance",
                            oci.IN_TOTO,
                            oci.DSSE_ENVELOPE,
                            {oci.ANNOTATION_INTOTO_PREDICATE: checked.statement.predicate_type},
                            data=att.document.encode("utf-8"),
                        )
                    )
        return found

    def _bom(self, uri: str) -> _Attachment:
        from modelward.services.evidence import EvidenceService

        assert self.ctx is not None
        text = EvidenceService(self.ctx, self.actor).bom(uri)
        return _Attachment(
            "bom", oci.CYCLONEDX_JSON, oci.CYCLONEDX_JSON, {}, data=text.encode("utf-8")
        )

    # -- pull ---------------------------------------------------------------------------------

    def pull(
        self,
        source: str,
        out_dir: Path,
        *,
        trusted: Sequence[Verifier] = (),
        signature_path: Path | None = None,
        progress: ProgressCallback | None = None,
        on_total: ProgressCallback | None = None,
    ) -> OciPullResult:
        ref = oci.parse_reference(source)
        if ref.digest is None:
            raise InputError(
                f"{source}: pull by digest (REGISTRY/REPO@sha256:…): a tag can be moved by "
                "anyone who can push; `oci push` prints the digest"
            )
        keys = list(trusted) or self._registry_keys()
        out_dir = Path(out_dir)
        signature_path = (
            Path(signature_path) if signature_path else out_dir.with_name(out_dir.name + ".sig")
        )
        _check_targets(out_dir, signature_path)
        with self.client_factory(ref.registry) as client:
            data, _ = client.get_manifest(ref.repository, ref.digest)
            parsed = oci.parse_manifest(data, ref.digest, f"{ref}")
            files = oci.model_files_of(parsed)
            raw_bundle, key_id, mode = _verified_signature(client, ref, files, keys)
            _check_room(out_dir, files)
            if on_total is not None:
                on_total(sum(f.size for f in files))
            total = _download(client, ref.repository, files, out_dir, progress)
        try:
            with open(signature_path, "xb") as handle:
                handle.write(raw_bundle)
        except OSError as exc:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise PathError(f"{signature_path}: cannot write the signature: {exc}") from exc
        return OciPullResult(
            str(ref), ref.digest, out_dir, signature_path, len(files), total, key_id, mode
        )

    def _registry_keys(self) -> list[Verifier]:
        if self.ctx is None:
            raise InputError("no trusted key: give --trust KEYFILE (the signer's public key)")
        keys = [Verifier(self.ctx.signer.public_key)]
        keys += [Verifier(k) for k in self.ctx.retired_keys.get("registry", {}).values()]
        return keys


class _Counting:
    def __init__(self, reader: Any, progress: ProgressCallback | None) -> None:
        self.reader = reader
        self.progress = progress

    def read(self, size: int = -1, /) -> bytes:
        chunk: bytes = self.reader.read(size)
        if self.progress is not None and chunk:
            self.progress(len(chunk))
        return chunk


def _evidence(path: Path, media_type: str | None) -> _Attachment:
    path = Path(path)
    if not path.is_file():
        raise PathError(f"{path}: no such evidence file")
    if media_type is None:
        with open(path, "rb") as handle:
            head = handle.read(265)
        if head[257:262] == b"ustar":  # a tar, as `evidence export` writes
            media_type = oci.EVIDENCE + "+tar"
        elif head.startswith(b"PK\x03\x04"):
            media_type = oci.EVIDENCE + "+zip"
        elif head.startswith(b"\x1f\x8b"):
            media_type = oci.EVIDENCE + "+gzip"
        elif head.lstrip()[:1] in (b"{", b"["):
            media_type = oci.EVIDENCE + "+json"
        else:
            media_type = oci.EVIDENCE
    return _Attachment(
        "evidence", oci.EVIDENCE, media_type, {oci.ANNOTATION_TITLE: path.name}, path=path
    )


def _attach(
    client: OciClient,
    repo: str,
    subject: Descriptor,
    attachments: list[_Attachment],
    created: str,
) -> tuple[list[Referrer], str]:
    """Push each attachment as a referrer of `subject`; update the fallback tag index when the
    registry did not acknowledge the subject (no referrers API)."""
    empty = client.push_blob_bytes(repo, oci.EMPTY_JSON)
    assert empty == oci.EMPTY_DIGEST
    referrers: list[Referrer] = []
    descriptors: list[Descriptor] = []
    acknowledged = True
    for item in attachments:
        if item.data is not None:
            layer_digest, size = client.push_blob_bytes(repo, item.data), len(item.data)
        else:
            assert item.path is not None
            layer_digest, size = _push_file(client, repo, item.path)
        layer = Descriptor(item.media_type, layer_digest, size, dict(item.annotations))
        annotations = {oci.ANNOTATION_CREATED: created, **item.annotations}
        document = oci.image_manifest(
            oci.EMPTY_CONFIG,
            [layer],
            artifact_type=item.artifact_type,
            annotations=annotations,
            subject=subject,
        )
        digest = oci.digest_of(document)
        _, echoed = client.put_manifest(repo, digest, document, oci.OCI_MANIFEST)
        acknowledged = acknowledged and echoed == subject.digest
        referrers.append(Referrer(item.kind, item.artifact_type, digest, len(document)))
        descriptors.append(
            Descriptor(oci.OCI_MANIFEST, digest, len(document), annotations, item.artifact_type)
        )
    if acknowledged:
        return referrers, "referrers-api"
    tag = oci.fallback_tag(subject.digest)
    try:
        data, _ = client.get_manifest(repo, tag, accept=oci.OCI_INDEX)
        existing = oci.parse_index(data, f"{repo}:{tag}")
    except NotFoundError:
        existing = []
    known = {d.digest for d in existing}
    merged = existing + [d for d in descriptors if d.digest not in known]
    client.put_manifest(repo, tag, oci.referrers_index(merged), oci.OCI_INDEX)
    return referrers, "tag-schema"


def _push_file(client: OciClient, repo: str, path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
            digest = "sha256:" + hasher.hexdigest()
            if not client.blob_exists(repo, digest, push=True):
                handle.seek(0)
                client.push_blob(repo, digest, size, handle)  # the registry re-checks the digest
    except OSError as exc:
        raise PathError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return digest, size


def _signature_candidates(client: OciClient, ref: Reference) -> tuple[list[Descriptor], str]:
    assert ref.digest is not None
    listed = client.referrers(ref.repository, ref.digest, oci.SIGSTORE_BUNDLE)
    mode = "referrers-api"
    if listed is None:
        mode = "tag-schema"
        try:
            data, _ = client.get_manifest(
                ref.repository, oci.fallback_tag(ref.digest), accept=oci.OCI_INDEX
            )
            listed = oci.parse_index(data, "the referrers tag")
        except NotFoundError:
            listed = []
    # a registry may ignore the filter; an index may list anything: only the type counts here
    return [d for d in listed if d.artifact_type == oci.SIGSTORE_BUNDLE], mode


def _verified_signature(
    client: OciClient, ref: Reference, files: list[ModelFile], keys: list[Verifier]
) -> tuple[bytes, str, str]:
    """The raw bundle of the first signature referrer that verifies with a trusted key and
    signs exactly these files; SignatureMismatchError naming every refusal otherwise."""
    candidates, mode = _signature_candidates(client, ref)
    problems: list[str] = []
    for descriptor in candidates[:MAX_SIGNATURE_REFERRERS]:
        try:
            data, _ = client.get_manifest(ref.repository, descriptor.digest)
            referrer = oci.parse_manifest(data, descriptor.digest, f"referrer {descriptor.digest}")
            if referrer.subject is None or referrer.subject.digest != ref.digest:
                raise VerificationError("it is not about this manifest (subject differs)")
            layers = [x for x in referrer.layers if x.media_type == oci.SIGSTORE_BUNDLE]
            if len(layers) != 1:
                raise VerificationError("it does not hold exactly one Sigstore bundle")
            raw = client.get_blob_bytes(
                ref.repository, layers[0].digest, layers[0].size, MAX_SIGNATURE_BYTES
            )
            bundle = SignatureBundle.from_json(raw, f"signature {descriptor.digest}")
            key = _key_for(bundle, keys)
            signed = manifest_from_statement(verify_with_key(bundle, key))
            oci.check_against_signed(files, signed)
            return raw, key.keyid, mode
        except ModelwardError as exc:
            problems.append(f"{descriptor.digest}: {exc}")
    if not candidates:
        problems.append(f"no signature referrer found ({mode})")
    raise SignatureMismatchError(
        f"{ref}: no signature by a trusted key covers this manifest; nothing was downloaded: "
        + "; ".join(problems[:4])
    )


def _key_for(bundle: SignatureBundle, keys: list[Verifier]) -> Verifier:
    hint = bundle.public_key_hint
    for key in keys:
        if hint is None or key.keyid == hint:
            return key
    raise SignatureMismatchError(f"signed by key {str(hint)[:16]}…, which is not trusted")


def _check_targets(out_dir: Path, signature_path: Path) -> None:
    if out_dir.is_symlink() or (
        out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    ):
        raise PathError(f"{out_dir}: exists and is not an empty folder; choose a new one")
    if not out_dir.parent.is_dir():
        raise PathError(f"{out_dir.parent}: no such folder")
    if signature_path.exists() or signature_path.is_symlink():
        raise PathError(f"{signature_path}: exists; choose a new signature file")
    if not signature_path.parent.is_dir():
        raise PathError(f"{signature_path.parent}: no such folder for the signature")
    resolved = os.path.realpath(out_dir)
    if os.path.commonpath([resolved, os.path.realpath(signature_path)]) == resolved:
        raise PathError(f"{signature_path}: the signature cannot be written inside {out_dir}")


def _check_room(out_dir: Path, files: list[ModelFile]) -> None:
    """Refuse before downloading when the layers could not fit. The signature pins each file's
    digest, not its size (OMS carries none): each layer is streamed only up to the size its OCI
    descriptor names, so the descriptors' total bounds what a hostile registry can make us
    write before a digest fails; it must fit where the files go."""
    needed = sum(f.size for f in files)
    try:
        free = shutil.disk_usage(out_dir.parent).free
    except OSError as exc:
        raise PathError(f"{out_dir.parent}: cannot tell how much space is free: {exc}") from exc
    if needed > free:
        raise PathError(
            f"{out_dir.parent}: the layers would need {needed} bytes and only {free} are free; "
            "nothing was downloaded (a layer size the registry names is not covered by the "
            "signature)"
        )


def _download(
    client: OciClient,
    repo: str,
    files: list[ModelFile],
    out_dir: Path,
    progress: ProgressCallback | None,
) -> int:
    """Stream every layer into a private folder beside `out_dir`, hashing as it goes, then
    rename the folder into place; on any failure nothing is left behind."""
    staging = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.oci-partial"
    staging.mkdir(mode=0o700)
    total = 0
    try:
        for entry in files:
            target = staging.joinpath(*entry.path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(target, flags, 0o644)
            try:
                with client.stream_blob(repo, f"sha256:{entry.digest}", entry.size) as chunks:
                    for chunk in chunks:
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                        if progress is not None:
                            progress(len(chunk))
                os.fsync(fd)
            finally:
                os.close(fd)
            total += entry.size
        staging.chmod(0o755)
        if out_dir.is_dir():
            out_dir.rmdir()  # empty, checked before
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return total
