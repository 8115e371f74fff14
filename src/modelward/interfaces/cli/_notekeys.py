"""Reading the keys and files the ledger and witness commands take: a log key as a signed-note
vkey (text or file) or an Ed25519 PEM public key file; a witness vkey; a text file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelward.errors import KeyFormatError, NoteFormatError, PathError

MAX_TEXT_FILE = 4 << 20


def read_text_file(path: str, what: str) -> str:
    file = Path(path)
    try:
        if not file.is_file():
            raise PathError(f"{path}: no such {what} file")
        if file.stat().st_size > MAX_TEXT_FILE:
            raise PathError(f"{path}: too large to be a {what} file")
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PathError(f"{path}: the {what} is not UTF-8 text") from exc
    except OSError as exc:
        raise PathError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc


def log_key(value: str, origin: str | None = None) -> Any:
    """A `NoteVerifier` (from a vkey, or from a PEM key when `origin` is given) or an Ed25519
    public key (a PEM key without an origin: the checkpoint's origin names it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from modelward.core.checkpoint import NoteVerifier
    from modelward.signing.keys import public_key_from_pem

    text = _key_text(value, "key")
    if text.lstrip().startswith("-----BEGIN"):
        key = public_key_from_pem(text.encode("utf-8"), value)
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError(f"{value}: a ledger key is Ed25519")
        return key if origin is None else NoteVerifier.from_public_key(origin, key)
    return verifier_key_in(value, text)


def verifier_key_in(value: str, text: str) -> Any:
    """The signed-note `NoteVerifier` in `text` (read from `value`, a file or the key itself);
    a malformed one is a KeyFormatError naming where it came from."""
    from modelward.core.checkpoint import NoteVerifier

    try:
        return NoteVerifier.from_verifier_key(text.strip())
    except NoteFormatError as exc:
        raise KeyFormatError(f"{_source(value)}: {exc}") from exc


def _source(value: str) -> str:
    """How to name where a key came from: its file, or the start of the inline text."""
    return value if Path(value).is_file() else f"key {value[:40]!r}"


def _key_text(value: str, what: str) -> str:
    path = Path(value)
    if path.is_file():
        return read_text_file(value, what)
    if "+" in value and not path.exists():
        return value  # a NAME+ID+KEY verifier key given inline
    raise PathError(f"{value}: no such {what} file (nor a NAME+ID+KEY verifier key)")


def witness_key(value: str) -> Any:
    """A witness's `CosignerKey` from a vkey, given as text or as a file holding it."""
    from modelward.core.cosignature import CosignerKey

    text = _key_text(value, "witness key")
    try:
        return CosignerKey.from_vkey(text.strip())
    except NoteFormatError as exc:
        raise KeyFormatError(f"{_source(value)}: {exc}") from exc
