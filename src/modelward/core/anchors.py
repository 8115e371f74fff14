"""State anchors: how a ledger event records the exact row a state change wrote.

Every state change (users and roles, policies, settings, approvals, decisions, releases,
overrides, drills, aliases, attestations) appends one ledger event whose details carry an
`anchors` list, one entry per row written or removed:

    {"table": "gate_policies", "key": "42", "digest": "sha256:…"}   # row written
    {"table": "aliases", "key": "m@champion", "digest": null}        # row removed

`digest` is `row_digest(table, key, fields)`: SHA-256 over the RFC 8785 JSON of the table
name, the row key and the row's fields (every column the row's meaning depends on). Replaying
the anchors of the ledger in order gives the digest every current row must have; a row edited,
inserted or deleted behind modelward's back no longer matches. Pure: no database, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.core.canonical import canonical_json

ANCHORS_FIELD = "anchors"


def row_digest(table: str, key: str, fields: Mapping[str, Any]) -> str:
    """The `sha256:` digest a row is anchored by in the ledger."""
    document = {"table": table, "key": key, "fields": dict(fields)}
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class Anchor:
    table: str
    key: str
    digest: str | None  # None: the row was removed

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "key": self.key, "digest": self.digest}

    @classmethod
    def of_row(cls, table: str, key: str, fields: Mapping[str, Any]) -> Anchor:
        return cls(table, key, row_digest(table, key, fields))

    @classmethod
    def removed(cls, table: str, key: str) -> Anchor:
        return cls(table, key, None)


def anchors_in(details: Mapping[str, Any]) -> list[Anchor]:
    """The well-formed anchors of an event's details; malformed entries are skipped (a row
    whose anchor is malformed is then unanchored, which the checks report)."""
    raw = details.get(ANCHORS_FIELD)
    if not isinstance(raw, list):
        return []
    found = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        table, key, digest = entry.get("table"), entry.get("key"), entry.get("digest")
        if (
            isinstance(table, str)
            and isinstance(key, str)
            and (digest is None or isinstance(digest, str))
        ):
            found.append(Anchor(table, key, digest))
    return found


def with_anchors(details: Mapping[str, Any], anchors: Iterable[Anchor]) -> dict[str, Any]:
    """`details` with the anchors added (to those already there)."""
    out = dict(details)
    existing = list(out.get(ANCHORS_FIELD) or [])
    out[ANCHORS_FIELD] = existing + [a.to_dict() for a in anchors]
    return out


def replay(events_details: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """The digest each (table, key) must have after the given events, in ledger order."""
    expected: dict[tuple[str, str], str] = {}
    for details in events_details:
        for anchor in anchors_in(details):
            if anchor.digest is None:
                expected.pop((anchor.table, anchor.key), None)
            else:
                expected[(anchor.table, anchor.key)] = anchor.digest
    return expected
