"""Signing and verifying a model bundle on local disk in the OpenSSF Model Signing format.

The use cases behind `modelward sign` and `modelward verify`: list and hash the model under the
ignore and symlink rules, build or check the OMS signature, and name every difference. Touches no
registry.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelward.core.manifest import DEFAULT_IGNORE_PATHS, Manifest, ManifestDiff, Serialization
from modelward.errors import (
    InputError,
    PathError,
    SignatureFormatError,
    SignatureMismatchError,
    VerificationError,
)
from modelward.signing.keys import Signer, Verifier
from modelward.signing.oms import (
    MAX_SIGNATURE_BYTES,
    SignatureBundle,
    load_certificates,
    manifest_from_statement,
    sign_manifest,
    verify_with_chain,
    verify_with_key,
)
from modelward.storage.model_files import ProgressCallback, hash_model, model_name_of


@dataclass(frozen=True)
class SignResult:
    signature_path: Path
    manifest: Manifest
    bundle: SignatureBundle


@dataclass(frozen=True)
class VerifyResult:
    manifest: Manifest
    signer: str  # key hint or certificate subject
    ignored: tuple[str, ...] = field(default_factory=tuple)


class BundleMismatchError(VerificationError):
    """The model on disk differs from what was signed; `diff` says how."""

    def __init__(self, diff: ManifestDiff) -> None:
        lines = diff.describe()
        counts = [
            f"{len(diff.added)} added" if diff.added else "",
            f"{len(diff.removed)} removed" if diff.removed else "",
            f"{len(diff.changed)} changed" if diff.changed else "",
        ]
        summary = ", ".join(c for c in counts if c)
        super().__init__(f"the model does not match its signature (files {summary}):")
        self.diff = diff
        self.reasons = lines


def default_signature_path(model_path: Path) -> Path:
    """`<parent>/<model name>.sig`: beside the model, never inside it."""
    absolute = Path(os.path.abspath(model_path))
    return absolute.parent / f"{model_name_of(absolute)}.sig"


def relative_ignores(model_path: Path, paths: Iterable[Path | str]) -> list[str]:
    """Paths given on the command line (relative to the working directory, or absolute) as POSIX
    paths relative to the model root; paths outside the model are dropped, as model_signing does."""
    root = Path(os.path.realpath(model_path))
    result = []
    for raw in paths:
        candidate = Path(os.path.realpath(Path(raw)))
        try:
            rel = candidate.relative_to(root)
        except ValueError:
            continue
        if str(rel) not in ("", "."):
            result.append(rel.as_posix())
    return result


def sign_bundle(
    model_path: Path,
    signer: Signer,
    *,
    signature_path: Path | None = None,
    hash_type: str = "sha256",
    ignore_paths: Sequence[Path | str] = (),
    allow_symlinks: bool = False,
    progress: ProgressCallback | None = None,
) -> SignResult:
    """Hash the model and write its OMS signature atomically to `signature_path`."""
    model_path = Path(model_path)
    target = Path(signature_path) if signature_path else default_signature_path(model_path)
    if target.is_dir():
        raise PathError(f"{target}: the signature path is a folder")
    if not target.parent.is_dir():
        raise PathError(f"{target.parent}: no such folder for the signature")
    ignores = set(DEFAULT_IGNORE_PATHS)
    if model_path.is_dir():
        ignores.update(relative_ignores(model_path, [*ignore_paths, target]))
    serialization = Serialization(
        hash_type=hash_type, allow_symlinks=allow_symlinks, ignore_paths=tuple(sorted(ignores))
    )
    manifest = hash_model(model_path, serialization, progress=progress)
    bundle = sign_manifest(manifest, signer)
    _write_atomically(target, bundle.to_json())
    return SignResult(signature_path=target, manifest=manifest, bundle=bundle)


def read_signature(signature_path: Path) -> SignatureBundle:
    try:
        if not signature_path.is_file():
            raise PathError(f"{signature_path}: no such signature file")
        if signature_path.stat().st_size > MAX_SIGNATURE_BYTES:
            raise SignatureFormatError(f"{signature_path}: too large to be a signature bundle")
        data = signature_path.read_bytes()
    except OSError as exc:
        raise PathError(f"{signature_path}: cannot read: {exc.strerror or exc}") from exc
    return SignatureBundle.from_json(data, str(signature_path))


def verify_bundle(
    model_path: Path,
    *,
    public_key: Verifier | None = None,
    certificate_chain: Sequence[Path] = (),
    signature_path: Path | None = None,
    ignore_paths: Sequence[Path | str] = (),
    progress: ProgressCallback | None = None,
) -> VerifyResult:
    """Check the signature, then re-hash the model and compare it file by file.

    Raises SignatureMismatchError (bad signature, wrong key, untrusted chain),
    BundleMismatchError (files added, removed or changed) or an InputError subclass.
    """
    model_path = Path(model_path)
    if (public_key is None) == (not certificate_chain):
        raise InputError("give exactly one of a public key or a certificate chain")
    source = Path(signature_path) if signature_path else default_signature_path(model_path)
    bundle = read_signature(source)
    if public_key is not None:
        statement = verify_with_key(bundle, public_key)
        signer = f"key {public_key.keyid}"
    else:
        trusted = []
        for pem_path in certificate_chain:
            try:
                data = Path(pem_path).read_bytes()
            except OSError as exc:
                raise PathError(f"{pem_path}: cannot read: {exc.strerror or exc}") from exc
            trusted.extend(load_certificates(data, str(pem_path)))
        statement, leaf = verify_with_chain(bundle, trusted)
        signer = f"certificate {leaf.subject.rfc4514_string()}"
    expected = manifest_from_statement(statement)
    ignores = set(DEFAULT_IGNORE_PATHS) | set(expected.serialization.ignore_paths)
    if model_path.is_dir():
        ignores.update(relative_ignores(model_path, [*ignore_paths, source]))
    serialization = Serialization(
        hash_type=expected.serialization.hash_type,
        allow_symlinks=expected.serialization.allow_symlinks,
        ignore_paths=tuple(sorted(ignores)),
    )
    actual = hash_model(model_path, serialization, progress=progress)
    diff = expected.diff_against(actual)
    if not diff.empty:
        raise BundleMismatchError(diff)
    return VerifyResult(manifest=expected, signer=signer, ignored=serialization.ignore_paths)


def _write_atomically(target: Path, data: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except OSError as exc:
        Path(temp_name).unlink(missing_ok=True)
        raise PathError(f"{target}: cannot write the signature: {exc.strerror or exc}") from exc


__all__ = [
    "BundleMismatchError",
    "SignResult",
    "SignatureMismatchError",
    "VerifyResult",
    "default_signature_path",
    "read_signature",
    "sign_bundle",
    "verify_bundle",
]
