"""All SQL of the registry: registry facts, users, models, versions, files, attestations, aliases.

Bound to one connection (one transaction, owned by the calling service). Never commits, never
updates a version, its files or its attestations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from modelward.core.attestation_record import AttestationRecord as AttestationRecord
from modelward.core.manifest import Manifest
from modelward.errors import NotFoundError
from modelward.storage.metadata.registry_tables import (
    aliases,
    attestations,
    models,
    registry_info,
    users,
    version_files,
    versions,
)


@dataclass(frozen=True)
class VersionRecord:
    id: int
    model: str
    number: int
    root_digest: str
    manifest_json: str
    description: str
    created_at: str
    created_by: str
    ledger_seq: int

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.number}"

    def manifest(self) -> Manifest:
        return Manifest.from_dict(json.loads(self.manifest_json))

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "model": self.model,
            "version": self.number,
            "root_digest": self.root_digest,
            "description": self.description,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "ledger_seq": self.ledger_seq,
        }


_VERSION_COLUMNS = (
    versions.c.id,
    models.c.name,
    versions.c.number,
    versions.c.root_digest,
    versions.c.manifest,
    versions.c.description,
    versions.c.created_at,
    versions.c.created_by,
    versions.c.ledger_seq,
)


class RegistryRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> Connection:
        return self._conn

    # -- registry facts and users -----------------------------------------------------------

    def info(self) -> dict[str, str]:
        rows = self._conn.execute(select(registry_info.c.key, registry_info.c.value))
        return {key: value for key, value in rows}

    def replace_info(self, key: str, value: str) -> None:
        """Set a registry fact, replacing its value if it has one (pinned key ids move on
        `keys rotate`)."""
        self._conn.execute(delete(registry_info).where(registry_info.c.key == key))
        self.set_info(key, value)

    def set_info(self, key: str, value: str) -> None:
        self._conn.execute(insert(registry_info).values(key=key, value=value))

    def add_user(self, name: str, role: str, created_at: str, created_by: str) -> None:
        self._conn.execute(
            insert(users).values(name=name, role=role, created_at=created_at, created_by=created_by)
        )

    def user_role(self, name: str) -> str | None:
        return self._conn.execute(select(users.c.role).where(users.c.name == name)).scalar()

    def list_users(self) -> list[tuple[str, str]]:
        rows = self._conn.execute(select(users.c.name, users.c.role).order_by(users.c.name))
        return [(name, role) for name, role in rows]

    # -- models and versions --------------------------------------------------------------

    def model_id(self, name: str) -> int | None:
        return self._conn.execute(select(models.c.id).where(models.c.name == name)).scalar()

    def require_model_id(self, name: str) -> int:
        model_id = self.model_id(name)
        if model_id is None:
            raise NotFoundError(f"no model named {name!r}")
        return model_id

    def create_model(self, name: str, created_at: str, created_by: str) -> int:
        result = self._conn.execute(
            insert(models).values(name=name, created_at=created_at, created_by=created_by)
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def lock_model(self, name: str, created_at: str, created_by: str) -> int:
        """The id of model `name` (created if new), its row locked until the transaction ends,
        so version numbers of one model are allocated one push at a time while pushes of other
        models go on. `FOR NO KEY UPDATE` leaves the foreign-key checks of other writers (alias
        and release rows naming the model) unblocked. Two first pushes of a new model race on
        the unique name: the loser's insert is undone (savepoint) and it locks the winner's row."""
        query = select(models.c.id).where(models.c.name == name).with_for_update(key_share=True)
        found = self._conn.execute(query).scalar()
        if found is not None:
            return int(found)
        if self._conn.dialect.name == "sqlite":  # BEGIN IMMEDIATE: no other writer meanwhile
            return self.create_model(name, created_at, created_by)
        try:
            with self._conn.begin_nested():
                return self.create_model(name, created_at, created_by)
        except IntegrityError:
            found = self._conn.execute(query).scalar()
            if found is None:
                raise
            return int(found)

    def list_models(self) -> list[dict[str, Any]]:
        count = func.count(versions.c.id)
        rows = self._conn.execute(
            select(
                models.c.name,
                models.c.created_at,
                models.c.created_by,
                count,
                func.max(versions.c.number),
            )
            .select_from(models.outerjoin(versions, versions.c.model_id == models.c.id))
            .group_by(models.c.id, models.c.name, models.c.created_at, models.c.created_by)
            .order_by(models.c.name)
        )
        return [
            {"name": n, "created_at": at, "created_by": by, "versions": c, "latest": latest}
            for n, at, by, c, latest in rows
        ]

    def next_version_number(self, model_id: int) -> int:
        current = self._conn.execute(
            select(func.max(versions.c.number)).where(versions.c.model_id == model_id)
        ).scalar()
        return int(current or 0) + 1

    def find_by_root(self, model_id: int, root_digest: str) -> VersionRecord | None:
        row = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .join(models, models.c.id == versions.c.model_id)
            .where(versions.c.model_id == model_id, versions.c.root_digest == root_digest)
        ).first()
        return VersionRecord(*row) if row else None

    def insert_version(
        self,
        model_id: int,
        number: int,
        manifest: Manifest,
        manifest_json: str,
        description: str,
        created_at: str,
        created_by: str,
        ledger_seq: int,
    ) -> int:
        result = self._conn.execute(
            insert(versions).values(
                model_id=model_id,
                number=number,
                root_digest=manifest.root_digest,
                manifest=manifest_json,
                description=description,
                created_at=created_at,
                created_by=created_by,
                ledger_seq=ledger_seq,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        version_id = int(key[0])
        self._conn.execute(
            insert(version_files),
            [
                {"version_id": version_id, "name": f.name, "digest": f.digest, "size": f.size or 0}
                for f in manifest.files
            ],
        )
        return version_id

    def version(self, name: str, number: int) -> VersionRecord:
        row = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .join(models, models.c.id == versions.c.model_id)
            .where(models.c.name == name, versions.c.number == number)
        ).first()
        if row is None:
            if self.model_id(name) is None:
                raise NotFoundError(f"no model named {name!r}")
            raise NotFoundError(f"model {name!r} has no version {number}")
        return VersionRecord(*row)

    def version_by_id(self, version_id: int) -> VersionRecord:
        row = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .join(models, models.c.id == versions.c.model_id)
            .where(versions.c.id == version_id)
        ).first()
        if row is None:
            raise NotFoundError(f"no version with id {version_id}")
        return VersionRecord(*row)

    def versions_by_root(self, root_digest: str) -> list[VersionRecord]:
        rows = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .join(models, models.c.id == versions.c.model_id)
            .where(versions.c.root_digest == root_digest)
            .order_by(versions.c.id)
        )
        return [VersionRecord(*row) for row in rows]

    def list_versions(self, name: str) -> list[VersionRecord]:
        model_id = self.require_model_id(name)
        rows = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .join(models, models.c.id == versions.c.model_id)
            .where(versions.c.model_id == model_id)
            .order_by(versions.c.number)
        )
        return [VersionRecord(*row) for row in rows]

    def all_versions(self) -> Iterator[VersionRecord]:
        rows = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .join(models, models.c.id == versions.c.model_id)
            .order_by(versions.c.id)
        )
        for row in rows:
            yield VersionRecord(*row)

    def version_files(self, version_id: int) -> list[tuple[str, str, int]]:
        rows = self._conn.execute(
            select(version_files.c.name, version_files.c.digest, version_files.c.size).where(
                version_files.c.version_id == version_id
            )
        )
        return [(n, d, s) for n, d, s in rows]

    def referenced_digests(self) -> set[str]:
        """Every blob a version needs: from `version_files` and from each stored manifest (the
        manifest is what the ledger vouches for, so an edited `version_files` row can never make
        fsck delete a version's bytes)."""
        found = set(self._conn.execute(select(version_files.c.digest).distinct()).scalars())
        for text in self._conn.execute(select(versions.c.manifest)).scalars():
            try:
                manifest = json.loads(text)
                entries = manifest.get("files", []) if isinstance(manifest, dict) else []
            except ValueError:
                continue
            for entry in entries:
                digest = entry.get("digest") if isinstance(entry, dict) else None
                if isinstance(digest, str):
                    found.add(digest.removeprefix("sha256:"))
        return found

    # -- attestations -----------------------------------------------------------------------

    def add_attestation(
        self,
        version_id: int,
        kind: str,
        document: str,
        digest: str,
        created_at: str,
        created_by: str,
    ) -> int:
        result = self._conn.execute(
            insert(attestations).values(
                version_id=version_id,
                kind=kind,
                document=document,
                digest=digest,
                created_at=created_at,
                created_by=created_by,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def attestations(self, version_id: int, kind: str | None = None) -> list[AttestationRecord]:
        query = select(
            attestations.c.id,
            attestations.c.version_id,
            attestations.c.kind,
            attestations.c.document,
            attestations.c.digest,
            attestations.c.created_at,
            attestations.c.created_by,
        ).where(attestations.c.version_id == version_id)
        if kind is not None:
            query = query.where(attestations.c.kind == kind)
        return [
            AttestationRecord(*row) for row in self._conn.execute(query.order_by(attestations.c.id))
        ]

    # -- aliases ----------------------------------------------------------------------------

    def alias_target(self, name: str, alias: str) -> VersionRecord:
        row = self._conn.execute(
            select(*_VERSION_COLUMNS)
            .select_from(
                aliases.join(versions, versions.c.id == aliases.c.version_id).join(
                    models, models.c.id == aliases.c.model_id
                )
            )
            .where(models.c.name == name, aliases.c.alias == alias)
        ).first()
        if row is None:
            if self.model_id(name) is None:
                raise NotFoundError(f"no model named {name!r}")
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        return VersionRecord(*row)

    def alias_version_id(self, model_id: int, alias: str) -> int | None:
        return self._conn.execute(
            select(aliases.c.version_id).where(
                aliases.c.model_id == model_id, aliases.c.alias == alias
            )
        ).scalar()

    def set_alias(
        self, model_id: int, alias: str, version_id: int, updated_at: str, updated_by: str
    ) -> None:
        if self.alias_version_id(model_id, alias) is None:
            self._conn.execute(
                insert(aliases).values(
                    model_id=model_id,
                    alias=alias,
                    version_id=version_id,
                    updated_at=updated_at,
                    updated_by=updated_by,
                )
            )
        else:
            self._conn.execute(
                update(aliases)
                .where(aliases.c.model_id == model_id, aliases.c.alias == alias)
                .values(version_id=version_id, updated_at=updated_at, updated_by=updated_by)
            )

    def delete_alias(self, model_id: int, alias: str) -> bool:
        result = self._conn.execute(
            delete(aliases).where(aliases.c.model_id == model_id, aliases.c.alias == alias)
        )
        return bool(result.rowcount)

    def aliases_of(self, version_id: int) -> list[str]:
        return list(
            self._conn.execute(
                select(aliases.c.alias)
                .where(aliases.c.version_id == version_id)
                .order_by(aliases.c.alias)
            ).scalars()
        )

    def all_aliases(self) -> list[tuple[str, str, int]]:
        rows = self._conn.execute(
            select(models.c.name, aliases.c.alias, versions.c.number)
            .select_from(
                aliases.join(models, models.c.id == aliases.c.model_id).join(
                    versions, versions.c.id == aliases.c.version_id
                )
            )
            .order_by(models.c.name, aliases.c.alias)
        )
        return [(m, a, n) for m, a, n in rows]
