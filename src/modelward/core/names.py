"""Names and URIs: `models:/NAME/N`, `models:/NAME@ALIAS`, `datasets:/NAME/N`, `sha256:<root>`.

Validates and parses; resolves nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelward.errors import InvalidNameError, InvalidURIError

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_VERSION = 2**62


def validate_name(name: str, what: str = "name") -> str:
    """A model, dataset or alias name: letters, digits, `.`, `_`, `-`; starts alphanumeric."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"the {what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"the {what} is longer than {MAX_NAME_LENGTH} characters")
    if any(ch in name for ch in "/\\") or ".." in name:
        raise InvalidNameError(f"the {what} {name!r} contains a path separator or '..'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidNameError(f"the {what} {name!r} contains a control character")
    if not _NAME.fullmatch(name):
        raise InvalidNameError(
            f"the {what} {name!r} may only use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ModelURI:
    """A reference to one model version: by number, by alias, or by root digest."""

    name: str | None = None
    version: int | None = None
    alias: str | None = None
    digest: str | None = None
    kind: str = "models"

    def __str__(self) -> str:
        if self.digest is not None:
            return f"sha256:{self.digest}"
        if self.alias is not None:
            return f"{self.kind}:/{self.name}@{self.alias}"
        return f"{self.kind}:/{self.name}/{self.version}"


def is_uri(text: str) -> bool:
    return text.startswith(("models:/", "datasets:/", "sha256:"))


def parse_uri(text: str, kinds: tuple[str, ...] = ("models",)) -> ModelURI:
    if not isinstance(text, str) or not text:
        raise InvalidURIError("the URI is empty")
    if len(text) > 512:
        raise InvalidURIError("the URI is too long")
    if text.startswith("sha256:"):
        digest = text[len("sha256:") :]
        if not _HEX64.fullmatch(digest):
            raise InvalidURIError(f"{text!r}: sha256: must be followed by 64 lowercase hex digits")
        return ModelURI(digest=digest)
    for kind in kinds:
        prefix = f"{kind}:/"
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix) :]
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return ModelURI(
                name=_uri_name(name, text), alias=_uri_name(alias, text, "alias"), kind=kind
            )
        name, sep, number = rest.partition("/")
        if not sep:
            raise InvalidURIError(f"{text!r}: expected {kind}:/NAME/N or {kind}:/NAME@ALIAS")
        ascii_digits = number.isascii() and number.isdigit()  # "²" and "٣" are digits too
        if not ascii_digits or number.startswith("0") or int(number) >= _MAX_VERSION:
            raise InvalidURIError(f"{text!r}: the version must be a whole number from 1")
        return ModelURI(name=_uri_name(name, text), version=int(number), kind=kind)
    shown = " or ".join(f"{k}:/NAME/N" for k in kinds)
    raise InvalidURIError(f"{text!r} is not a URI: use {shown}, NAME@ALIAS, or sha256:<digest>")


def _uri_name(value: str, text: str, what: str = "name") -> str:
    try:
        return validate_name(value, what)
    except InvalidNameError as exc:
        raise InvalidURIError(f"{text!r}: {exc}") from exc
