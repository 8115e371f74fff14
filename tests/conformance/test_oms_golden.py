"""Golden signatures made by released model_signing versions verify, and fail after tampering."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from modelward.errors import SignatureFormatError, SignatureMismatchError, VerificationError
from modelward.services.bundle_signing import BundleMismatchError, verify_bundle
from modelward.signing.keys import Verifier, load_public_key

KEY_SETS = [
    "v0.3.1-elliptic-key",
    "v1.0.0-elliptic-key",
    "v1.0.1-elliptic-key",
    "v1.1.0-elliptic-key",
]
CERT_SETS = ["v1.0.1-certificate", "v1.1.0-certificate"]
SINGLE_FILE = {"v0.3.1-elliptic-key", "v1.0.0-elliptic-key"}


def _copy(conformance_dir: Path, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(conformance_dir / "oms" / name, target)
    for path in target.rglob("*"):
        path.chmod(0o644)
    return target


def _verify(conformance_dir: Path, folder: Path, name: str) -> None:
    keys = conformance_dir / "oms" / "keys"
    model = folder / "signme-1" if name in SINGLE_FILE else folder
    if name in CERT_SETS:
        verify_bundle(
            model,
            certificate_chain=[keys / "ca-cert.pem"],
            signature_path=folder / "model.sig",
            ignore_paths=[folder / "ignore-me"],
        )
    else:
        verify_bundle(
            model,
            public_key=Verifier(load_public_key(keys / "signing-key-pub.pem")),
            signature_path=folder / "model.sig",
            ignore_paths=[folder / "ignore-me"],
        )


@pytest.mark.parametrize("name", KEY_SETS + CERT_SETS)
def test_golden_set_verifies(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    _verify(conformance_dir, _copy(conformance_dir, name, tmp_path), name)


@pytest.mark.parametrize("name", KEY_SETS + CERT_SETS)
def test_changed_file_fails(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    folder = _copy(conformance_dir, name, tmp_path)
    target = folder / "signme-1"
    target.write_bytes(target.read_bytes() + b"!")
    expected = "the model file" if name in SINGLE_FILE else "signme-1"
    with pytest.raises(BundleMismatchError) as info:
        _verify(conformance_dir, folder, name)
    assert info.value.reasons[0].startswith(f"file changed: {expected}")


@pytest.mark.parametrize("name", sorted(set(KEY_SETS + CERT_SETS) - SINGLE_FILE))
def test_removed_file_fails(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    folder = _copy(conformance_dir, name, tmp_path)
    (folder / "signme-2").unlink()
    with pytest.raises(BundleMismatchError) as info:
        _verify(conformance_dir, folder, name)
    assert info.value.reasons == ["file removed: signme-2"]


@pytest.mark.parametrize("name", KEY_SETS + CERT_SETS)
def test_altered_payload_fails(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    folder = _copy(conformance_dir, name, tmp_path)
    sig = folder / "model.sig"
    bundle = json.loads(sig.read_text())
    payload = bytearray(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload[payload.index(b"sha256")] = ord("S")  # one byte of the signed payload
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises((SignatureMismatchError, SignatureFormatError)):
        _verify(conformance_dir, folder, name)


@pytest.mark.parametrize("name", KEY_SETS + CERT_SETS)
def test_altered_signature_fails(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    folder = _copy(conformance_dir, name, tmp_path)
    sig = folder / "model.sig"
    bundle = json.loads(sig.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-3] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(VerificationError):
        _verify(conformance_dir, folder, name)


def test_certificate_set_needs_the_right_root(conformance_dir: Path, tmp_path: Path) -> None:
    folder = _copy(conformance_dir, "v1.1.0-certificate", tmp_path)
    keys = conformance_dir / "oms" / "keys"
    with pytest.raises(SignatureMismatchError, match="untrusted"):
        verify_bundle(
            folder,
            certificate_chain=[keys / "signing-key-cert.pem"],
            signature_path=folder / "model.sig",
        )


def test_key_set_refuses_a_certificate_check(conformance_dir: Path, tmp_path: Path) -> None:
    folder = _copy(conformance_dir, "v1.1.0-elliptic-key", tmp_path)
    keys = conformance_dir / "oms" / "keys"
    with pytest.raises(SignatureMismatchError, match="bare key"):
        verify_bundle(
            folder, certificate_chain=[keys / "ca-cert.pem"], signature_path=folder / "model.sig"
        )
