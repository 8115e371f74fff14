"""The registry service in-process (SQLite file, filesystem blobs): push, pull, resolve, show,
aliases, verify and fsck, and what each one refuses."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from modelward.errors import (
    DigestMismatchError,
    InputError,
    InvalidNameError,
    InvalidURIError,
    NotFoundError,
    PathError,
    VerificationError,
)
from modelward.services.bundle_signing import sign_bundle
from modelward.services.context import current_actor
from modelward.services.registry import REGISTRY_SIGNATURE, UPLOADER_SIGNATURE
from modelward.services.users import UserService
from modelward.signing.keys import Signer, Verifier, generate_private_key
from modelward.signing.oms import SignatureBundle, manifest_from_statement, verify_with_key

from .bundles import bundle_files, make_bundle
from .conftest import ACTOR, Registry


def test_push_stores_every_file_by_digest_and_signs_the_manifest(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=1)
    result = registry.service.push(bundle, "llama", description="first cut")

    assert result.created
    assert result.version.uri == "models:/llama/1"
    assert result.version.created_by == ACTOR
    # the root digest is the OMS one: what `sign_bundle` computes for the same folder
    oms = sign_bundle(bundle, Signer(generate_private_key()), signature_path=tmp_path / "b.sig")
    assert result.version.root_digest == oms.manifest.root_digest
    stored = {}
    for entry in result.manifest.files:
        path = registry.blob_path(entry.digest)
        stored[entry.name] = path.read_bytes()
        assert hashlib.sha256(stored[entry.name]).hexdigest() == entry.digest
    assert stored == bundle_files(bundle)

    shown = registry.service.show("models:/llama/1")
    assert shown["description"] == "first cut"
    # every push is scanned, even through the Python API with no scanner given
    assert [a["kind"] for a in shown["attestations"]] == [REGISTRY_SIGNATURE, "scan"]
    signature = registry.service.attestations(result.version, REGISTRY_SIGNATURE)[0]
    bundle_doc = SignatureBundle.from_dict(json.loads(signature.document))
    signed = manifest_from_statement(
        verify_with_key(bundle_doc, Verifier(registry.context.signer.public_key))
    )
    assert signed.root_digest == result.version.root_digest

    event = registry.events()[result.version.ledger_seq]
    assert (event.action, event.subject, event.actor) == (
        "version.push",
        "models:/llama/1",
        ACTOR,
    )
    assert event.details["root_digest"] == result.version.root_digest


def test_pushing_the_same_bundle_again_creates_nothing(registry: Registry, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=1)
    first = registry.service.push(bundle, "llama")
    events = len(registry.events())
    again = registry.service.push(bundle, "llama")

    assert not again.created
    assert again.version == first.version
    assert len(registry.events()) == events
    assert [v["version"] for v in registry.service.list_versions("llama")] == [1]


def test_a_different_bundle_is_version_2_and_version_1_is_untouched(
    registry: Registry, tmp_path: Path
) -> None:
    one = make_bundle(tmp_path / "one", seed=1)
    two = make_bundle(tmp_path / "two", seed=2)
    v1 = registry.service.push(one, "llama").version
    shown_before = registry.service.show("models:/llama/1")
    v2 = registry.service.push(two, "llama").version

    assert (v1.number, v2.number) == (1, 2)
    assert v1.root_digest != v2.root_digest
    assert registry.service.show("models:/llama/1") == shown_before
    registry.service.set_alias("llama", "champion", 2)
    registry.service.delete_alias("llama", "champion")
    assert registry.service.resolve("models:/llama/1") == v1
    out = tmp_path / "out"
    registry.service.pull("models:/llama/1", out)
    assert bundle_files(out) == bundle_files(one)
    assert registry.service.list_models() == [
        {
            "name": "llama",
            "created_at": registry.service.list_models()[0]["created_at"],
            "created_by": ACTOR,
            "versions": 2,
            "latest": 2,
        }
    ]


def test_an_uploader_signature_is_kept(registry: Registry, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=3)
    uploader = Signer(generate_private_key("ed25519"))
    sig = tmp_path / "bundle.sig"
    sign_bundle(bundle, uploader, signature_path=sig)

    result = registry.service.push(
        bundle, "llama", signature_path=sig, public_key=Verifier(uploader.public_key)
    )
    kinds = [a["kind"] for a in registry.service.show(result.version.uri)["attestations"]]
    assert kinds == [REGISTRY_SIGNATURE, UPLOADER_SIGNATURE, "scan"]
    kept = registry.service.attestations(result.version, UPLOADER_SIGNATURE)[0]
    assert json.loads(kept.document) == json.loads(sig.read_text())


@pytest.mark.parametrize("flaw", ["changed-file", "other-key"])
def test_a_bad_uploader_signature_is_refused_and_nothing_is_stored(
    registry: Registry, tmp_path: Path, flaw: str
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=3)
    uploader = Signer(generate_private_key())
    sig = tmp_path / "bundle.sig"
    sign_bundle(bundle, uploader, signature_path=sig)
    key = Verifier(uploader.public_key)
    if flaw == "changed-file":
        (bundle / "config.json").write_text('{"layers": 3}')
    else:
        key = Verifier(Signer(generate_private_key()).public_key)
    events = len(registry.events())

    with pytest.raises(VerificationError):
        registry.service.push(bundle, "llama", signature_path=sig, public_key=key)
    assert registry.blob_digests() == set()
    assert registry.service.list_models() == []
    assert len(registry.events()) == events


def test_pull_writes_the_verified_bundle(registry: Registry, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=4, weights=2)
    registry.service.push(bundle, "llama")
    out = tmp_path / "empty"
    out.mkdir()
    record = registry.service.pull("models:/llama/1", out)
    assert record.uri == "models:/llama/1"
    assert bundle_files(out) == bundle_files(bundle)


@pytest.mark.parametrize("existing_folder", [False, True])
def test_pull_of_a_tampered_blob_fails_and_leaves_nothing(
    registry: Registry, tmp_path: Path, existing_folder: bool
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=5, weights=3)
    manifest = registry.service.push(bundle, "llama").manifest
    weights = [f for f in manifest.files if f.name.endswith(".safetensors")]
    registry.tamper_blob(weights[-1].digest)
    out = tmp_path / "out"
    if existing_folder:
        out.mkdir()

    with pytest.raises(DigestMismatchError):
        registry.service.pull("models:/llama/1", out)
    if existing_folder:
        assert list(out.iterdir()) == []
    else:
        assert not out.exists()


def test_pull_refuses_a_folder_that_is_not_empty(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "bundle"), "llama")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PathError):
        registry.service.pull("models:/llama/1", out)
    assert bundle_files(out) == {"keep.txt": b"mine"}


def test_verify_rehashes_blobs_and_names_the_file(registry: Registry, tmp_path: Path) -> None:
    manifest = registry.service.push(make_bundle(tmp_path / "bundle"), "llama").manifest
    report = registry.service.verify("models:/llama/1")
    assert report.ok, report.problems
    assert report.details["files"] == len(manifest.files)

    config = next(f for f in manifest.files if f.name == "config.json")
    registry.tamper_blob(config.digest)
    report = registry.service.verify("models:/llama/1")
    assert not report.ok
    assert any("config.json" in p for p in report.problems), report.problems

    registry.blob_path(config.digest).unlink()
    report = registry.service.verify("models:/llama/1")
    assert any("config.json" in p and "missing" in p for p in report.problems), report.problems


def test_verify_reports_a_replaced_registry_signature(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "one", seed=1), "llama")
    other = make_bundle(tmp_path / "two", seed=2)
    forged = sign_bundle(other, Signer(generate_private_key()), signature_path=tmp_path / "f.sig")
    document = json.dumps(forged.bundle.to_dict(), sort_keys=True)
    registry.sql(
        "UPDATE attestations SET document = ? WHERE kind = ?", (document, REGISTRY_SIGNATURE)
    )
    report = registry.service.verify("models:/llama/1")
    assert not report.ok
    assert "signature" in " ".join(report.problems)


def test_uris_resolve_by_number_alias_and_digest(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.service.push(make_bundle(tmp_path / "one", seed=1), "llama").version
    v2 = registry.service.push(make_bundle(tmp_path / "two", seed=2), "llama").version
    registry.service.set_alias("llama", "champion", 1)

    assert registry.service.resolve("models:/llama/2") == v2
    assert registry.service.resolve("models:/llama@champion") == v1
    assert registry.service.resolve(f"sha256:{v2.root_digest}") == v2
    assert registry.service.show("models:/llama/1")["aliases"] == ["champion"]

    registry.service.set_alias("llama", "champion", 2)
    assert registry.service.resolve("models:/llama@champion") == v2
    registry.service.delete_alias("llama", "champion")
    with pytest.raises(NotFoundError, match="champion"):
        registry.service.resolve("models:/llama@champion")
    actions = [e.action for e in registry.events()]
    assert actions[-3:] == ["alias.set", "alias.set", "alias.delete"]
    assert registry.audit_verify().ok


def test_environment_aliases_do_not_move_by_alias_set(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    with pytest.raises(InputError, match="environment alias"):
        registry.service.set_alias("llama", "production", 1)
    with pytest.raises(NotFoundError):
        registry.service.resolve("models:/llama@production")


@pytest.mark.parametrize(
    "uri",
    [
        "models:/nope/1",
        "models:/llama/9",
        "models:/llama@nobody",
        "sha256:" + "0" * 64,
    ],
)
def test_unknown_models_versions_and_aliases_are_not_found(
    registry: Registry, tmp_path: Path, uri: str
) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    with pytest.raises(NotFoundError):
        registry.service.resolve(uri)
    with pytest.raises(NotFoundError):
        registry.service.pull(uri, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "llama/1",
        "models:/llama",
        "models:/llama/0",
        "models:/llama/one",
        "models:/../etc/1",
        "models:/ll\x00ama/1",
        "models:/llama@a/b",
        "sha256:abc",
        "sha256:" + "A" * 64,
        "models:/" + "x" * 600 + "/1",
    ],
)
def test_bad_uris_are_input_errors(registry: Registry, tmp_path: Path, uri: str) -> None:
    with pytest.raises(InvalidURIError):
        registry.service.resolve(uri)
    with pytest.raises(InvalidURIError):
        registry.service.pull(uri, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name",
    ["", "../llama", "a/b", "a\\b", "ll\x00ama", "ll\nama", "-x", ".hidden", "x" * 129, "a b"],
)
def test_bad_names_are_refused_before_anything_is_stored(
    registry: Registry, tmp_path: Path, name: str
) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    events = len(registry.events())
    with pytest.raises(InvalidNameError):
        registry.service.push(bundle, name)
    with pytest.raises(InvalidNameError):
        registry.service.set_alias("llama", name, 1)
    assert registry.blob_digests() == set()
    assert registry.service.list_models() == []
    assert len(registry.events()) == events


def test_the_longest_allowed_name_is_accepted(registry: Registry, tmp_path: Path) -> None:
    name = "m" * 128
    result = registry.service.push(make_bundle(tmp_path / "bundle"), name)
    assert registry.service.resolve(f"models:/{name}/1") == result.version


def test_a_device_is_not_a_model_path(registry: Registry) -> None:
    with pytest.raises(PathError):
        registry.service.push(Path("/dev/null"), "llama")
    assert registry.blob_digests() == set()
    assert registry.service.list_models() == []


def test_a_missing_model_path_is_an_input_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        registry.service.push(tmp_path / "nothing-here", "llama")
    assert registry.service.list_models() == []


def test_fsck_finds_and_repairs_orphans_and_half_finished_writes(
    registry: Registry, tmp_path: Path
) -> None:
    manifest = registry.service.push(make_bundle(tmp_path / "bundle"), "llama").manifest
    assert registry.service.fsck().ok

    loose = tmp_path / "loose.bin"
    loose.write_bytes(b"no version references me")
    orphan = registry.context.blobs.put_file(loose).digest
    temp_dir = registry.blob_root / "tmp"
    temp_dir.mkdir(exist_ok=True)
    old = temp_dir / "0123abcd.partial"
    old.write_bytes(b"half")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    young = temp_dir / "4567cdef.partial"
    young.write_bytes(b"in flight")

    # a young unreferenced blob may belong to a push that has not committed yet
    assert registry.service.fsck().details["orphan_blobs"] == []
    os.utime(registry.blob_path(orphan), (hour_ago, hour_ago))
    report = registry.service.fsck()
    assert report.details["orphan_blobs"] == [orphan]
    assert report.details["incomplete_writes"] == ["tmp/0123abcd.partial"]
    everything = registry.service.fsck(grace_seconds=0).details["incomplete_writes"]
    assert sorted(everything) == ["tmp/0123abcd.partial", "tmp/4567cdef.partial"]
    assert registry.blob_path(orphan).exists()  # a report changes nothing

    repaired = registry.service.fsck(repair=True)
    assert not repaired.ok  # it reports what it removed
    assert not registry.blob_path(orphan).exists()
    assert not old.exists()
    assert young.exists()  # younger than the grace period: maybe a live write
    with pytest.raises(InputError, match="at least 300"):  # repair keeps a minimum grace
        registry.service.fsck(repair=True, grace_seconds=0)
    os.utime(young, (hour_ago, hour_ago))
    registry.service.fsck(repair=True, grace_seconds=300)
    assert not young.exists()
    assert registry.service.fsck(grace_seconds=0).ok
    assert registry.blob_digests() == {f.digest for f in manifest.files}
    assert registry.service.verify("models:/llama/1").ok


def test_the_actor_is_recorded_on_every_event(registry: Registry, tmp_path: Path) -> None:
    UserService(registry.context, ACTOR).add("bob", "trainer")  # only registry users may push
    bob = registry.open_service(actor="bob")
    bob.push(make_bundle(tmp_path / "one", seed=1), "llama")
    registry.service.set_alias("llama", "champion", 1)
    bob.delete_alias("llama", "champion")
    events = registry.events()
    assert [(e.action, e.actor) for e in events] == [
        ("registry.init", ACTOR),
        ("user.add", ACTOR),
        ("version.push", "bob"),
        ("alias.set", ACTOR),
        ("alias.delete", "bob"),
    ]
    assert registry.service.resolve("models:/llama/1").created_by == "bob"


def test_the_actor_defaults_to_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWARD_ACTOR", raising=False)
    assert current_actor() == getpass.getuser()
    monkeypatch.setenv("MODELWARD_ACTOR", "carol")
    assert current_actor() == "carol"
    monkeypatch.setenv("MODELWARD_ACTOR", "ca\x01rol")
    with pytest.raises(InputError):
        current_actor()
