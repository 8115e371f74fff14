"""Trusted signing keys: the uploader and trainer keys whose signatures the gate counts, kept as
the registry setting `trusted_keys` (set by an admin, ledgered, anchor-checked on every read).

`modelward keys trust PUBKEY --name NAME` adds a key, `keys untrust KEY_ID|NAME` removes it,
`keys trusted` lists them. The registry's own key is never a trusted uploader key: the gate's
`signature-verified` fact means "signed by someone the registry trusts", not "stored by the
registry". Knows nothing of argument parsing or rendering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.names import validate_name
from modelward.errors import InputError, KeyFormatError, NotFoundError
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.settings import set_in, verified_value
from modelward.services.users import role_of
from modelward.signing.keys import Verifier, key_hint, public_key_from_pem, public_key_pem
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_repository import format_time

TRUSTED_KEYS_SETTING = "trusted_keys"
MAX_PUBLIC_KEY_BYTES = 16 * 1024


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    name: str
    public_key_pem: str
    trusted_at: str
    trusted_by: str

    def verifier(self) -> Verifier:
        return Verifier(public_key_from_pem(self.public_key_pem.encode("ascii"), self.name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "public_key": self.public_key_pem,
            "trusted_at": self.trusted_at,
            "trusted_by": self.trusted_by,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustedKey:
        try:
            key = cls(
                key_id=str(data["key_id"]),
                name=str(data["name"]),
                public_key_pem=str(data["public_key"]),
                trusted_at=str(data["trusted_at"]),
                trusted_by=str(data["trusted_by"]),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"a trusted key entry is malformed: {exc}") from exc
        if key.verifier().keyid != key.key_id:
            raise InputError(f"trusted key {key.name!r}: its key id does not match its key")
        return key


def trusted_keys_in(conn: Connection) -> list[TrustedKey]:
    """The trusted keys, from the verified setting (VerificationError when it was tampered)."""
    raw = verified_value(conn, TRUSTED_KEYS_SETTING, {"keys": []})
    entries = raw.get("keys") if isinstance(raw, Mapping) else None
    if not isinstance(entries, list):
        raise InputError("the trusted_keys setting is malformed")
    return [TrustedKey.from_dict(e) for e in entries if isinstance(e, Mapping)]


class TrustedKeyService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def trust(self, public_key_pem_bytes: bytes, name: str) -> TrustedKey:
        validate_name(name, "key name")
        if len(public_key_pem_bytes) > MAX_PUBLIC_KEY_BYTES:
            raise KeyFormatError("the public key file is larger than 16 KiB")
        key = public_key_from_pem(public_key_pem_bytes, "public key")
        key_id = key_hint(key)
        if key_id == self.ctx.signer.keyid:
            raise InputError(
                "that is the registry's own key: it signs everything stored, so it cannot also "
                "vouch for uploads; trust the key the uploader or trainer signs with"
            )
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            keys = trusted_keys_in(conn)
            for existing in keys:
                if existing.key_id == key_id:
                    raise InputError(f"key {key_id[:16]}… is already trusted as {existing.name!r}")
                if existing.name == name:
                    raise InputError(f"a trusted key is already named {name!r}")
            added = TrustedKey(
                key_id=key_id,
                name=name,
                public_key_pem=public_key_pem(key).decode("ascii"),
                trusted_at=format_time(now),
                trusted_by=self.actor,
            )
            value = {"keys": [k.to_dict() for k in [*keys, added]]}
            set_in(
                conn, self.actor, TRUSTED_KEYS_SETTING, value, now_text=format_time(now), now=now
            )
        return added

    def untrust(self, key_id_or_name: str) -> TrustedKey:
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            keys = trusted_keys_in(conn)
            matches = [
                k
                for k in keys
                if k.name == key_id_or_name
                or (len(key_id_or_name) >= 8 and k.key_id.startswith(key_id_or_name))
            ]
            if not matches:
                raise NotFoundError(f"no trusted key is named or has the id {key_id_or_name!r}")
            if len(matches) > 1:
                raise InputError(f"{key_id_or_name!r} matches several trusted keys; give more")
            removed = matches[0]
            value = {"keys": [k.to_dict() for k in keys if k.key_id != removed.key_id]}
            set_in(
                conn, self.actor, TRUSTED_KEYS_SETTING, value, now_text=format_time(now), now=now
            )
        return removed

    def list(self) -> list[TrustedKey]:
        with self.ctx.database.read() as conn:
            role_of(conn, self.actor)
            return trusted_keys_in(conn)
