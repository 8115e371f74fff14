"""The shape of an evidence bundle's index predicate, checked before any of it is read.

`evidence verify` reads the index to find what to check, even when its signature fails (so it
can still name each broken link); every field it reads must therefore have the type the
exporter writes, or the verifier would trip over a crafted index. `index_shape_problems` lists
what is wrong (empty: every field `evidence_verify` reads has its type). Checks types only:
whether the values are true is what the rest of the verification is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_LISTED = 5

_ROW_KINDS = ("attestation", "approval", "decision", "release")
_NAMES = {
    "str": "a string",
    "int": "an integer",
    "dict": "an object",
    "list": "a list",
    "str|None": "a string or null",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(
    where: str, data: Mapping[str, Any], key: str, kind: str, *, optional: bool = False
) -> list[str]:
    if key not in data:
        return [] if optional else [f"{where} has no {key!r}"]
    value = data[key]
    ok = {
        "str": isinstance(value, str),
        "int": _is_int(value),
        "dict": isinstance(value, dict),
        "list": isinstance(value, list),
        "str|None": value is None or isinstance(value, str),
    }[kind]
    return [] if ok else [f"{where}: {key!r} is not {_NAMES[kind]}"]


def _row_problems(where: str, entry: Mapping[str, Any]) -> list[str]:
    problems = _field(where, entry, "row", "dict") + _field(where, entry, "event", "int")
    row = entry.get("row")
    if isinstance(row, dict):
        problems += _field(f"{where} row", row, "table", "str")
        problems += _field(f"{where} row", row, "key", "str")
        problems += _field(f"{where} row", row, "fields", "dict")
    return problems


def _member_problems(where: str, entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where} is not an object"]
    problems = _field(where, entry, "name", "str") + _field(where, entry, "kind", "str")
    kind = entry.get("kind")
    if kind in _ROW_KINDS:
        problems += _row_problems(where, entry)
    if kind == "attestation":
        problems += _field(where, entry, "attestation_kind", "str")
    elif kind == "dataset-manifest":
        problems += _field(where, entry, "uri", "str") + _field(where, entry, "event", "int")
        problems += _field(where, entry, "governance_events", "list", optional=True)
        events = entry.get("governance_events", [])
        if isinstance(events, list) and not all(_is_int(seq) for seq in events):
            problems.append(f"{where}: 'governance_events' are not all integers")
    elif kind in ("ledger-event", "inclusion-proof"):
        problems += _field(where, entry, "seq", "int")
    elif kind == "consistency":
        problems += _field(where, entry, "old_size", "int")
    elif kind == "facts":
        problems += _field(where, entry, "decision", "str")
    elif kind == "manifest":
        problems += _field(where, entry, "event", "int")
    return problems


def index_shape_problems(predicate: Mapping[str, Any]) -> list[str]:
    """What in the index predicate does not have the type the exporter writes (at most a few)."""
    problems: list[str] = []
    problems += _field("the index", predicate, "registry", "dict")
    problems += _field("the index", predicate, "version", "dict")
    problems += _field("the index", predicate, "checkpoint", "dict")
    problems += _field("the index", predicate, "release", "str|None", optional=True)
    problems += _field("the index", predicate, "exported_at", "str", optional=True)
    registry = predicate.get("registry")
    if isinstance(registry, dict):
        problems += _field("the index's registry", registry, "origin", "str")
    version = predicate.get("version")
    if isinstance(version, dict):
        for key, kind in (
            ("uri", "str"),
            ("root_digest", "str"),
            ("model", "str"),
            ("number", "int"),
            ("event", "int"),
        ):
            problems += _field("the index's version", version, key, kind)
    checkpoint = predicate.get("checkpoint")
    if isinstance(checkpoint, dict):
        problems += _field("the index's checkpoint", checkpoint, "name", "str")
        problems += _field("the index's checkpoint", checkpoint, "size", "int", optional=True)
    for key in ("members", "unsigned_approvals", "omitted"):
        problems += _field("the index", predicate, key, "list", optional=key != "members")
    members = predicate.get("members")
    for number, entry in enumerate(members if isinstance(members, list) else []):
        problems += _member_problems(f"member entry {number}", entry)
        if len(problems) > MAX_LISTED:
            break
    unsigned = predicate.get("unsigned_approvals", [])
    for number, entry in enumerate(unsigned if isinstance(unsigned, list) else []):
        where = f"unsigned approval {number}"
        problems += (
            _row_problems(where, entry)
            if isinstance(entry, dict)
            else [f"{where} is not an object"]
        )
    omitted = predicate.get("omitted", [])
    for number, entry in enumerate(omitted if isinstance(omitted, list) else []):
        where = f"omitted entry {number}"
        if not isinstance(entry, dict):
            problems.append(f"{where} is not an object")
            continue
        problems += _field(where, entry, "what", "str") + _field(where, entry, "reason", "str")
    return problems[:MAX_LISTED]
