"""The registry through the real `modelward` console script, on SQLite and PostgreSQL, with blobs
on the filesystem and on S3: init, push, pull, verify and their exit codes, and the one-line
errors (exit 2) for a missing registry, bad URIs, bad names and unknown versions. Reads that need
no exit code are checked in-process on the same registry, to keep the subprocess count low."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import assert_clean_error
from tests.unit.registry.bundles import bundle_files, make_bundle

from modelward.services.bundle_signing import sign_bundle
from modelward.signing.keys import Signer, generate_private_key, write_key_pair

from .conftest import ACTOR, CliRegistry


@pytest.mark.parametrize("blob_backend", ["fs", "s3"], indirect=True)
def test_init_push_pull_verify_and_tamper(registry_env: CliRegistry, tmp_path: Path) -> None:
    reg = registry_env
    assert reg.json("init")["created"] is True
    one = make_bundle(tmp_path / "one", seed=1, weights=2)
    two = make_bundle(tmp_path / "two", seed=2)

    pushed = reg.ok("push", str(one), "--model", "llama", "--description", "base").stdout
    uri, root = pushed.split()
    assert uri == "models:/llama/1"
    again = reg.ok("push", str(one), "--model", "llama").stdout
    assert again.startswith(f"{uri} {root}") and "nothing created" in again

    with reg.service() as service:
        shown = service.show("models:/llama/1")
        assert root == f"sha256:{shown['root_digest']}"
        assert (shown["created_by"], shown["description"]) == (ACTOR, "base")
        assert "registry-signature" in {a["kind"] for a in shown["attestations"]}
        assert {f["name"] for f in shown["manifest"]["files"]} == set(bundle_files(one))
        for entry in shown["manifest"]["files"]:
            assert reg.read_blob(entry["digest"]) == bundle_files(one)[entry["name"]]
        v2 = service.push(two, "llama").version
        assert v2.number == 2
        service.set_alias("llama", "champion", 1)
        assert service.resolve(root).uri == uri
        assert [m["versions"] for m in service.list_models()] == [2]
        assert service.fsck(grace_seconds=0).ok
    assert [e.action for e in reg.audit_log()] == [
        "registry.init",
        "version.push",
        "version.push",
        "alias.set",
    ]
    assert {e.actor for e in reg.audit_log()} == {ACTOR}

    out = tmp_path / "out"
    assert reg.json("pull", "models:/llama@champion", "--out", str(out))["verified"] is True
    assert bundle_files(out) == bundle_files(one)
    assert reg.ok("verify", "models:/llama/1").stdout.startswith("verified")

    # one stored blob changes: verify, pull and audit verify all say no and name the file
    weight = next(f for f in shown["manifest"]["files"] if f["name"].endswith(".safetensors"))
    reg.tamper_blob(weight["digest"])
    result = reg.run("verify", "models:/llama/1")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert weight["name"] in result.stdout
    bad_out = tmp_path / "bad-out"
    assert_clean_error(reg.run("pull", "models:/llama/1", "--out", str(bad_out)), 1, "corrupt")
    assert not bad_out.exists()
    audit = reg.run("audit", "verify")
    assert audit.returncode == 1, (audit.stdout, audit.stderr)
    assert weight["name"] in audit.stdout
    with reg.service() as service:
        assert service.verify("models:/llama/2").ok


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_uploader_signature_kept_and_bad_one_refused(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    bundle = make_bundle(tmp_path / "bundle", seed=7)
    key = generate_private_key("ecdsa-p256")
    write_key_pair(tmp_path / "uploader.key", key)
    public = tmp_path / "uploader.key.pub"
    sig = tmp_path / "bundle.sig"
    sign_bundle(bundle, Signer(key), signature_path=sig)
    push = ("push", str(bundle), "--model", "llama", "--signature", str(sig))

    # the bundle changed after signing: refused, exit 1, nothing stored
    (bundle / "config.json").write_text('{"layers": 99}')
    assert_clean_error(reg.run(*push, "--public-key", str(public)), 1, "config.json")
    assert reg.blob_digests() == set()
    with reg.service() as service:
        assert service.list_models() == []

    sign_bundle(bundle, Signer(key), signature_path=sig)
    reg.ok(*push, "--public-key", str(public))
    with reg.service() as service:
        kinds = [a["kind"] for a in service.show("models:/llama/1")["attestations"]]
    assert "uploader-signature" in kinds and "registry-signature" in kinds


@pytest.mark.parametrize(
    "args",
    [
        ("models", "list"),
        ("show", "models:/llama/1"),
        ("pull", "models:/llama/1", "--out", "OUT"),
        ("push", "BUNDLE", "--model", "llama"),
        ("audit", "verify"),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_without_a_registry_every_command_says_how_to_create_one(
    registry_env: CliRegistry, tmp_path: Path, args: tuple[str, ...]
) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    argv = [{"OUT": str(tmp_path / "out"), "BUNDLE": str(bundle)}.get(a, a) for a in args]
    assert_clean_error(registry_env.run(*argv), 2, "modelward init")
    assert not (tmp_path / "out").exists()
    assert not registry_env.home.exists()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_empty_postgres_database_is_not_a_registry(registry_env: CliRegistry) -> None:
    assert_clean_error(registry_env.run("versions", "list", "llama"), 2, "modelward init")
    registry_env.ok("init")
    assert registry_env.json("init")["created"] is False
    with registry_env.service() as service:
        assert service.list_models() == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_input_is_a_one_line_error_and_writes_nothing(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    bundle = make_bundle(tmp_path / "bundle")
    with reg.service() as service:
        service.push(bundle, "llama")
    blobs = reg.blob_digests()
    events = len(reg.audit_log())
    out = tmp_path / "out"
    cases = [
        (("show", "llama/1"), "not a uri"),
        (("pull", "sha256:1234", "--out", str(out)), "64 lowercase hex"),
        (("pull", "models:/..@x", "--out", str(out)), "path separator"),
        (("pull", "models:/nope/1", "--out", str(out)), "no model named 'nope'"),
        (("pull", "models:/llama/7", "--out", str(out)), "has no version 7"),
        (("pull", "models:/llama@nobody", "--out", str(out)), "has no alias 'nobody'"),
        (("push", str(bundle), "--model", "../escape"), "path separator"),
        (("push", str(bundle), "--model", "bad\x01name"), "control character"),
        (("push", str(bundle), "--model", "x" * 200), "longer than 128"),
        (("push", "/dev/null", "--model", "llama"), "/dev/null"),
    ]
    for args, fragment in cases:
        result = reg.run(*args)
        assert_clean_error(result, 2, fragment)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert not out.exists()
    assert reg.blob_digests() == blobs
    assert len(reg.audit_log()) == events
    with reg.service() as service:
        assert [m["name"] for m in service.list_models()] == ["llama"]
