"""Which provenance fields the gate requires for "complete provenance": the registry setting
`provenance.required_fields` (set by an admin, ledgered, anchor-checked on every read).

By default every field of `COMPLETENESS_FIELDS` is required except `gpu` and `base_model`, so a
model trained on a CPU, or from scratch, can have complete provenance; a team that wants them
requires them with `modelward provenance require FIELD...`. Knows nothing of argument parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from modelward.errors import InputError
from modelward.provenance.slsa import COMPLETENESS_FIELDS
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.settings import set_in, verified_setting
from modelward.services.users import role_of
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_repository import format_time

REQUIRED_FIELDS_SETTING = "provenance.required_fields"
OPTIONAL_BY_DEFAULT = ("gpu", "base_model")
DEFAULT_REQUIRED_FIELDS: tuple[str, ...] = tuple(
    f for f in COMPLETENESS_FIELDS if f not in OPTIONAL_BY_DEFAULT
)


@dataclass(frozen=True)
class ProvenanceRequirements:
    required: tuple[str, ...]
    source: str  # "default" or "set"
    set_at: str | None = None
    set_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "optional": [f for f in COMPLETENESS_FIELDS if f not in self.required],
            "source": self.source,
            "set_at": self.set_at,
            "set_by": self.set_by,
        }


def check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    unknown = [f for f in fields if f not in COMPLETENESS_FIELDS]
    if unknown:
        raise InputError(
            f"unknown provenance field(s) {', '.join(map(repr, unknown))}; "
            f"fields are {', '.join(COMPLETENESS_FIELDS)}"
        )
    return tuple(f for f in COMPLETENESS_FIELDS if f in set(fields))


def requirements_in(conn: Connection) -> ProvenanceRequirements:
    record = verified_setting(conn, REQUIRED_FIELDS_SETTING)
    if record is None:
        return ProvenanceRequirements(DEFAULT_REQUIRED_FIELDS, "default")
    value = record.value
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise InputError("the provenance.required_fields setting is malformed")
    return ProvenanceRequirements(check_fields(value), "set", record.created_at, record.created_by)


class ProvenanceRequirementsService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def set(self, fields: Sequence[str]) -> ProvenanceRequirements:
        chosen = check_fields(fields)
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            record = set_in(
                conn,
                self.actor,
                REQUIRED_FIELDS_SETTING,
                list(chosen),
                now_text=format_time(now),
                now=now,
            )
        return ProvenanceRequirements(chosen, "set", record.created_at, record.created_by)

    def reset(self) -> ProvenanceRequirements:
        return self.set(DEFAULT_REQUIRED_FIELDS)

    def show(self) -> ProvenanceRequirements:
        with self.ctx.database.read() as conn:
            role_of(conn, self.actor)
            return requirements_in(conn)
