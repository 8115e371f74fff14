"""Sign/verify round trips and every way a bundle or its signature can be wrong."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelward.errors import (
    ChangedDuringReadError,
    KeyFormatError,
    PathError,
    SignatureFormatError,
    SignatureMismatchError,
    SymlinkError,
)
from modelward.services.bundle_signing import (
    BundleMismatchError,
    default_signature_path,
    sign_bundle,
    verify_bundle,
)
from modelward.signing.keys import (
    Signer,
    Verifier,
    generate_private_key,
    load_private_key,
    load_public_key,
    write_key_pair,
)
from modelward.storage import model_files


def make_model(root: Path) -> Path:
    model = root / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(50_000))
    (model / "config.json").write_text('{"layers": 2}')
    (model / "sub" / "tokenizer.json").write_text("{}")
    (model / "empty").write_bytes(b"")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref")
    return model


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path)


@pytest.fixture(params=["ecdsa-p256", "ed25519"])
def signer(request: pytest.FixtureRequest) -> Signer:
    return Signer(generate_private_key(request.param))


def verifier_of(signer: Signer) -> Verifier:
    return Verifier(signer.public_key)


@pytest.mark.parametrize("hash_type", ["sha256", "blake3"])
def test_round_trip(model: Path, signer: Signer, hash_type: str) -> None:
    result = sign_bundle(model, signer, hash_type=hash_type)
    assert result.signature_path == default_signature_path(model)
    assert {f.name for f in result.manifest.files} == {
        "weights.bin",
        "config.json",
        "sub/tokenizer.json",
        "empty",
    }
    verified = verify_bundle(model, public_key=verifier_of(signer))
    assert verified.manifest.root_digest == result.manifest.root_digest
    assert verified.manifest.serialization.hash_type == hash_type


def test_blake3_large_file_matches_reference(tmp_path: Path) -> None:
    import blake3

    data = os.urandom(9 << 20)
    (tmp_path / "big").write_bytes(data)
    files = model_files.list_model_files(tmp_path)
    digest = model_files.hash_files(files, "blake3")[0]
    assert digest.digest == blake3.blake3(data).hexdigest()


def test_tampering_is_named(model: Path, signer: Signer) -> None:
    sign_bundle(model, signer)
    (model / "weights.bin").write_bytes(b"changed")
    (model / "config.json").unlink()
    (model / "extra.txt").write_text("new")
    with pytest.raises(BundleMismatchError) as info:
        verify_bundle(model, public_key=verifier_of(signer))
    diff = info.value.diff
    assert diff.added == ("extra.txt",)
    assert diff.removed == ("config.json",)
    assert [c[0] for c in diff.changed] == ["weights.bin"]
    assert any(r.startswith("file changed: weights.bin") for r in info.value.reasons)
    assert "1 added, 1 removed, 1 changed" in str(info.value)


def test_git_files_and_signature_inside_folder_are_ignored(model: Path, signer: Signer) -> None:
    inside = model / "model.sig"
    sign_bundle(model, signer, signature_path=inside)
    (model / ".git" / "HEAD").write_text("moved")
    verify_bundle(model, public_key=verifier_of(signer), signature_path=inside)
    statement = json.loads(
        base64.b64decode(json.loads(inside.read_text())["dsseEnvelope"]["payload"])
    )
    assert "model.sig" in statement["predicate"]["serialization"]["ignore_paths"]
    assert ".git" in statement["predicate"]["serialization"]["ignore_paths"]


def test_ignore_paths_are_recorded_and_reapplied(model: Path, signer: Signer) -> None:
    sign_bundle(model, signer, ignore_paths=[model / "sub"])
    (model / "sub" / "tokenizer.json").write_text("changed, but ignored")
    verify_bundle(model, public_key=verifier_of(signer))


def test_single_file_model(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"abc")
    result = sign_bundle(path, signer)
    assert [f.name for f in result.manifest.files] == ["."]
    verify_bundle(path, public_key=verifier_of(signer))
    path.write_bytes(b"abd")
    with pytest.raises(BundleMismatchError):
        verify_bundle(path, public_key=verifier_of(signer))


def test_wrong_key_is_named(model: Path, signer: Signer) -> None:
    sign_bundle(model, signer)
    other = Verifier(generate_private_key("ecdsa-p256").public_key())
    with pytest.raises(SignatureMismatchError, match="wrong key"):
        verify_bundle(model, public_key=other)


def test_payload_swapped_is_a_bad_signature(model: Path, signer: Signer, tmp_path: Path) -> None:
    result = sign_bundle(model, signer)
    bundle = json.loads(result.signature_path.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    result.signature_path.write_text(json.dumps(bundle))
    with pytest.raises(SignatureMismatchError, match="bad signature"):
        verify_bundle(model, public_key=verifier_of(signer))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"not json", "not JSON"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificat', "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"mediaType": "application/vnd.in-toto+json"}', "not a Sigstore bundle"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', "no DSSE envelope"),
    ],
)
def test_malformed_signatures(model: Path, signer: Signer, content: bytes, message: str) -> None:
    sign_bundle(model, signer)
    default_signature_path(model).write_bytes(content)
    with pytest.raises(SignatureFormatError, match=message):
        verify_bundle(model, public_key=verifier_of(signer))


def test_truncated_signature(model: Path, signer: Signer) -> None:
    result = sign_bundle(model, signer)
    data = result.signature_path.read_bytes()
    result.signature_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SignatureFormatError):
        verify_bundle(model, public_key=verifier_of(signer))


def test_missing_paths_and_empty_folder(tmp_path: Path, signer: Signer) -> None:
    with pytest.raises(PathError, match="no such file"):
        sign_bundle(tmp_path / "absent", signer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PathError, match="no files"):
        sign_bundle(tmp_path / "empty", signer)
    model = make_model(tmp_path / "x")
    with pytest.raises(PathError, match="no such signature"):
        verify_bundle(model, public_key=verifier_of(signer))


def test_symlinks_refused_by_default_and_outside_links_always(
    model: Path, signer: Signer, tmp_path: Path
) -> None:
    (model / "link").symlink_to(model / "config.json")
    with pytest.raises(SymlinkError, match="symbolic link"):
        sign_bundle(model, signer)
    result = sign_bundle(model, signer, allow_symlinks=True)
    assert "link" in {f.name for f in result.manifest.files}
    verify_bundle(model, public_key=verifier_of(signer))
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (model / "escape").symlink_to(outside)
    with pytest.raises(SymlinkError, match="outside"):
        sign_bundle(model, signer, allow_symlinks=True)


def test_symlink_loop_is_an_input_error(model: Path, signer: Signer) -> None:
    (model / "loop").symlink_to(model / "loop")
    with pytest.raises(PathError, match="loop"):
        sign_bundle(model, signer, allow_symlinks=True)


def test_special_file_is_refused(model: Path, signer: Signer) -> None:
    os.mkfifo(model / "pipe")
    with pytest.raises(PathError, match="pipe"):
        sign_bundle(model, signer)


def test_file_changing_while_hashed(
    model: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_stat = os.stat
    victim = str(model / "weights.bin")

    def shifting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)  # type: ignore[arg-type]
        if str(path) == victim:
            values = list(result)
            values[6] += 1  # st_size grew
            return os.stat_result(values)
        return result

    monkeypatch.setattr(model_files.os, "stat", shifting_stat)
    with pytest.raises(ChangedDuringReadError, match="changed while"):
        sign_bundle(model, signer)


def test_key_files(tmp_path: Path) -> None:
    key = generate_private_key("ed25519")
    pub = write_key_pair(tmp_path / "k", key, b"secret")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyFormatError, match="passphrase"):
        load_private_key(tmp_path / "k")
    assert load_private_key(tmp_path / "k", b"secret").public_key() == key.public_key()
    assert load_public_key(pub) == key.public_key()
    with pytest.raises(PathError, match="already exists"):
        write_key_pair(tmp_path / "k", key)
    (tmp_path / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nxx\n")
    with pytest.raises(KeyFormatError):
        load_public_key(tmp_path / "garbage.pem")


def test_rsa_public_key_is_the_wrong_type(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pub"
    path.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFormatError, match="unsupported key type"):
        load_public_key(path)


def test_payload_is_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    key = generate_private_key("ecdsa-p256")
    write_key_pair(tmp_path / "key", key)
    script = (
        "import sys, base64, json; from pathlib import Path;"
        "from modelward.services.bundle_signing import sign_bundle;"
        "from modelward.signing.keys import Signer, load_private_key;"
        "r = sign_bundle(Path(sys.argv[1]), Signer(load_private_key(Path(sys.argv[2]))),"
        " signature_path=Path(sys.argv[3]));"
        "print(base64.b64encode(r.bundle.envelope.payload).decode())"
    )
    payloads = set()
    for seed in ("0", "1", "12345"):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                str(model),
                str(tmp_path / "key"),
                str(tmp_path / f"s{seed}.sig"),
            ],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        payloads.add(out.stdout.strip())
    assert len(payloads) == 1
    payload = base64.b64decode(payloads.pop())
    # RFC 8785: no whitespace, keys sorted
    assert b" " not in payload
    assert payload.startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":')
