"""Key rotation: replace the registry's signing key or its ledger key, as a ledgered event.

`rotate_key` (admin only) makes a new key pair and appends a `keys.rotate` event sealed with the
current ledger key, carrying the new public key and a signature by the *old* key over the new
key id; it pins the new id in `registry_info`. The old public key is kept in `keys/retired/`
(named by its id, and its id listed in `registry_info`), so versions and checkpoints signed
before the rotation still verify. Rotating the ledger key first checks the whole ledger, then
appends a `ledger.baseline` sealed with the new key: the events before it are covered by the
root it records, and every current row is anchored again.

The new key is written next to the old one (`*.key.new`) before the database transaction and
moved into place after it commits. Does not parse arguments or render.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core.canonical import canonical_json
from modelward.core.roles import Action
from modelward.errors import InputError, VerificationError
from modelward.services.context import (
    LEDGER_KEY,
    REGISTRY_KEY,
    RegistryContext,
    current_actor,
    utc_now,
)
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.services.state_integrity import baseline_anchors, set_ledger_seqs
from modelward.services.users import require
from modelward.signing.keys import (
    PrivateKey,
    PublicKey,
    Signer,
    generate_private_key,
    key_hint,
    load_public_key,
    public_key_pem,
    write_key_pair,
)
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_repository import LedgerEvent, LedgerRepository
from modelward.storage.metadata.registry_repository import RegistryRepository

ROTATION_ACTION = "keys.rotate"
ROTATION_TYPE = "modelward.key-rotation/v1"
RETIRED_DIR = "retired"
_KEYS = {"registry": (REGISTRY_KEY, "ecdsa-p256"), "ledger": (LEDGER_KEY, "ed25519")}


@dataclass(frozen=True)
class RotationResult:
    which: str
    old_key_id: str
    new_key_id: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "which": self.which,
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "seq": self.seq,
        }


def rotation_statement(origin: str, which: str, old_key_id: str, new_key_id: str) -> bytes:
    """The bytes the old key signs: which key, from which id to which id, in which registry."""
    return canonical_json(
        {
            "type": ROTATION_TYPE,
            "origin": origin,
            "which": which,
            "old_key_id": old_key_id,
            "new_key_id": new_key_id,
        }
    )


def retired_public_keys(home: Path, info: dict[str, str], which: str) -> dict[str, PublicKey]:
    """The retired public keys of `which` key whose ids the registry lists (files in
    `keys/retired/` that it does not list are ignored)."""
    listed = [i for i in info.get(f"retired_{which}_key_ids", "").split(",") if i]
    found: dict[str, PublicKey] = {}
    for key_id in listed:
        path = home / "keys" / RETIRED_DIR / f"{which}-{key_id}.pub"
        if path.is_file():
            key = load_public_key(path)
            if key_hint(key) == key_id:
                found[key_id] = key
    return found


def rotate_key(context: RegistryContext, which: str, actor: str | None = None) -> RotationResult:
    """Rotate the registry key (`which="registry"`) or the ledger key (`"ledger"`)."""
    if which not in _KEYS:
        raise InputError(f"choose the key to rotate: registry or ledger, not {which!r}")
    actor = actor or current_actor()
    keys = context.home / "keys"
    filename, key_type = _KEYS[which]
    with context.database.read() as conn:
        require(conn, actor, Action.ADD_USER)
    old_signer = Signer(context.signer.private_key if which == "registry" else context.ledger_key)
    if which == "ledger":
        _refuse_unless_verified(context)
    new_key = generate_private_key(key_type)
    old_id, new_id = old_signer.keyid, key_hint(new_key.public_key())
    staged = keys / f"{filename}.new"
    staged.unlink(missing_ok=True)
    Path(f"{staged}.pub").unlink(missing_ok=True)
    write_key_pair(staged, new_key)
    retired = keys / RETIRED_DIR
    retired.mkdir(exist_ok=True, mode=0o700)
    (retired / f"{which}-{old_id}.pub").write_bytes(public_key_pem(old_signer.public_key))
    statement = rotation_statement(context.origin, which, old_id, new_id)
    try:
        event = _record_rotation(
            context, which, actor, old_signer, new_key, old_id, new_id, statement
        )
    except BaseException:
        staged.unlink(missing_ok=True)
        Path(f"{staged}.pub").unlink(missing_ok=True)
        raise
    os.replace(staged, keys / filename)
    os.replace(f"{staged}.pub", keys / f"{filename}.pub")
    return RotationResult(which, old_id, new_id, event.seq)


def _record_rotation(
    context: RegistryContext,
    which: str,
    actor: str,
    old_signer: Signer,
    new_key: PrivateKey,
    old_id: str,
    new_id: str,
    statement: bytes,
) -> LedgerEvent:
    now = utc_now()
    with context.database.transaction() as conn:
        serialize_ledger(conn)  # decides on the state it changes
        require(conn, actor, Action.ADD_USER)
        repo = RegistryRepository(conn)
        info = repo.info()
        event = LedgerRepository(conn).append(
            actor,
            ROTATION_ACTION,
            f"key:{which}",
            {
                "which": which,
                "old_key_id": old_id,
                "new_key_id": new_id,
                "new_public_key": public_key_pem(new_key.public_key()).decode("ascii"),
                "signature": base64.b64encode(old_signer.sign(statement)).decode("ascii"),
            },
            now,
        )
        retired_ids = [i for i in info.get(f"retired_{which}_key_ids", "").split(",") if i]
        repo.replace_info(f"retired_{which}_key_ids", ",".join([*retired_ids, old_id]))
        repo.replace_info(f"{which}_key_id", new_id)
        if which == "ledger":
            assert isinstance(new_key, Ed25519PrivateKey)
            _baseline_under_new_key(conn, context, new_key, actor, info, new_id)
    return event


def _refuse_unless_verified(context: RegistryContext) -> None:
    from modelward.services.audit import AuditService
    from modelward.services.state_integrity import state_integrity_check

    audit = AuditService.for_registry(context)
    report = audit.verify(state_checks=[state_integrity_check])
    if not report.ok:
        raise VerificationError(
            "the ledger does not verify, so its key is not rotated (a new baseline would "
            f"bless what changed): {report.problems[0]}"
        )


def _baseline_under_new_key(
    conn: Any,
    context: RegistryContext,
    new_key: Ed25519PrivateKey,
    actor: str,
    info: dict[str, str],
    new_id: str,
) -> None:
    from modelward.core import merkle
    from modelward.core.anchors import with_anchors
    from modelward.services.state_integrity import BASELINE_ACTION

    keeper = LedgerKeeper(new_key, context.origin, context.blobs)
    ledger = LedgerRepository(conn, sealer=keeper)
    size = ledger.size()
    positions = merkle.frontier_positions(size)
    root = merkle.root_from_nodes(size, merkle.reader_from_mapping(ledger.nodes(positions)))
    anchors, keys = baseline_anchors(conn)
    versions = [[v.model, v.number] for v in RegistryRepository(conn).all_versions()]
    details = with_anchors(
        {
            "size": size,
            "root_hash": root.hex(),
            "registry_key_id": info.get("registry_key_id"),
            "ledger_key_id": new_id,
            "versions": versions,
            "note": "events before this one are covered by this root (ledger key rotated)",
        },
        anchors,
    )
    event = ledger.append(actor, BASELINE_ACTION, "ledger", details, utc_now())
    set_ledger_seqs(conn, keys, event.seq)
