"""Where the registry lives and how to open it: `$MODELWARD_HOME` (SQLite + blobs + keys), or
`MODELWARD_DATABASE_URL` / `MODELWARD_BLOB_URL` when set; the acting user; the registry's keys.

Opening pins the keys: the registry and ledger key ids recorded at init (`registry_info`) must be
those of the keys found, or the registry is refused naming both. It also puts the ledger keeper
(event seals, automatic checkpoints) on the database's connections. Opens and creates; performs
no registry operation itself.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import inspect

from modelward.errors import (
    InputError,
    KeyFormatError,
    ModelwardError,
    RegistryNotFoundError,
    SignatureMismatchError,
    StorageError,
)
from modelward.services.ledger_keeper import (
    SETTING_CHECKPOINT_EVENTS,
    SETTING_CHECKPOINT_SECONDS,
    LedgerKeeper,
)
from modelward.signing.keys import PublicKey, Signer, key_hint, load_private_key
from modelward.storage.blobs import BlobStore
from modelward.storage.blobs.url import open_blob_store
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import SEALER_INFO

REGISTRY_KEY = "registry.key"
LEDGER_KEY = "ledger.key"


def home_dir() -> Path:
    value = os.environ.get("MODELWARD_HOME")
    return Path(value).expanduser() if value else Path.home() / ".modelward"


def database_url(home: Path) -> str:
    return os.environ.get("MODELWARD_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}"


def blob_url(home: Path) -> str:
    return os.environ.get("MODELWARD_BLOB_URL") or str(home / "blobs")


def current_actor() -> str:
    actor = os.environ.get("MODELWARD_ACTOR")
    if actor is None:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError) as exc:
            raise InputError("cannot tell who you are: set MODELWARD_ACTOR") from exc
    actor = actor.strip()
    if not actor or len(actor) > 200 or any(ord(c) < 32 for c in actor):
        raise InputError("MODELWARD_ACTOR must be a non-empty printable name of at most 200 chars")
    return actor


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RegistryContext:
    home: Path
    database: Database
    blobs: BlobStore
    signer: Signer
    ledger_key: ed25519.Ed25519PrivateKey
    origin: str
    keeper: LedgerKeeper | None = None
    # public keys replaced by `keys rotate`, by kind ("registry", "ledger") and key id
    retired_keys: dict[str, dict[str, PublicKey]] = field(default_factory=dict)

    @property
    def registry_key_id(self) -> str:
        return key_hint(self.signer.public_key)

    @property
    def ledger_key_id(self) -> str:
        return key_hint(self.ledger_key.public_key())

    def close(self) -> None:
        self.database.dispose()


def _is_sqlite_without_file(url: str) -> bool:
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return False
    return not Path(url[len("sqlite:///") :]).exists()


def _schema_problem(database: Database) -> str | None:
    from sqlalchemy import text

    from modelward.storage.metadata.migrations import SCHEMA_HEAD

    try:
        with database.read() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # the driver's own error types vary by dialect
        revision = None
    if revision == SCHEMA_HEAD:
        return None
    return (
        f"the registry's database schema is at revision {revision or 'unknown'}, this modelward "
        f"needs {SCHEMA_HEAD}: run `modelward init` to upgrade it"
    )


def open_registry(home: Path | None = None) -> RegistryContext:
    """Open an initialised registry, or say how to create one."""
    home = home or home_dir()
    url = database_url(home)
    hint = "create one with `modelward init`"
    if _is_sqlite_without_file(url):
        raise RegistryNotFoundError(f"no registry at {home}: {hint}")
    database = Database(url)
    try:
        tables = set(inspect(database.engine).get_table_names())
    except Exception as exc:  # the driver's own error types vary by dialect
        database.dispose()
        raise StorageError(f"cannot reach the registry database: {exc}") from exc
    if "registry_info" not in tables:
        database.dispose()
        raise RegistryNotFoundError(f"no registry in the database at {home}: {hint}")
    schema_problem = _schema_problem(database)
    if schema_problem:
        database.dispose()
        raise RegistryNotFoundError(schema_problem)
    keys = home / "keys"
    if not (keys / REGISTRY_KEY).is_file() or not (keys / LEDGER_KEY).is_file():
        database.dispose()
        raise RegistryNotFoundError(f"the registry's keys are missing from {keys}: {hint}")
    try:
        signer = Signer(load_private_key(keys / REGISTRY_KEY))
        ledger_key = load_private_key(keys / LEDGER_KEY)
        if not isinstance(ledger_key, ed25519.Ed25519PrivateKey):
            raise KeyFormatError(f"{keys / LEDGER_KEY}: the ledger key must be Ed25519")
        from modelward.storage.metadata.registry_repository import RegistryRepository

        with database.read() as conn:
            info = RegistryRepository(conn).info()
        if "ledger_key_id" not in info:
            raise RegistryNotFoundError(
                "this registry's ledger is from before event seals and pinned keys: run "
                "`modelward init` to upgrade it (it writes a sealed ledger.baseline event)"
            )
        check_pinned_keys(info, key_hint(signer.public_key), key_hint(ledger_key.public_key()))
        origin = info.get("origin", "modelward")
        blobs = open_blob_store(blob_url(home))
    except BaseException:
        database.dispose()
        raise
    keeper = LedgerKeeper(ledger_key, origin, blobs)
    database.connection_info[SEALER_INFO] = keeper
    _configure_checkpoints(database, keeper)
    from modelward.services.key_rotation import retired_public_keys

    retired = {which: retired_public_keys(home, info, which) for which in ("registry", "ledger")}
    return RegistryContext(home, database, blobs, signer, ledger_key, origin, keeper, retired)


def check_pinned_keys(info: dict[str, str], registry_key_id: str, ledger_key_id: str) -> None:
    """Refuse keys other than the ones the registry pinned (SignatureMismatchError naming both
    ids). A registry from before ledger keys were pinned has no `ledger_key_id` yet."""
    for what, pinned, found in (
        ("registry", info.get("registry_key_id"), registry_key_id),
        ("ledger", info.get("ledger_key_id"), ledger_key_id),
    ):
        if pinned is not None and pinned != found:
            raise SignatureMismatchError(
                f"the {what} key in keys/ has id {found}, but this registry pinned {pinned}: "
                "these are not the registry's keys (restore its keys, or rotate them with "
                "`modelward keys rotate`)"
            )


def _configure_checkpoints(database: Database, keeper: LedgerKeeper) -> None:
    """Apply the checkpoint interval settings (registry state), when set and trusted."""
    import json

    from modelward.services.state_integrity import trusted_setting

    try:
        with database.read() as conn:
            events = trusted_setting(conn, SETTING_CHECKPOINT_EVENTS)
            seconds = trusted_setting(conn, SETTING_CHECKPOINT_SECONDS)
    except ModelwardError:
        return  # an untrusted setting keeps the defaults; `audit verify` names it
    if events is not None:
        value = json.loads(events)
        if isinstance(value, int) and value >= 1:
            keeper.every_events = value
    if seconds is not None:
        value = json.loads(seconds)
        if isinstance(value, (int, float)) and value >= 0:
            keeper.every_seconds = float(value)
