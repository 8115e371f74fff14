"""Creating a registry: its folder, its signing and ledger keys, its tables (Alembic), its first
admin and the first ledger event. Running it again on an existing registry upgrades the schema
and changes nothing else.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import PathError
from modelward.services.context import (
    LEDGER_KEY,
    REGISTRY_KEY,
    blob_url,
    current_actor,
    database_url,
    home_dir,
    utc_now,
)
from modelward.signing.keys import generate_private_key, key_hint, load_private_key, write_key_pair
from modelward.storage.blobs.url import open_blob_store
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.migrations import upgrade_to_head
from modelward.storage.metadata.registry_repository import RegistryRepository


@dataclass(frozen=True)
class InitResult:
    home: Path
    database_url: str
    blob_url: str
    created: bool
    admin: str
    registry_key_id: str


def initialize_registry(home: Path | None = None) -> InitResult:
    home = home or home_dir()
    actor = current_actor()
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = home / "keys"
        keys.mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise PathError(
            f"{home}: cannot create the registry folder: {exc.strerror or exc}"
        ) from exc
    if not (keys / REGISTRY_KEY).exists():
        write_key_pair(keys / REGISTRY_KEY, generate_private_key("ecdsa-p256"))
    if not (keys / LEDGER_KEY).exists():
        write_key_pair(keys / LEDGER_KEY, generate_private_key("ed25519"))
    registry_key = load_private_key(keys / REGISTRY_KEY)
    blobs = blob_url(home)
    open_blob_store(blobs)  # validates the URL; the fs store creates its folder
    url = database_url(home)
    database = Database(url)
    try:
        with database.transaction() as conn:
            upgrade_to_head(conn)
            repo = RegistryRepository(conn)
            created = not repo.info()
            if created:
                now = utc_now()
                registry_id = str(uuid.uuid4())
                origin = f"modelward/{registry_id}"
                repo.set_info("registry_id", registry_id)
                repo.set_info("origin", origin)
                repo.set_info("created_at", format_time(now))
                repo.set_info("registry_key_id", key_hint(registry_key.public_key()))
                repo.add_user(actor, "admin", format_time(now), actor)
                LedgerRepository(conn).append(
                    actor,
                    "registry.init",
                    origin,
                    {"registry_key_id": key_hint(registry_key.public_key()), "admin": actor},
                    now,
                )
            admin = next((n for n, r in repo.list_users() if r == "admin"), actor)
    finally:
        database.dispose()
    if url.startswith("sqlite:///"):
        db_file = Path(url[len("sqlite:///") :])
        if db_file.exists():
            os.chmod(db_file, 0o600)
    return InitResult(home, url, blobs, created, admin, key_hint(registry_key.public_key()))
