"""Key files and the Signer/Verifier pair built on them.

ECDSA P-256 is the default because the OpenSSF `model_signing` tool can verify it; P-384 and
P-521 are read (the golden bundles use P-384); Ed25519 is offered for modelward's own records.
Private keys are written as PKCS#8 PEM with mode 0600, optionally encrypted with a passphrase.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelward.errors import (
    InputError,
    KeyFormatError,
    PathError,
    SignatureMismatchError,
)

KeyType = Literal["ecdsa-p256", "ed25519"]
KEY_TYPES: tuple[str, ...] = ("ecdsa-p256", "ed25519")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_EC_HASH: dict[int, hashes.HashAlgorithm] = {
    256: hashes.SHA256(),
    384: hashes.SHA384(),
    521: hashes.SHA512(),
}
_EC_DETAILS = {
    256: "PKIX_ECDSA_P256_SHA_256",
    384: "PKIX_ECDSA_P384_SHA_384",
    521: "PKIX_ECDSA_P521_SHA_512",
}
_MAX_KEY_FILE = 1 << 20


def generate_private_key(key_type: str = "ecdsa-p256") -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise InputError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_key_pair(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> Path:
    """Write the private key to `path` (mode 0600, never overwriting) and its public key to
    `path.pub`. Returns the public key's path."""
    pub_path = path.with_name(path.name + ".pub")
    for target in (path, pub_path):
        if target.exists() or target.is_symlink():
            raise PathError(f"{target}: already exists; refusing to overwrite a key")
    if not path.parent.is_dir():
        raise PathError(f"{path.parent}: no such directory")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key, passphrase))
        pub_path.write_bytes(public_key_pem(key.public_key()))
    except OSError as exc:
        raise PathError(f"{path}: cannot write key: {exc.strerror or exc}") from exc
    return pub_path


def _read_key_file(path: Path) -> bytes:
    try:
        if not path.is_file():
            raise PathError(f"{path}: no such key file")
        if path.stat().st_size > _MAX_KEY_FILE:
            raise KeyFormatError(f"{path}: too large to be a key file")
        return path.read_bytes()
    except OSError as exc:
        raise PathError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError as exc:
        if passphrase is None:
            raise KeyFormatError(
                f"{path}: the key is encrypted; give its passphrase in MODELWARD_KEY_PASSPHRASE"
            ) from exc
        raise KeyFormatError(
            f"{path}: the key is not encrypted but a passphrase was given"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"{path}: not a PEM private key, or wrong passphrase") from exc
    return _check_private(key, path)


def load_public_key(path: Path) -> PublicKey:
    return public_key_from_pem(_read_key_file(path), str(path))


def public_key_from_pem(data: bytes, where: str = "public key") -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"{where}: not a PEM public key") from exc
    return check_public_key(key, where)


def check_public_key(key: object, where: str = "public key") -> PublicKey:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size not in _EC_HASH:
            raise KeyFormatError(f"{where}: unsupported curve {key.curve.name}")
        return key
    raise KeyFormatError(
        f"{where}: unsupported key type {type(key).__name__}; use ECDSA (P-256/384/521) or Ed25519"
    )


def _check_private(key: object, path: Path) -> PrivateKey:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size in _EC_HASH:
        return key
    raise KeyFormatError(
        f"{path}: unsupported key type {type(key).__name__}; use ECDSA (P-256/384/521) or Ed25519"
    )


def key_hint(key: PublicKey) -> str:
    """What model_signing writes as `publicKey.hint`: hex SHA-256 of the public key's PEM."""
    return hashlib.sha256(public_key_pem(key)).hexdigest()


def key_details(key: PublicKey) -> str:
    """The Sigstore `PublicKeyDetails` name of the key."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    return _EC_DETAILS[key.curve.key_size]


@dataclass(frozen=True)
class Signer:
    """Signs bytes with a private key (ECDSA with the curve's hash, or pure Ed25519)."""

    private_key: PrivateKey

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    @property
    def keyid(self) -> str:
        return key_hint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        key = self.private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        return key.sign(data, ec.ECDSA(_EC_HASH[key.curve.key_size]))


@dataclass(frozen=True)
class Verifier:
    """Verifies signatures made by `Signer` over the same bytes."""

    public_key: PublicKey

    @property
    def keyid(self) -> str:
        return key_hint(self.public_key)

    def verify(self, signature: bytes, data: bytes) -> None:
        key = self.public_key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
            else:
                key.verify(signature, data, ec.ECDSA(_EC_HASH[key.curve.key_size]))
        except InvalidSignature as exc:
            raise SignatureMismatchError("the signature does not verify with this key") from exc

    def is_valid(self, signature: bytes, data: bytes) -> bool:
        try:
            self.verify(signature, data)
        except SignatureMismatchError:
            return False
        return True
