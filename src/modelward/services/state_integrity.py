"""Verify before trust, for state rows: anchoring writes in the ledger and checking reads.

Writing: `anchored_append` appends a state change's ledger event with an anchor (table, key,
row digest) for every row it wrote or removed, and records the event's seq on those rows.

Reading, cheap (no replay): `row_problem` checks a row against the sealed event at its
`ledger_seq` (event leaf recomputed, seal checked, an anchor with exactly this table, key and
digest present); `current_row_problem` also checks that no later sealed event about the same
subject anchors another value, so a stale or re-pointed "current" row fails too. The `trusted_*`
lookups use them: a row that fails is reported (VerificationError, or a denial naming it) and
never trusted.

Auditing, complete: `state_integrity_check` replays every trusted event's anchors and names
each current row that was edited, inserted or deleted behind modelward's back, and each version
whose push event is in the ledger but whose row is gone.

The ledger keeper (seal key) comes with the connection (`Database.connection_info`); without
it nothing verifies, and every check fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.anchors import Anchor, anchors_in, with_anchors
from modelward.errors import NotFoundError, StorageError, VerificationError
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.services.subject_watch import sealed_subject_events
from modelward.storage.metadata.gate_repository import ApprovalRow, GateRepository
from modelward.storage.metadata.ledger_repository import (
    SEALER_INFO,
    LedgerEvent,
    LedgerRepository,
)
from modelward.storage.metadata.registry_repository import RegistryRepository
from modelward.storage.metadata.state_repository import (
    ANCHORED_TABLES,
    StateRepository,
    StateRow,
)

BASELINE_ACTION = "ledger.baseline"
_WHAT = {
    "users": "user",
    "aliases": "alias",
    "attestations": "attestation",
    "gate_policies": "policy row",
    "gate_approvals": "approval",
    "gate_decisions": "decision",
    "gate_releases": "release",
    "gate_drills": "drill",
    "registry_settings": "setting row",
    "api_tokens": "token",
    "oidc_issuers": "OIDC issuer",
    "oidc_mappings": "OIDC claim mapping",
    "canaries": "canary",
    "canary_verdicts": "canary verdict",
    "alert_webhooks": "webhook",
}


def describe(table: str, key: str) -> str:
    """How a row is named in messages: `user mallory`, `alias llama@prod`, `release rel-3`."""
    return f"{_WHAT.get(table, table)} {key}"


def keeper_of(conn: Connection) -> LedgerKeeper | None:
    keeper = conn.info.get(SEALER_INFO)
    return keeper if isinstance(keeper, LedgerKeeper) else None


def anchor_of(row: StateRow) -> Anchor:
    return Anchor.of_row(row.table, row.key, row.fields)


# -- writing --------------------------------------------------------------------------------


def anchored_append(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    at: datetime,
    rows: Iterable[tuple[str, str]] = (),
    removed: Iterable[tuple[str, str]] = (),
) -> LedgerEvent:
    """Append the event of a state change that wrote `rows` and removed `removed` (each a
    (table, key)), anchoring each, and record the event's seq on the rows written."""
    state = StateRepository(conn)
    written = list(dict.fromkeys(rows))
    anchors = []
    for table, key in written:
        row = state.row(table, key)
        if row is None:
            raise StorageError(f"{describe(table, key)} was not written; nothing was changed")
        anchors.append(anchor_of(row))
    anchors += [Anchor.removed(table, key) for table, key in removed]
    event = LedgerRepository(conn).append(
        actor, action, subject, with_anchors(details, anchors), at
    )
    for table, key in written:
        state.set_ledger_seq(table, key, event.seq)
    return event


# -- cheap checks ---------------------------------------------------------------------------


def row_problem(conn: Connection, row: StateRow) -> str | None:
    """Why `row` is not anchored by the sealed event at its `ledger_seq`, or None."""
    what = describe(row.table, row.key)
    keeper = keeper_of(conn)
    if keeper is None:
        return f"{what}: cannot be checked without the ledger key"
    if row.ledger_seq is None:
        return f"{what}: no ledger event anchors it (written behind modelward's back?)"
    try:
        event = LedgerRepository(conn).event(row.ledger_seq)
    except NotFoundError:
        return f"{what}: its ledger event #{row.ledger_seq} is missing"
    problem = keeper.event_problem(event)
    if problem is not None:
        return f"{what}: {problem}"
    expected = anchor_of(row)
    for anchor in anchors_in(event.details):
        if (anchor.table, anchor.key) == (row.table, row.key):
            if anchor.digest == expected.digest:
                return None
            return f"{what}: differs from what its ledger event #{event.seq} recorded"
    return f"{what}: its ledger event #{event.seq} does not anchor it"


def current_row_problem(conn: Connection, row: StateRow, subject: str) -> str | None:
    """`row_problem`, and: no later sealed event about `subject` anchors another row of the
    same table (or another value of this row), so `row` is the current one."""
    problem = row_problem(conn, row)
    if problem is not None:
        return problem
    keeper = keeper_of(conn)
    assert keeper is not None and row.ledger_seq is not None
    expected = anchor_of(row)
    try:
        later = sealed_subject_events(conn, keeper, subject, row.ledger_seq)
    except VerificationError as exc:
        return f"{describe(row.table, row.key)}: {exc}"
    for event in later:
        for anchor in anchors_in(event.details):
            if anchor.table == row.table and anchor != expected:
                return (
                    f"{describe(row.table, row.key)}: is not the current one; ledger event "
                    f"#{event.seq} recorded a later change of {subject}"
                )
    return None


def verify_row(conn: Connection, table: str, key: str) -> str | None:
    """`row_problem` for the row `key` of `table`; a missing row is a problem too."""
    row = StateRepository(conn).row(table, key)
    if row is None:
        return f"{describe(table, key)} does not exist"
    return row_problem(conn, row)


def verify_current(conn: Connection, table: str, key: str, subject: str) -> str | None:
    """`current_row_problem` for the row `key` of `table`."""
    row = StateRepository(conn).row(table, key)
    if row is None:
        return f"{describe(table, key)} does not exist"
    return current_row_problem(conn, row, subject)


def _untrusted(problem: str) -> VerificationError:
    return VerificationError(f"{problem}; it is not trusted")


def trusted_role(conn: Connection, actor: str) -> tuple[str | None, str | None]:
    """(the actor's role, None) when their users row checks out; (None, None) when there is no
    row; (None, problem) when the row fails its ledger check (treated as absent)."""
    row = StateRepository(conn).row("users", actor)
    if row is None:
        return None, None
    problem = current_row_problem(conn, row, f"user:{actor}")
    if problem is not None:
        return None, problem
    return str(row.fields["role"]), None


def check_current_policy(conn: Connection, environment: str) -> None:
    """Refuse (VerificationError) when the environment's current policy row fails its check;
    no row at all is fine (the default policy applies)."""
    state = StateRepository(conn)
    key = state.policy_key(environment)
    if key is None:
        latest = _latest_anchored_key(conn, f"policy:{environment}", "gate_policies")
        if latest is not None:
            raise _untrusted(f"the policy of {environment} (row {latest}) was deleted")
        return
    problem = verify_current(conn, "gate_policies", key, f"policy:{environment}")
    if problem is not None:
        raise _untrusted(f"the policy of {environment}: {problem}")


def trusted_approval_keys(
    conn: Connection, version_id: int, environment: str | None = None
) -> tuple[set[str], list[str]]:
    """(keys of the approvals that check out and whose reviewer is a trusted user, problems of
    the others): an approval that fails is dropped (fail closed)."""
    state = StateRepository(conn)
    good: set[str] = set()
    problems: list[str] = []
    for key in state.approval_keys(version_id, environment):
        row = state.row("gate_approvals", key)
        problem = "" if row is None else row_problem(conn, row)
        if row is not None and problem is None:
            reviewer = str(row.fields["reviewer"])
            role, user_problem = trusted_role(conn, reviewer)
            if role is None:
                problem = user_problem or f"approval {key}: {reviewer!r} is not a user"
        if problem is None:
            good.add(key)
        else:
            problems.append(problem or describe("gate_approvals", key))
    return good, problems


def trusted_approvals(
    conn: Connection, version_id: int, environment: str | None = None
) -> list[ApprovalRow]:
    """The approvals of a version that check out (`trusted_approval_keys`); the others are
    dropped, so a rule counting approvals fails closed."""
    good, _ = trusted_approval_keys(conn, version_id, environment)
    return [a for a in GateRepository(conn).approvals(version_id, environment) if str(a.id) in good]


def check_alias(conn: Connection, model: str, alias: str) -> None:
    """Refuse (VerificationError naming the alias) unless the alias row checks out as the
    current value of `models:/MODEL@ALIAS`."""
    key = f"{model}@{alias}"
    problem = verify_current(conn, "aliases", key, f"models:/{key}")
    if problem is not None:
        raise _untrusted(f"models:/{key}: {problem}")


def check_releases(conn: Connection, model: str, environment: str) -> None:
    """Refuse (VerificationError) unless every release row of the model in the environment
    checks out and the newest is the current one the ledger knows."""
    keys = StateRepository(conn).release_keys(model, environment)
    subject = f"models:/{model}@{environment}"
    for index, key in enumerate(keys):
        if index == len(keys) - 1:
            problem = verify_current(conn, "gate_releases", key, subject)
        else:
            problem = verify_row(conn, "gate_releases", key)
        if problem is not None:
            raise _untrusted(f"{subject}: {problem}")
    if not keys and _latest_anchored_key(conn, subject, "gate_releases") is not None:
        raise _untrusted(f"{subject}: its release rows were deleted")


def latest_drill_problem(conn: Connection, model: str, environment: str) -> str | None:
    """Why the newest drill row of the model in the environment cannot be trusted (edited,
    inserted, or an older row left after newer ones were deleted), or None (also when there is
    no drill at all)."""
    subject = f"models:/{model}@{environment}"
    key = StateRepository(conn).latest_drill_key(model, environment)
    if key is None:
        try:
            latest = _latest_anchored_key(conn, subject, "gate_drills")
        except VerificationError as exc:
            return str(exc)
        return None if latest is None else f"{describe('gate_drills', latest)} was deleted"
    return verify_current(conn, "gate_drills", key, subject)


def trusted_setting(conn: Connection, name: str) -> str | None:
    """The current value (canonical JSON text) of registry setting `name`, None when never set;
    VerificationError when its row fails (subject `setting:NAME`)."""
    state = StateRepository(conn)
    key = state.latest_setting_key(name)
    subject = f"setting:{name}"
    if key is None:
        if _latest_anchored_key(conn, subject, "registry_settings") is not None:
            raise _untrusted(f"setting {name}: its rows were deleted")
        return None
    row = state.row("registry_settings", key)
    assert row is not None
    problem = current_row_problem(conn, row, subject)
    if problem is not None:
        raise _untrusted(f"setting {name}: {problem}")
    return str(row.fields["value"])


def _latest_anchored_key(conn: Connection, subject: str, table: str) -> str | None:
    """The key of the newest row of `table` a trusted event about `subject` anchors."""
    keeper = keeper_of(conn)
    if keeper is None:
        raise VerificationError(f"{subject}: cannot be checked without the ledger key")
    for event in sealed_subject_events(conn, keeper, subject):
        for anchor in anchors_in(event.details):
            if anchor.table == table and anchor.digest is not None:
                return anchor.key
    return None


# -- the audit ------------------------------------------------------------------------------


def trusted_events(
    conn: Connection, keeper: LedgerKeeper, size: int | None = None
) -> Iterable[LedgerEvent]:
    """The events whose anchors count, in order: from a sealed first event (`registry.init`) or
    the sealed `ledger.baseline` (events before it were trusted at upgrade and anchor nothing),
    each whose fields and seal check out."""
    started = False
    for event in LedgerRepository(conn).events(0, size):
        if keeper.event_problem(event) is not None:
            continue
        if not started:
            started = event.seq == 0 or event.action == BASELINE_ACTION
            if not started:
                continue
        yield event


def state_integrity_check(conn: Connection) -> list[str]:
    """Audit hook (a `StateCheck`): every current row of every anchored table against the
    replay of the ledger's anchors, and every pushed version against its row."""
    keeper = keeper_of(conn)
    if keeper is None:
        return ["registry state cannot be checked without the ledger key"]
    expected: dict[tuple[str, str], str] = {}
    pushed: dict[tuple[str, int], int] = {}
    pinned: dict[str, tuple[object, int]] = {}
    for event in trusted_events(conn, keeper):
        _track_pinned_keys(event, pinned)
        for anchor in anchors_in(event.details):
            if anchor.digest is None:
                expected.pop((anchor.table, anchor.key), None)
            else:
                expected[(anchor.table, anchor.key)] = anchor.digest
        details = event.details
        if event.action == "version.push":
            model, number = details.get("model"), details.get("version")
            if isinstance(model, str) and isinstance(number, int):
                pushed[(model, number)] = event.seq
        if event.action == "ledger.baseline":
            for entry in details.get("versions", []):
                if isinstance(entry, list) and len(entry) == 2:
                    pushed[(str(entry[0]), int(entry[1]))] = event.seq
    problems = _compare_rows(StateRepository(conn), expected)
    info = RegistryRepository(conn).info()
    for which, (key_id, seq) in sorted(pinned.items()):
        if key_id is not None and info.get(f"{which}_key_id") != key_id:
            problems.append(
                f"the {which} key id the registry pins ({info.get(f'{which}_key_id')}) is not "
                f"the one the ledger recorded ({key_id}, event #{seq})"
            )
    present = {(r.model, r.number) for r in RegistryRepository(conn).all_versions()}
    for (model, number), seq in sorted(pushed.items()):
        if (model, number) not in present:
            problems.append(
                f"models:/{model}/{number}: the version was deleted (ledger event #{seq} "
                "recorded it)"
            )
    return problems


def _track_pinned_keys(event: LedgerEvent, pinned: dict[str, tuple[object, int]]) -> None:
    """The key ids the ledger pins: set by registry.init and ledger.baseline, moved by
    keys.rotate."""
    details = event.details
    if event.seq == 0 or event.action == BASELINE_ACTION:
        for which in ("registry", "ledger"):
            if details.get(f"{which}_key_id") is not None:
                pinned[which] = (details.get(f"{which}_key_id"), event.seq)
    elif event.action == "keys.rotate" and details.get("which") in ("registry", "ledger"):
        pinned[str(details["which"])] = (details.get("new_key_id"), event.seq)


def _compare_rows(state: StateRepository, expected: dict[tuple[str, str], str]) -> list[str]:
    problems: list[str] = []
    for table in ANCHORED_TABLES:
        seen: set[str] = set()
        for row in state.rows(table):
            what = describe(table, row.key)
            if row.key in seen:
                problems.append(f"{what}: appears twice")
                continue
            seen.add(row.key)
            digest = expected.get((table, row.key))
            if digest is None:
                problems.append(f"{what}: not in the ledger (inserted behind modelward's back)")
            elif digest != anchor_of(row).digest:
                problems.append(f"{what}: edited behind modelward's back (differs from the ledger)")
        for expected_table, key in sorted(expected):
            if expected_table == table and key not in seen:
                problems.append(f"{describe(table, key)}: deleted behind modelward's back")
    return problems


def baseline_anchors(conn: Connection) -> tuple[list[Anchor], list[tuple[str, str]]]:
    """Anchors of every current row of every anchored table (for `ledger.baseline`), and their
    (table, key)s."""
    state = StateRepository(conn)
    anchors: list[Anchor] = []
    keys: list[tuple[str, str]] = []
    for table in ANCHORED_TABLES:
        for row in state.rows(table):
            anchors.append(anchor_of(row))
            keys.append((table, row.key))
    return anchors, keys


def set_ledger_seqs(conn: Connection, keys: Sequence[tuple[str, str]], seq: int) -> None:
    state = StateRepository(conn)
    for table, key in keys:
        state.set_ledger_seq(table, key, seq)
