"""The SQL of state integrity: every row of every ledger-anchored table as (key, fields).

A state row is what a ledger anchor covers (`core.anchors`): `key` names the row within its table
(a user's name, `MODEL@ALIAS`, a release id, otherwise the row id) and `fields` are the columns
its meaning depends on, with long texts replaced by their SHA-256 and the version a row refers
to written as `MODEL/N`. `ledger_seq` is the row's claim of which event anchors it; nothing here
checks anything. Bound to one connection; never commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

from modelward.errors import InputError
from modelward.storage.metadata.auth_tables import api_tokens, oidc_issuers, oidc_mappings
from modelward.storage.metadata.canary_tables import alert_webhooks, canaries, canary_verdicts
from modelward.storage.metadata.gate_tables import (
    gate_approvals,
    gate_decisions,
    gate_drills,
    gate_policies,
    gate_releases,
)
from modelward.storage.metadata.registry_tables import (
    aliases,
    attestations,
    models,
    registry_settings,
    users,
    versions,
)

ANCHORED_TABLES = (
    "users",
    "aliases",
    "attestations",
    "gate_policies",
    "gate_approvals",
    "gate_decisions",
    "gate_releases",
    "gate_drills",
    "registry_settings",
    "api_tokens",
    "oidc_issuers",
    "oidc_mappings",
    "canaries",
    "canary_verdicts",
    "alert_webhooks",
)


@dataclass(frozen=True)
class StateRow:
    table: str
    key: str
    fields: dict[str, Any]
    ledger_seq: int | None


def _sha256(text: str | None) -> str | None:
    if text is None:
        return None
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


_version_models = models.alias("version_models")


def _version_join(table: Any) -> Any:
    return table.outerjoin(versions, versions.c.id == table.c.version_id).outerjoin(
        _version_models, _version_models.c.id == versions.c.model_id
    )


def _version_ref(row: Row[Any]) -> str | None:
    name, number = row.v_model, row.v_number
    return None if name is None or number is None else f"{name}/{int(number)}"


@dataclass(frozen=True)
class _Spec:
    query: Callable[[], Select[Any]]
    key_of: Callable[[Row[Any]], str]
    fields_of: Callable[[Row[Any]], dict[str, Any]]
    where_key: Callable[[str], ColumnElement[bool]]
    table: Any
    order: Any


def _versioned(table: Any, *columns: Any) -> Select[Any]:
    return select(
        *columns,
        table.c.ledger_seq,
        _version_models.c.name.label("v_model"),
        versions.c.number.label("v_number"),
    ).select_from(_version_join(table))


def _alias_where(key: str) -> ColumnElement[bool]:
    model, sep, alias = key.rpartition("@")
    if not sep:
        model, alias = "", ""  # matches nothing: names are never empty
    return (models.c.name == model) & (aliases.c.alias == alias)


def _id_where(column: Any) -> Callable[[str], ColumnElement[bool]]:
    def where(key: str) -> ColumnElement[bool]:
        # a key that is no id (or no ASCII number a database integer holds) matches nothing
        number = int(key) if key.isascii() and key.isdigit() and len(key) < 19 else -1
        result: ColumnElement[bool] = column == number
        return result

    return where


_SPECS: dict[str, _Spec] = {
    "users": _Spec(
        query=lambda: select(
            users.c.name, users.c.role, users.c.created_at, users.c.created_by, users.c.ledger_seq
        ),
        key_of=lambda r: str(r.name),
        fields_of=lambda r: {
            "name": r.name,
            "role": r.role,
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=lambda key: users.c.name == key,
        table=users,
        order=users.c.name,
    ),
    "aliases": _Spec(
        query=lambda: select(
            models.c.name.label("model"),
            aliases.c.alias,
            aliases.c.updated_at,
            aliases.c.updated_by,
            aliases.c.ledger_seq,
            _version_models.c.name.label("v_model"),
            versions.c.number.label("v_number"),
            versions.c.root_digest,
        ).select_from(_version_join(aliases).join(models, models.c.id == aliases.c.model_id)),
        key_of=lambda r: f"{r.model}@{r.alias}",
        fields_of=lambda r: {
            "model": r.model,
            "alias": r.alias,
            "version": _version_ref(r),
            "root_digest": r.root_digest,
            "updated_at": r.updated_at,
            "updated_by": r.updated_by,
        },
        where_key=_alias_where,
        table=aliases,
        order=(models.c.name, aliases.c.alias),
    ),
    "attestations": _Spec(
        query=lambda: _versioned(
            attestations,
            attestations.c.id,
            attestations.c.kind,
            attestations.c.document,
            attestations.c.digest,
            attestations.c.created_at,
            attestations.c.created_by,
        ),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "version": _version_ref(r),
            "kind": r.kind,
            "digest": r.digest,
            "document": _sha256(r.document),
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(attestations.c.id),
        table=attestations,
        order=attestations.c.id,
    ),
    "gate_policies": _Spec(
        query=lambda: select(*gate_policies.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "environment": r.environment,
            "digest": r.digest,
            "text": _sha256(r.text),
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(gate_policies.c.id),
        table=gate_policies,
        order=gate_policies.c.id,
    ),
    "gate_approvals": _Spec(
        query=lambda: _versioned(
            gate_approvals,
            gate_approvals.c.id,
            gate_approvals.c.environment,
            gate_approvals.c.reviewer,
            gate_approvals.c.comment,
            gate_approvals.c.sign_off,
            gate_approvals.c.created_at,
        ),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "version": _version_ref(r),
            "environment": r.environment,
            "reviewer": r.reviewer,
            "comment": r.comment,
            "sign_off": bool(r.sign_off),
            "created_at": r.created_at,
        },
        where_key=_id_where(gate_approvals.c.id),
        table=gate_approvals,
        order=gate_approvals.c.id,
    ),
    "gate_decisions": _Spec(
        query=lambda: _versioned(
            gate_decisions,
            *(c for c in gate_decisions.c if c.name not in ("ledger_seq", "version_id")),
        ),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "version": _version_ref(r),
            "environment": r.environment,
            "allowed": bool(r.allowed),
            "overridden": bool(r.overridden),
            "policy_digest": r.policy_digest,
            "facts_digest": r.facts_digest,
            "decision_digest": r.decision_digest,
            "envelope": _sha256(r.envelope),
            "facts": _sha256(r.facts),
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(gate_decisions.c.id),
        table=gate_decisions,
        order=gate_decisions.c.id,
    ),
    "gate_releases": _Spec(
        query=lambda: _versioned(
            gate_releases,
            *(c for c in gate_releases.c if c.name not in ("ledger_seq", "version_id")),
        ),
        key_of=lambda r: str(r.release_id),
        fields_of=lambda r: {
            "release_id": r.release_id,
            "model": r.model,
            "environment": r.environment,
            "version": _version_ref(r),
            "kind": r.kind,
            "record": _sha256(r.record),
            "state_digest": r.state_digest,
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=lambda key: gate_releases.c.release_id == key,
        table=gate_releases,
        order=gate_releases.c.seq,
    ),
    "gate_drills": _Spec(
        query=lambda: select(*gate_drills.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "model": r.model,
            "environment": r.environment,
            "passed": bool(r.passed),
            "report": _sha256(r.report),
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(gate_drills.c.id),
        table=gate_drills,
        order=gate_drills.c.id,
    ),
    "registry_settings": _Spec(
        query=lambda: select(*registry_settings.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "key": r.key,
            "value": r.value,
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(registry_settings.c.id),
        table=registry_settings,
        order=registry_settings.c.id,
    ),
    "api_tokens": _Spec(
        query=lambda: select(*api_tokens.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "user": r.user_name,
            "secret_sha256": r.secret_sha256,
            "scopes": r.scopes,
            "model_pattern": r.model_pattern,
            "created_at": r.created_at,
            "created_by": r.created_by,
            "expires_at": r.expires_at,
            "revoked_at": r.revoked_at,
        },  # last_used_at is bookkeeping, written without an event
        where_key=lambda key: api_tokens.c.id == key,
        table=api_tokens,
        order=(api_tokens.c.created_at, api_tokens.c.id),
    ),
    "oidc_issuers": _Spec(
        query=lambda: select(*oidc_issuers.c),
        key_of=lambda r: str(r.issuer),
        fields_of=lambda r: {
            "issuer": r.issuer,
            "audience": r.audience,
            "jwks_url": r.jwks_url,
            "jwks": _sha256(r.jwks),
            "algorithms": r.algorithms,
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=lambda key: oidc_issuers.c.issuer == key,
        table=oidc_issuers,
        order=oidc_issuers.c.id,
    ),
    "oidc_mappings": _Spec(
        query=lambda: select(*oidc_mappings.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "issuer": r.issuer,
            "claims": r.claims,
            "user": r.user_name,
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(oidc_mappings.c.id),
        table=oidc_mappings,
        order=oidc_mappings.c.id,
    ),
    "canaries": _Spec(
        query=lambda: select(*canaries.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "model": r.model,
            "environment": r.environment,
            "candidate_version": int(r.candidate_version),
            "baseline_version": int(r.baseline_version),
            "baseline_release_id": r.baseline_release_id,
            "plan": _sha256(r.plan),
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(canaries.c.id),
        table=canaries,
        order=canaries.c.id,
    ),
    "canary_verdicts": _Spec(
        query=lambda: select(*canary_verdicts.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "canary_id": int(r.canary_id),
            "verdict": r.verdict,
            "statement_digest": r.statement_digest,
            "envelope": _sha256(r.envelope),
            "acted": r.acted,
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(canary_verdicts.c.id),
        table=canary_verdicts,
        order=canary_verdicts.c.id,
    ),
    "alert_webhooks": _Spec(
        query=lambda: select(*alert_webhooks.c),
        key_of=lambda r: str(r.id),
        fields_of=lambda r: {
            "name": r.name,
            "url": r.url,
            "key_id": r.key_id,
            "secret": _sha256(r.secret),
            "enabled": bool(r.enabled),
            "created_at": r.created_at,
            "created_by": r.created_by,
        },
        where_key=_id_where(alert_webhooks.c.id),
        table=alert_webhooks,
        order=alert_webhooks.c.id,
    ),
}


def _spec(table: str) -> _Spec:
    try:
        return _SPECS[table]
    except KeyError:
        raise InputError(f"{table!r} is not a ledger-anchored table") from None


def _state_row(table: str, spec: _Spec, row: Row[Any]) -> StateRow:
    seq = row.ledger_seq
    return StateRow(table, spec.key_of(row), spec.fields_of(row), None if seq is None else int(seq))


class StateRepository:
    """Reads the anchored tables as state rows and records which event anchors a row."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def rows(self, table: str) -> Iterator[StateRow]:
        """Every row of `table`, in insertion (or name) order."""
        spec = _spec(table)
        order = spec.order if isinstance(spec.order, tuple) else (spec.order,)
        for row in self._conn.execute(spec.query().order_by(*order)):
            yield _state_row(table, spec, row)

    def row(self, table: str, key: str) -> StateRow | None:
        spec = _spec(table)
        found = self._conn.execute(spec.query().where(spec.where_key(key)).limit(1)).first()
        return None if found is None else _state_row(table, spec, found)

    def set_ledger_seq(self, table: str, key: str, seq: int) -> None:
        """Record that event `seq` anchors the row `key` of `table`."""
        spec = _spec(table)
        condition: ColumnElement[bool]
        if table == "aliases":
            model, _, alias = key.rpartition("@")
            model_id = select(models.c.id).where(models.c.name == model).scalar_subquery()
            condition = (aliases.c.model_id == model_id) & (aliases.c.alias == alias)
        else:
            condition = _direct_where(table, key)
        self._conn.execute(update(spec.table).where(condition).values(ledger_seq=seq))

    def latest_setting_key(self, name: str) -> str | None:
        """The key (row id) of the current value of registry setting `name`."""
        found = self._conn.execute(
            select(registry_settings.c.id)
            .where(registry_settings.c.key == name)
            .order_by(registry_settings.c.id.desc())
            .limit(1)
        ).scalar()
        return None if found is None else str(found)

    def release_keys(self, model: str, environment: str) -> list[str]:
        """The release ids of `model` in `environment`, oldest first."""
        rows = self._conn.execute(
            select(gate_releases.c.release_id)
            .where(gate_releases.c.model == model, gate_releases.c.environment == environment)
            .order_by(gate_releases.c.seq)
        )
        return [str(r) for (r,) in rows]

    def policy_key(self, environment: str) -> str | None:
        """The key (row id) of the environment's current policy row."""
        found = self._conn.execute(
            select(gate_policies.c.id)
            .where(gate_policies.c.environment == environment)
            .order_by(gate_policies.c.id.desc())
            .limit(1)
        ).scalar()
        return None if found is None else str(found)

    def latest_drill_key(self, model: str, environment: str) -> str | None:
        """The key (row id) of the newest drill of `model` in `environment`."""
        found = self._conn.execute(
            select(gate_drills.c.id)
            .where(gate_drills.c.model == model, gate_drills.c.environment == environment)
            .order_by(gate_drills.c.id.desc())
            .limit(1)
        ).scalar()
        return None if found is None else str(found)

    def approval_keys(self, version_id: int, environment: str | None = None) -> list[str]:
        query = select(gate_approvals.c.id).where(gate_approvals.c.version_id == version_id)
        if environment is not None:
            query = query.where(gate_approvals.c.environment == environment)
        return [str(r) for (r,) in self._conn.execute(query.order_by(gate_approvals.c.id))]

    def new_row_keys(self, table: str, after_key: int) -> list[str]:
        """Keys of rows of an id-keyed table with an id above `after_key` (rows just written)."""
        spec = _spec(table)
        column = spec.table.c.id
        rows = self._conn.execute(select(column).where(column > after_key).order_by(column))
        return [str(r) for (r,) in rows]

    def max_id(self, table: str) -> int:
        spec = _spec(table)
        top = self._conn.execute(select(func.max(spec.table.c.id))).scalar()
        return int(top or 0)


def _direct_where(table: str, key: str) -> ColumnElement[bool]:
    spec = _spec(table)
    if table == "users":
        return users.c.name == key
    if table == "gate_releases":
        return gate_releases.c.release_id == key
    return spec.where_key(key)
