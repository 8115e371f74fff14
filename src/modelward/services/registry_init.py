"""Creating a registry: its folder, its signing and ledger keys, its tables (Alembic), its first
admin and the first ledger event (sealed, pinning the registry and ledger key ids). Running it
again on an existing registry upgrades the schema and changes nothing else; it never makes new
keys for a registry that exists (keys missing or different: refused), and never re-initialises
an empty or damaged registry.db. Upgrading a registry from before event seals writes one sealed
`ledger.baseline` event anchoring every existing row.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from modelward.core import merkle
from modelward.core.anchors import with_anchors
from modelward.errors import (
    InputError,
    KeyFormatError,
    PathError,
    SignatureMismatchError,
    StorageError,
)
from modelward.services.context import (
    LEDGER_KEY,
    REGISTRY_KEY,
    blob_url,
    check_pinned_keys,
    current_actor,
    database_url,
    home_dir,
    utc_now,
)
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.services.state_integrity import (
    BASELINE_ACTION,
    anchored_append,
    baseline_anchors,
    set_ledger_seqs,
)
from modelward.signing.keys import (
    PrivateKey,
    generate_private_key,
    key_hint,
    load_private_key,
    write_key_pair,
)
from modelward.storage.blobs.url import open_blob_store
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import (
    SEALER_INFO,
    LedgerEvent,
    LedgerRepository,
    format_time,
)
from modelward.storage.metadata.migrations import upgrade_to_head
from modelward.storage.metadata.registry_repository import RegistryRepository

_SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class InitResult:
    home: Path
    database_url: str
    blob_url: str
    created: bool
    admin: str
    registry_key_id: str
    ledger_key_id: str = ""
    baseline_seq: int | None = None  # the ledger.baseline written by this upgrade


def initialize_registry(home: Path | None = None) -> InitResult:
    """Create the registry, or upgrade an existing one's schema (see the module docstring)."""
    home = home or home_dir()
    actor = current_actor()
    url = database_url(home)
    _refuse_unusable_database_file(url)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = home / "keys"
        keys.mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise PathError(
            f"{home}: cannot create the registry folder: {exc.strerror or exc}"
        ) from exc
    blobs_url = blob_url(home)
    blobs = open_blob_store(blobs_url)  # validates the URL; the fs store creates its folder
    database = Database(url)
    try:
        existing = _existing_info(database)
        if existing:
            registry_key, ledger_key = _existing_keys(keys, existing)
        else:
            if not (keys / REGISTRY_KEY).exists():
                write_key_pair(keys / REGISTRY_KEY, generate_private_key("ecdsa-p256"))
            if not (keys / LEDGER_KEY).exists():
                write_key_pair(keys / LEDGER_KEY, generate_private_key("ed25519"))
            registry_key, ledger_key = _load_keys(keys)
        registry_key_id = key_hint(registry_key.public_key())
        ledger_key_id = key_hint(ledger_key.public_key())
        origin = existing.get("origin") or f"modelward/{uuid.uuid4()}"
        keeper = LedgerKeeper(ledger_key, origin, blobs)
        database.connection_info[SEALER_INFO] = keeper
        with database.transaction() as conn:
            upgrade_to_head(conn)
            repo = RegistryRepository(conn)
            created = not repo.info()
            baseline = None
            if created:
                now = utc_now()
                repo.set_info("registry_id", origin.removeprefix("modelward/"))
                repo.set_info("origin", origin)
                repo.set_info("created_at", format_time(now))
                repo.set_info("registry_key_id", registry_key_id)
                repo.replace_info("ledger_key_id", ledger_key_id)
                repo.add_user(actor, "admin", format_time(now), actor)
                anchored_append(
                    conn,
                    actor,
                    "registry.init",
                    origin,
                    {
                        "registry_key_id": registry_key_id,
                        "ledger_key_id": ledger_key_id,
                        "admin": actor,
                    },
                    now,
                    rows=[("users", actor)],
                )
            else:
                baseline = write_baseline_if_needed(
                    conn, keeper, actor, registry_key_id, ledger_key_id
                )
            admin = next((n for n, r in repo.list_users() if r == "admin"), actor)
    finally:
        database.dispose()
    if url.startswith("sqlite:///"):
        db_file = Path(url[len("sqlite:///") :])
        if db_file.exists():
            os.chmod(db_file, 0o600)
    return InitResult(
        home,
        url,
        blobs_url,
        created,
        admin,
        registry_key_id,
        ledger_key_id,
        None if baseline is None else baseline.seq,
    )


def _refuse_unusable_database_file(url: str) -> None:
    """A registry.db that exists but is empty or not SQLite is refused, never re-initialised
    (the blobs and keys next to it belong to the registry it was)."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return
    path = Path(url[len("sqlite:///") :])
    if not path.exists():
        return
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise PathError(
            f"{path}: cannot read the registry database: {exc.strerror or exc}"
        ) from exc
    if not header:
        raise InputError(
            f"{path} is empty (zero bytes): the registry's database is lost or damaged; "
            "restore it from a backup, or move it away to create a new registry"
        )
    if header != _SQLITE_HEADER:
        raise InputError(
            f"{path} is not an SQLite database: restore the registry's database, or move it "
            "away to create a new registry"
        )


def _existing_info(database: Database) -> dict[str, str]:
    """The registry facts of an existing registry in the database, or {} for a new one."""
    try:
        tables = set(inspect(database.engine).get_table_names())
    except Exception as exc:  # the driver's own error types vary by dialect
        raise StorageError(f"cannot reach the registry database: {exc}") from exc
    if "registry_info" not in tables:
        return {}
    with database.read() as conn:
        return RegistryRepository(conn).info()


def _load_keys(keys: Path) -> tuple[PrivateKey, Ed25519PrivateKey]:
    registry_key = load_private_key(keys / REGISTRY_KEY)
    ledger_key = load_private_key(keys / LEDGER_KEY)
    if not isinstance(ledger_key, Ed25519PrivateKey):
        raise KeyFormatError(f"{keys / LEDGER_KEY}: the ledger key must be Ed25519")
    return registry_key, ledger_key


def _existing_keys(keys: Path, info: dict[str, str]) -> tuple[PrivateKey, Ed25519PrivateKey]:
    """The keys of an existing registry: present and the pinned ones, or InputError (init
    never makes new keys for a registry that has some)."""
    missing = [name for name in (REGISTRY_KEY, LEDGER_KEY) if not (keys / name).is_file()]
    if missing:
        raise InputError(
            f"a registry already exists in the database (registry key {info.get('registry_key_id')}"
            f", ledger key {info.get('ledger_key_id', 'not pinned')}) but {', '.join(missing)} "
            f"is missing from {keys}: copy the registry's keys there; init does not make new ones"
        )
    registry_key, ledger_key = _load_keys(keys)
    try:
        check_pinned_keys(
            info, key_hint(registry_key.public_key()), key_hint(ledger_key.public_key())
        )
    except SignatureMismatchError as exc:
        raise InputError(f"a registry already exists in the database: {exc}") from exc
    return registry_key, ledger_key


def write_baseline_if_needed(
    conn: Connection,
    keeper: LedgerKeeper,
    actor: str,
    registry_key_id: str,
    ledger_key_id: str,
) -> LedgerEvent | None:
    """On a registry from before event seals: one sealed `ledger.baseline` event recording the
    tree size and root and anchoring every existing row ("trusted at upgrade"); pins the keys."""
    ledger = LedgerRepository(conn)
    size = ledger.size()
    if size == 0 or _sealed_trust_start(ledger, keeper):
        if "ledger_key_id" not in RegistryRepository(conn).info():
            RegistryRepository(conn).replace_info("ledger_key_id", ledger_key_id)
        return None
    positions = merkle.frontier_positions(size)
    root = merkle.root_from_nodes(size, merkle.reader_from_mapping(ledger.nodes(positions)))
    anchors, keys = baseline_anchors(conn)
    repo = RegistryRepository(conn)
    versions = [[v.model, v.number] for v in repo.all_versions()]
    details = with_anchors(
        {
            "size": size,
            "root_hash": root.hex(),
            "registry_key_id": registry_key_id,
            "ledger_key_id": ledger_key_id,
            "versions": versions,
            "note": "events before this one were trusted at upgrade",
        },
        anchors,
    )
    event = ledger.append(actor, BASELINE_ACTION, "ledger", details, utc_now())
    set_ledger_seqs(conn, keys, event.seq)
    repo.replace_info("ledger_key_id", ledger_key_id)
    return event


def _sealed_trust_start(ledger: LedgerRepository, keeper: LedgerKeeper) -> bool:
    for event in ledger.events():
        if keeper.event_problem(event) is None:
            return event.seq == 0 or event.action == BASELINE_ACTION
    return False
