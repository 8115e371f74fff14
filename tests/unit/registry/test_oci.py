"""`oci push` / `oci pull` against the in-memory OCI registry twin: both referrer paths
(referrers API and the `sha256-<hex>` tag schema), chunked uploads, token auth, and a hostile
registry (swapped bytes, unsigned or re-signed manifests, extra or renamed layers, path
traversal under a trusted key): every attack is refused, nothing is written, and no layer is
downloaded before the signature checked."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from tests.oci_twin import OciTwin

from modelward.core import oci
from modelward.core.manifest import FileDigest, Manifest, Serialization
from modelward.errors import (
    DigestMismatchError,
    InputError,
    PathError,
    SignatureMismatchError,
    VerificationError,
)
from modelward.provenance.slsa import (
    SLSA_PROVENANCE_V1,
    TrainingRun,
    provenance_statement,
    sign_provenance,
)
from modelward.services.bundle_signing import verify_bundle
from modelward.services.context import utc_now
from modelward.services.oci import OciService
from modelward.services.provenance import PushProvenance
from modelward.signing.keys import Signer, Verifier, generate_private_key
from modelward.signing.oms import sign_manifest
from modelward.storage.model_files import hash_files, list_model_files
from modelward.storage.oci_client import OciClient

from .bundles import bundle_files, make_bundle
from .conftest import Registry

HOST = "twin.test"
REPO = "models/demo"


def service(registry: Registry, twin: OciTwin, chunk_size: int = 16 << 20) -> OciService:
    def factory(host: str) -> OciClient:
        assert host == HOST
        return OciClient(host, transport=twin.transport(), chunk_size=chunk_size)

    return OciService(factory, registry.context)


def pushed(registry: Registry, tmp_path: Path, seed: int = 1, **kw: Any) -> tuple[str, Path]:
    bundle = make_bundle(tmp_path / f"bundle-{seed}", seed=seed, **kw)
    result = registry.service.push(bundle, "demo")
    return result.version.uri, bundle


def layer_gets(twin: OciTwin) -> list[str]:
    """Downloads of model layers (the blobs of any ModelPack manifest the twin holds)."""
    layers = {
        layer["digest"]
        for data, _ in twin.manifests.values()
        if (document := json.loads(data)).get("artifactType") == oci.MODEL_ARTIFACT
        for layer in document["layers"]
    }
    return [r for r in twin.requests if r.startswith("GET ") and r.rsplit("/", 1)[-1] in layers]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


@pytest.mark.parametrize("referrers_api", [True, False], ids=["referrers-api", "tag-schema"])
def test_round_trip_layers_are_the_signed_file_digests(
    registry: Registry, tmp_path: Path, referrers_api: bool
) -> None:
    twin = OciTwin(referrers_api=referrers_api)
    uri, bundle = pushed(registry, tmp_path)
    evidence = tmp_path / "evidence.json"
    evidence.write_text('{"evidence": true}')
    result = service(registry, twin).push(uri, f"{HOST}/{REPO}:v1", evidence=evidence)
    assert result.referrers_mode == ("referrers-api" if referrers_api else "tag-schema")
    assert [r.kind for r in result.referrers] == ["signature", "bom", "evidence"]
    assert twin.tags[(REPO, "v1")] == result.digest

    document = json.loads(twin.manifests[result.digest][0])
    assert document["artifactType"] == oci.MODEL_ARTIFACT
    assert document["config"]["mediaType"] == oci.MODEL_CONFIG
    signed = registry.service.resolve(uri).manifest().digests()
    layers = {x["annotations"][oci.ANNOTATION_FILEPATH]: x["digest"] for x in document["layers"]}
    assert layers == {name: f"sha256:{digest}" for name, digest in signed.items()}
    fallback = (REPO, oci.fallback_tag(result.digest))
    assert (fallback in twin.tags) is not referrers_api

    out = tmp_path / "out"
    pulled = service(registry, twin).pull(f"{HOST}/{REPO}@{result.digest}", out)
    assert pulled.referrers_mode == result.referrers_mode
    assert bundle_files(out) == bundle_files(bundle)
    verify_bundle(
        out,
        public_key=Verifier(registry.context.signer.public_key),
        signature_path=pulled.signature,
    )


def test_pushing_again_reuses_blobs_and_keeps_one_signature_in_the_fallback_index(
    registry: Registry, tmp_path: Path
) -> None:
    twin = OciTwin(referrers_api=False)
    uri, _ = pushed(registry, tmp_path)
    first = service(registry, twin).push(uri, f"{HOST}/{REPO}:v1")
    again = service(registry, twin).push(uri, f"{HOST}/{REPO}:latest")
    assert again.digest == first.digest and again.uploaded_bytes == 0
    assert again.reused_blobs == first.layers
    index = json.loads(twin.manifests[twin.tags[(REPO, oci.fallback_tag(first.digest))]][0])
    kinds = [m["artifactType"] for m in index["manifests"]]
    assert kinds.count(oci.SIGSTORE_BUNDLE) == 1 and oci.CYCLONEDX_JSON in kinds


def test_big_files_go_in_chunks_and_tokens_are_fetched(registry: Registry, tmp_path: Path) -> None:
    twin = OciTwin(token="s3cret")
    uri, bundle = pushed(registry, tmp_path, weight_size=300_000)
    result = service(registry, twin, chunk_size=64 * 1024).push(uri, f"{HOST}/{REPO}:v1")
    assert sum(1 for r in twin.requests if r.startswith("PATCH ")) >= 5
    assert twin.token_requests >= 1
    out = tmp_path / "out"
    service(registry, twin).pull(f"{HOST}/{REPO}@{result.digest}", out)
    assert bundle_files(out) == bundle_files(bundle)


def test_a_single_file_version_is_one_named_layer(registry: Registry, tmp_path: Path) -> None:
    twin = OciTwin()
    single = make_bundle(tmp_path / "b") / "config.json"
    uri = registry.service.push(single, "single").version.uri
    result = service(registry, twin).push(uri, f"{HOST}/{REPO}:one")
    out = tmp_path / "out"
    pulled = service(registry, twin).pull(f"{HOST}/{REPO}@{result.digest}", out)
    assert (out / "config.json").read_bytes() == single.read_bytes()
    verify_bundle(
        out,
        public_key=Verifier(registry.context.signer.public_key),
        signature_path=pulled.signature,
    )


def test_a_corrupt_local_blob_is_refused_by_the_registry_and_nothing_is_tagged(
    registry: Registry, tmp_path: Path
) -> None:
    twin = OciTwin()
    uri, _ = pushed(registry, tmp_path)
    weight = registry.service.resolve(uri).manifest().digests()["model-00001-of-00001.safetensors"]
    registry.tamper_blob(weight, b"x" * 4200)
    with pytest.raises(DigestMismatchError):
        service(registry, twin).push(uri, f"{HOST}/{REPO}:v1")
    assert twin.tags == {} and f"sha256:{weight}" not in twin.blobs


# -- a hostile registry ------------------------------------------------------------------------


@pytest.fixture
def published(registry: Registry, tmp_path: Path) -> tuple[OciTwin, str, OciService]:
    twin = OciTwin(referrers_api=False)
    uri, _ = pushed(registry, tmp_path)
    digest = service(registry, twin).push(uri, f"{HOST}/{REPO}:v1").digest
    return twin, digest, service(registry, twin)


def test_swapped_layer_bytes_are_refused_and_nothing_is_left(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    twin, digest, svc = published
    layer = json.loads(twin.manifests[digest][0])["layers"][-1]
    original = twin.blobs[layer["digest"]]
    twin.blobs[layer["digest"]] = original[:-3] + b"BAD"
    out = tmp_path / "out"
    with pytest.raises(DigestMismatchError, match="hashing to"):
        svc.pull(f"{HOST}/{REPO}@{digest}", out)
    assert not out.exists() and not (tmp_path / "out.sig").exists()
    assert leftovers(tmp_path) == []


def test_a_manifest_that_is_not_the_digest_asked_for_is_refused(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    twin, digest, svc = published
    data, media_type = twin.manifests[digest]
    twin.manifests[digest] = (data.replace(b"safetensors", b"safetensorz"), media_type)
    with pytest.raises(VerificationError, match="hashing to"):
        svc.pull(f"{HOST}/{REPO}@{digest}", tmp_path / "out")
    assert layer_gets(twin) == []


def test_without_a_signature_nothing_is_downloaded(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    twin, digest, svc = published
    del twin.tags[(REPO, oci.fallback_tag(digest))]
    with pytest.raises(SignatureMismatchError, match="no signature referrer"):
        svc.pull(f"{HOST}/{REPO}@{digest}", tmp_path / "out")
    assert layer_gets(twin) == [] and not (tmp_path / "out").exists()


def test_a_signature_by_an_untrusted_key_is_refused(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    twin, digest, svc = published
    other = Verifier(Signer(generate_private_key()).public_key)
    with pytest.raises(SignatureMismatchError, match="not trusted"):
        svc.pull(f"{HOST}/{REPO}@{digest}", tmp_path / "out", trusted=[other])
    assert layer_gets(twin) == []


def _repackage(twin: OciTwin, digest: str, edit: Any) -> str:
    """A new manifest made from `digest`'s by `edit`, given the original's signature referrer
    (as an attacker who can push would)."""
    document = json.loads(twin.manifests[digest][0])
    edit(document)
    new_digest = twin.put_manifest_behind_back(REPO, "evil", document)
    index = json.loads(twin.manifests[twin.tags[(REPO, oci.fallback_tag(digest))]][0])
    signature = next(m for m in index["manifests"] if m["artifactType"] == oci.SIGSTORE_BUNDLE)
    referrer = json.loads(twin.manifests[signature["digest"]][0])
    referrer["subject"] = {"mediaType": oci.OCI_MANIFEST, "digest": new_digest, "size": 1}
    ref_digest = twin.put_manifest_behind_back(REPO, "sig", referrer)
    listing = {
        "mediaType": oci.OCI_MANIFEST,
        "digest": ref_digest,
        "size": 1,
        "artifactType": oci.SIGSTORE_BUNDLE,
    }
    twin.put_manifest_behind_back(
        REPO,
        oci.fallback_tag(new_digest),
        {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [listing]},
    )
    return new_digest


def test_an_extra_layer_the_signature_does_not_name_is_refused(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    twin, digest, svc = published

    def add_layer(document: dict[str, Any]) -> None:
        extra = dict(document["layers"][0])
        extra["annotations"] = {oci.ANNOTATION_FILEPATH: "run_me.py"}
        document["layers"].append(extra)

    evil = _repackage(twin, digest, add_layer)
    with pytest.raises(SignatureMismatchError, match=r"run_me\.py"):
        svc.pull(f"{HOST}/{REPO}@{evil}", tmp_path / "out")
    assert layer_gets(twin) == []


def test_a_layer_size_beyond_the_free_space_is_refused_before_downloading(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    """The OMS signature pins each file's digest but not its size, so a hostile registry can
    name any size for a layer (and stream that much before the digest fails): a pull whose
    layers could not fit is refused before a byte is written."""
    twin, digest, svc = published

    def inflate(document: dict[str, Any]) -> None:
        document["layers"][-1]["size"] = 10**18

    evil = _repackage(twin, digest, inflate)
    with pytest.raises(InputError, match="free"):
        svc.pull(f"{HOST}/{REPO}@{evil}", tmp_path / "out")
    assert layer_gets(twin) == [] and not (tmp_path / "out").exists()


def test_layers_renamed_against_the_signature_are_refused(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    twin, digest, svc = published

    def swap(document: dict[str, Any]) -> None:
        a, b = document["layers"][0], document["layers"][1]
        a["digest"], b["digest"] = b["digest"], a["digest"]
        a["size"], b["size"] = b["size"], a["size"]

    evil = _repackage(twin, digest, swap)
    with pytest.raises(SignatureMismatchError, match="the signature says"):
        svc.pull(f"{HOST}/{REPO}@{evil}", tmp_path / "out")
    assert layer_gets(twin) == []


@pytest.mark.parametrize(
    "path", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "a\\..\\evil"]
)
def test_path_traversal_is_refused_even_when_a_trusted_key_signed_it(
    registry: Registry, tmp_path: Path, path: str
) -> None:
    twin = OciTwin()
    data = b"owned\n"
    digest = oci.digest_of(data)
    twin.blobs[digest] = data
    signer = Signer(generate_private_key())
    bundle = sign_manifest(
        Manifest("evil", (FileDigest(path, "sha256", digest[7:], len(data)),)), signer
    )
    config = (
        b'{"descriptor":{},"config":{},"modelfs":{"type":"layers","diffIds":["'
        + digest.encode()
        + b'"]}}'
    )
    twin.blobs[oci.digest_of(config)] = config
    layer = {
        "mediaType": oci.WEIGHT_CONFIG_RAW,
        "digest": digest,
        "size": len(data),
        "annotations": {oci.ANNOTATION_FILEPATH: path},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "artifactType": oci.MODEL_ARTIFACT,
        "config": {
            "mediaType": oci.MODEL_CONFIG,
            "digest": oci.digest_of(config),
            "size": len(config),
        },
        "layers": [layer],
    }
    subject = twin.put_manifest_behind_back(REPO, "evil", manifest)
    raw = bundle.to_json()
    twin.blobs[oci.digest_of(raw)] = raw
    twin.blobs[oci.EMPTY_DIGEST] = oci.EMPTY_JSON
    twin.put_manifest_behind_back(
        REPO,
        "sig",
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": oci.SIGSTORE_BUNDLE,
            "config": oci.EMPTY_CONFIG.to_dict(),
            "layers": [
                {"mediaType": oci.SIGSTORE_BUNDLE, "digest": oci.digest_of(raw), "size": len(raw)}
            ],
            "subject": {"mediaType": oci.OCI_MANIFEST, "digest": subject, "size": 1},
        },
    )
    (tmp_path / "deep").mkdir()
    out = tmp_path / "deep" / "out"
    with pytest.raises(VerificationError, match="not a plain relative path"):
        service(registry, twin).pull(
            f"{HOST}/{REPO}@{subject}", out, trusted=[Verifier(signer.public_key)]
        )
    assert not out.exists() and not (tmp_path / "evil.txt").exists()
    assert layer_gets(twin) == []


def test_pull_needs_a_digest_and_a_fresh_folder(
    published: tuple[OciTwin, str, OciService], tmp_path: Path
) -> None:
    _, digest, svc = published
    with pytest.raises(InputError, match="pull by digest"):
        svc.pull(f"{HOST}/{REPO}:v1", tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("mine")
    with pytest.raises(PathError, match="not an empty folder"):
        svc.pull(f"{HOST}/{REPO}@{digest}", busy)
    assert (busy / "file").read_text() == "mine"


def _push_with_provenance(registry: Registry, tmp_path: Path) -> str:
    bundle = make_bundle(tmp_path / "trained", seed=5)
    root = Manifest("bundle", tuple(hash_files(list_model_files(bundle))), Serialization())
    key = Signer(generate_private_key())
    now = utc_now()
    run = TrainingRun(
        builder_id="https://example.org/builder",
        invocation_id="run-1",
        started_on=now,
        finished_on=now,
    )
    document = sign_provenance(provenance_statement(run, root.root_digest, "bundle"), key)
    hook = PushProvenance(
        registry.context, json.dumps(document.to_dict()).encode(), [Verifier(key.public_key)]
    )
    return registry.service.push(bundle, "trained", provenance=hook).version.uri


def test_verified_slsa_provenance_is_a_referrer_and_a_forged_one_is_not(
    registry: Registry, tmp_path: Path
) -> None:
    uri = _push_with_provenance(registry, tmp_path)
    twin = OciTwin()
    result = service(registry, twin).push(uri, f"{HOST}/{REPO}:trained")
    (provenance,) = [r for r in result.referrers if r.kind == "provenance"]
    referrer = json.loads(twin.manifests[provenance.digest][0])
    assert referrer["artifactType"] == oci.IN_TOTO
    assert referrer["annotations"][oci.ANNOTATION_INTOTO_PREDICATE] == SLSA_PROVENANCE_V1
    (layer,) = referrer["layers"]
    assert layer["mediaType"] == oci.DSSE_ENVELOPE
    envelope = json.loads(twin.blobs[layer["digest"]])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicateType"] == SLSA_PROVENANCE_V1
    assert statement["subject"][0]["digest"]["sha256"] == result.root_digest

    record = registry.service.resolve(uri)
    forged = dict(envelope, payload=base64.b64encode(b'{"forged": true}').decode())
    registry.sql(
        "UPDATE attestations SET document = ? WHERE version_id = ? AND kind = ?",
        (json.dumps(forged), record.id, "provenance"),
    )
    again = service(registry, OciTwin()).push(uri, f"{HOST}/{REPO}:trained")
    assert [r.kind for r in again.referrers] == ["signature", "bom", "evidence"]
    assert any("no verified SLSA provenance" in note for note in again.skipped)


def test_a_push_that_fails_before_its_referrers_are_attached_tags_nothing(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelward.errors import DependencyError
    from modelward.services.evidence import EvidenceService

    def no_bom(self: EvidenceService, uri: str) -> str:
        raise DependencyError("writing ML-BOMs needs cyclonedx-python-lib")

    monkeypatch.setattr(EvidenceService, "bom", no_bom)
    twin = OciTwin()
    uri, _ = pushed(registry, tmp_path)
    with pytest.raises(DependencyError):
        service(registry, twin).push(uri, f"{HOST}/{REPO}:v1")
    assert (REPO, "v1") not in twin.tags


def _evidence_layer(twin: OciTwin, digest: str) -> dict[str, Any]:
    for data, _ in twin.manifests.values():
        document = json.loads(data)
        if document.get("artifactType") == oci.EVIDENCE and (
            document.get("subject", {}).get("digest") == digest
        ):
            layer: dict[str, Any] = document["layers"][0]
            return layer
    raise AssertionError("no evidence referrer")


def test_an_evidence_bundle_is_attached_as_the_documented_tar_media_type(
    registry: Registry, tmp_path: Path
) -> None:
    """docs/evidence.md names `application/vnd.modelward.evidence.v1+tar`: so does the layer,
    whether the bundle is exported at push time or given with --evidence."""
    from modelward.services.evidence_bundle import MEDIA_TYPE, export_bundle

    assert MEDIA_TYPE == oci.EVIDENCE + "+tar"
    uri, _ = pushed(registry, tmp_path)
    twin = OciTwin()
    exported = service(registry, twin).push(uri, f"{HOST}/{REPO}:v1")
    assert _evidence_layer(twin, exported.digest)["mediaType"] == MEDIA_TYPE
    bundle = tmp_path / "given.evidence"
    bundle.write_bytes(export_bundle(registry.context, uri, actor="alice"))
    twin = OciTwin()
    given = service(registry, twin).push(uri, f"{HOST}/{REPO}:v1", evidence=bundle)
    assert _evidence_layer(twin, given.digest)["mediaType"] == MEDIA_TYPE
