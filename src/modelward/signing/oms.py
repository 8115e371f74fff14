"""The OpenSSF Model Signing (OMS) v1.0 signature format, read and written byte-compatibly with
the `model_signing` tool: a Sigstore bundle v0.3 JSON holding a DSSE envelope whose payload is an
in-toto Statement v1 with predicate `https://model_signing/signature/v1.0`.

Builds and parses bundles and checks their signatures (public key or X.509 chain). Hashing the
model and comparing manifests is the caller's job.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, pae
from modelward.core.intoto import Statement, Subject
from modelward.core.manifest import FileDigest, Manifest, Serialization
from modelward.errors import KeyFormatError, SignatureFormatError, SignatureMismatchError
from modelward.signing.keys import Signer, Verifier, check_public_key

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_ACCEPTED_MEDIA_TYPES = (BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")
MAX_SIGNATURE_BYTES = 64 << 20
_MAX_CHAIN_DEPTH = 10


def statement_for(manifest: Manifest) -> Statement:
    """The in-toto statement model_signing would write for this manifest."""
    predicate = {
        "serialization": manifest.serialization.to_dict(),
        "resources": [f.to_resource() for f in manifest.files],
    }
    subject = Subject.of(manifest.model_name, sha256=manifest.root_digest)
    return Statement(subjects=(subject,), predicate_type=PREDICATE_TYPE, predicate=predicate)


def manifest_from_statement(statement: Statement) -> Manifest:
    """The signed manifest, after checking the subject digest covers the resources."""
    if statement.predicate_type != PREDICATE_TYPE:
        raise SignatureFormatError(
            f"predicate type is {statement.predicate_type!r}, expected {PREDICATE_TYPE}"
        )
    if len(statement.subjects) != 1:
        raise SignatureFormatError("an OMS statement has exactly one subject")
    subject = statement.subjects[0]
    expected_root = subject.digest_for("sha256")
    if expected_root is None:
        raise SignatureFormatError("the statement subject has no sha256 digest")
    predicate = statement.predicate
    serialization = Serialization.from_dict(predicate.get("serialization"))
    resources = predicate.get("resources")
    if not isinstance(resources, list):
        raise SignatureFormatError("the predicate has no 'resources' list")
    try:
        files = tuple(FileDigest.from_dict(r) for r in resources)
        manifest = Manifest(subject.name, files, serialization)
    except SignatureFormatError:
        raise
    except Exception as exc:
        raise SignatureFormatError(f"the predicate's resources are malformed: {exc}") from exc
    if manifest.root_digest != expected_root:
        raise SignatureFormatError(
            f"the statement is inconsistent: subject digest {expected_root} but the resources "
            f"hash to {manifest.root_digest}"
        )
    return manifest


@dataclass(frozen=True)
class SignatureBundle:
    envelope: Envelope
    public_key_hint: str | None = None
    certificates: tuple[bytes, ...] = ()  # DER, leaf first
    media_type: str = BUNDLE_MEDIA_TYPE

    @property
    def uses_certificates(self) -> bool:
        return bool(self.certificates)

    def to_dict(self) -> dict[str, Any]:
        material: dict[str, Any]
        if self.certificates:
            material = {
                "x509CertificateChain": {
                    "certificates": [
                        {"rawBytes": base64.b64encode(c).decode("ascii")} for c in self.certificates
                    ]
                },
                "tlogEntries": [],
            }
        else:
            material = {"publicKey": {"hint": self.public_key_hint or ""}, "tlogEntries": []}
        return {
            "mediaType": self.media_type,
            "verificationMaterial": material,
            "dsseEnvelope": self.envelope.to_dict(),
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str = "signature") -> SignatureBundle:
        if not data.strip():
            raise SignatureFormatError(f"{where}: the signature file is empty")
        if len(data) > MAX_SIGNATURE_BYTES:
            raise SignatureFormatError(f"{where}: too large to be a signature bundle")
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SignatureFormatError(
                f"{where}: not JSON (truncated or not a signature bundle): {exc}"
            ) from exc
        return cls.from_dict(parsed, where)

    @classmethod
    def from_dict(cls, parsed: Any, where: str = "signature") -> SignatureBundle:
        if not isinstance(parsed, dict):
            raise SignatureFormatError(f"{where}: not a Sigstore bundle (not a JSON object)")
        media_type = parsed.get("mediaType")
        if media_type not in _ACCEPTED_MEDIA_TYPES:
            raise SignatureFormatError(
                f"{where}: not a Sigstore bundle v0.3 (mediaType is {media_type!r})"
            )
        if "dsseEnvelope" not in parsed:
            raise SignatureFormatError(f"{where}: the bundle has no DSSE envelope")
        try:
            envelope = Envelope.from_dict(parsed["dsseEnvelope"])
        except SignatureFormatError as exc:
            raise SignatureFormatError(f"{where}: {exc}") from exc
        material = parsed.get("verificationMaterial")
        if not isinstance(material, dict):
            raise SignatureFormatError(f"{where}: the bundle has no verificationMaterial")
        hint: str | None = None
        certificates: tuple[bytes, ...] = ()
        if "x509CertificateChain" in material:
            chain = material["x509CertificateChain"]
            raw = chain.get("certificates") if isinstance(chain, dict) else None
            if not isinstance(raw, list) or not raw:
                raise SignatureFormatError(f"{where}: the certificate chain is empty")
            certificates = tuple(_raw_bytes(c, where) for c in raw)
        elif "certificate" in material:
            certificates = (_raw_bytes(material["certificate"], where),)
        elif "publicKey" in material:
            key = material["publicKey"]
            if not isinstance(key, dict):
                raise SignatureFormatError(f"{where}: publicKey is not an object")
            value = key.get("hint")
            if value is not None and not isinstance(value, str):
                raise SignatureFormatError(f"{where}: publicKey.hint is not a string")
            hint = value or None
        else:
            raise SignatureFormatError(f"{where}: the bundle names neither a key nor certificates")
        return cls(
            envelope=envelope,
            public_key_hint=hint,
            certificates=certificates,
            media_type=media_type,
        )

    def statement(self) -> Statement:
        """The payload as a statement. Only trust it after `verify_with_*` succeeded."""
        if self.envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise SignatureFormatError(
                f"payload type is {self.envelope.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE}"
            )
        return Statement.from_bytes(self.envelope.payload)


def _raw_bytes(entry: Any, where: str) -> bytes:
    value = entry.get("rawBytes") if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value:
        raise SignatureFormatError(f"{where}: a certificate has no rawBytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureFormatError(f"{where}: a certificate is not valid base64") from exc


def sign_manifest(manifest: Manifest, signer: Signer) -> SignatureBundle:
    payload = statement_for(manifest).to_bytes()
    envelope = Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, signer.sign)
    return SignatureBundle(envelope=envelope, public_key_hint=signer.keyid)


def _pae_compat(payload: bytes) -> bytes:
    # model_signing 0.2 signed a mis-encoded PAE; its later releases still accept it.
    text = f"DSSEV1 {len(IN_TOTO_PAYLOAD_TYPE)} {IN_TOTO_PAYLOAD_TYPE} {len(payload)} {payload!r}"
    return text.encode("utf-8")


def _check_envelope_signature(bundle: SignatureBundle, verifier: Verifier) -> None:
    signature = bundle.envelope.signatures[0].sig
    payload = bundle.envelope.payload
    if verifier.is_valid(signature, pae(bundle.envelope.payload_type, payload)):
        return
    if verifier.is_valid(signature, _pae_compat(payload)):
        return
    raise SignatureMismatchError("bad signature: the payload does not match its signature")


def verify_with_key(bundle: SignatureBundle, verifier: Verifier) -> Statement:
    """Check the bundle was signed by `verifier`'s key; return the signed statement."""
    if bundle.uses_certificates:
        raise SignatureMismatchError(
            "wrong key: the signature was made with a certificate; verify it with "
            "--certificate-chain"
        )
    if bundle.public_key_hint is not None and bundle.public_key_hint != verifier.keyid:
        raise SignatureMismatchError(
            f"wrong key: the signature names key {bundle.public_key_hint[:16]}…, "
            f"the given public key is {verifier.keyid[:16]}…"
        )
    _check_envelope_signature(bundle, verifier)
    return bundle.statement()


def verify_with_chain(
    bundle: SignatureBundle, trusted: list[x509.Certificate]
) -> tuple[Statement, x509.Certificate]:
    """Check the bundle's leaf certificate chains to a trusted root and signed the payload."""
    if not bundle.uses_certificates:
        raise SignatureMismatchError(
            "wrong key: the signature was made with a bare key; verify it with --public-key"
        )
    try:
        chain = [x509.load_der_x509_certificate(der) for der in bundle.certificates]
    except ValueError as exc:
        raise SignatureFormatError(f"a certificate in the bundle is malformed: {exc}") from exc
    leaf = chain[0]
    _check_chain(leaf, chain[1:], trusted, at=leaf.not_valid_before_utc)
    _check_signing_usage(leaf)
    try:
        verifier = Verifier(check_public_key(leaf.public_key(), "signing certificate"))
    except KeyFormatError as exc:
        raise SignatureMismatchError(str(exc)) from exc
    _check_envelope_signature(bundle, verifier)
    return bundle.statement(), leaf


def _check_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trusted: list[x509.Certificate],
    at: datetime,
) -> None:
    if not trusted:
        raise SignatureMismatchError("no trusted certificates were given")
    trusted_der = {c.public_bytes(Encoding.DER) for c in trusted}
    pool = intermediates + trusted
    current = leaf
    for _ in range(_MAX_CHAIN_DEPTH):
        _check_validity(current, at)
        if current.public_bytes(Encoding.DER) in trusted_der and _is_self_issued(current):
            return
        issuer = _find_issuer(current, pool)
        if issuer is None:
            raise SignatureMismatchError(
                "untrusted certificate: no trusted issuer found for "
                f"'{current.subject.rfc4514_string()}'"
            )
        _check_is_ca(issuer)
        current = issuer
    raise SignatureMismatchError("the certificate chain is too long")


def _is_self_issued(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _find_issuer(cert: x509.Certificate, pool: list[x509.Certificate]) -> x509.Certificate | None:
    for candidate in pool:
        if candidate.subject != cert.issuer or candidate is cert:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise SignatureMismatchError(
            f"certificate '{cert.subject.rfc4514_string()}' was not valid at signing time"
        )


def _check_is_ca(cert: x509.Certificate) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise SignatureMismatchError(
            f"certificate '{cert.subject.rfc4514_string()}' issues others but is not a CA"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise SignatureMismatchError(
            f"certificate '{cert.subject.rfc4514_string()}' may not sign certificates"
        )


def _check_signing_usage(leaf: x509.Certificate) -> None:
    try:
        if leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return
    except x509.ExtensionNotFound:
        pass
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING in eku:
            return
    except x509.ExtensionNotFound:
        pass
    raise SignatureMismatchError("the signing certificate may not be used for signing")


def load_certificates(data: bytes, where: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyFormatError(f"{where}: not a PEM certificate file") from exc
    return certificates
