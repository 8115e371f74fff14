"""All of the ledger's SQL: append events with their Merkle nodes, read events, nodes, checkpoints.

`LedgerRepository` works inside the caller's transaction (a `Database.transaction()` connection
for writes): the sequence number is the current size read inside that transaction; reading it
in a write transaction takes the ledger lock first (`serialize_ledger`: SQLite's `BEGIN
IMMEDIATE` already holds it, PostgreSQL takes a transaction-scoped advisory lock held to commit),
so appends are serialised and the sequence stays gap-free, and the primary key on `seq` refuses
a duplicate whatever happens. Nothing is cached between calls.

Each appended event gets a *seal* (an HMAC of its leaf hash) from a `LedgerSealer` the caller
hands in, or, by default, the one the `Database` put on the connection (`SEALER_INFO`); the
sealer is also told after every append, so it can issue a checkpoint in the same transaction.
This module holds no key: it stores what the sealer returns.

Also defines `LedgerEvent` and the canonical leaf of an event. Does not sign, verify or commit.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Select, and_, bindparam, func, insert, or_, select
from sqlalchemy.engine import Connection

from modelward.core import merkle
from modelward.core.canonical import canonical_json
from modelward.core.ledger_leaf import LEAF_TYPE as LEAF_TYPE
from modelward.core.ledger_leaf import event_leaf_data as event_leaf_data
from modelward.core.principal import bound_principal
from modelward.errors import InputError, NotFoundError, ProofError
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_tables import (
    ledger_checkpoints,
    ledger_events,
    ledger_nodes,
)

SEALER_INFO = "modelward.ledger_sealer"
DEFAULT_BATCH = 10_000
_MAX_TEXT = 4096


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a `Z`, the only time form the ledger stores."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError("ledger times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def details_digest(details_json: str) -> str:
    return "sha256:" + hashlib.sha256(details_json.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LedgerEvent:
    """One ledger entry as stored; `details_json` is the canonical JSON text of its details."""

    seq: int
    recorded_at: str
    actor: str
    action: str
    subject: str
    details_json: str
    details_digest: str
    leaf_hash: bytes
    seal: bytes | None = None

    @property
    def details(self) -> dict[str, Any]:
        value = json.loads(self.details_json)
        return value if isinstance(value, dict) else {"value": value}

    def leaf_data(self) -> bytes:
        return event_leaf_data(
            self.seq, self.recorded_at, self.actor, self.action, self.subject, self.details_digest
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "recorded_at": self.recorded_at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "details_digest": self.details_digest,
            "leaf_hash": self.leaf_hash.hex(),
            "seal": None if self.seal is None else self.seal.hex(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEvent:
        try:
            return cls(
                seq=int(data["seq"]),
                recorded_at=str(data["recorded_at"]),
                actor=str(data["actor"]),
                action=str(data["action"]),
                subject=str(data["subject"]),
                details_json=canonical_json(data["details"]).decode("utf-8"),
                details_digest=str(data["details_digest"]),
                leaf_hash=bytes.fromhex(str(data["leaf_hash"])),
                seal=None if data.get("seal") is None else bytes.fromhex(str(data["seal"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a ledger event record: {exc}") from exc


@dataclass(frozen=True)
class StoredCheckpoint:
    id: int
    size: int
    root_hash: bytes
    note: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "size": self.size,
            "root_hash": self.root_hash.hex(),
            "note": self.note,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class NewEvent:
    """An event to append; `details` must be JSON-serialisable."""

    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    recorded_at: datetime


def _check_field(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"ledger event {name} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise InputError(f"ledger event {name} is longer than {_MAX_TEXT} characters")
    return value


_EVENT_COLUMNS = (
    ledger_events.c.seq,
    ledger_events.c.recorded_at,
    ledger_events.c.actor,
    ledger_events.c.action,
    ledger_events.c.subject,
    ledger_events.c.details,
    ledger_events.c.details_digest,
    ledger_events.c.leaf_hash,
    ledger_events.c.seal,
)


def _event_from_row(row: Sequence[Any]) -> LedgerEvent:
    seal = None if row[8] is None else bytes(row[8])
    return LedgerEvent(
        int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]), seal
    )


class LedgerSealer(Protocol):
    """Seals events as they are appended and hears of every append (see the module docstring)."""

    def seal(self, leaf_hash: bytes) -> bytes: ...

    def appended(self, repo: LedgerRepository, events: Sequence[LedgerEvent]) -> None: ...


class LedgerRepository:
    """The ledger's storage, bound to one connection (and so to one transaction)."""

    def __init__(self, conn: Connection, sealer: LedgerSealer | None = None) -> None:
        self._conn = conn
        self._sealer: LedgerSealer | None = sealer or conn.info.get(SEALER_INFO)

    @property
    def connection(self) -> Connection:
        return self._conn

    # -- writing --------------------------------------------------------------------------

    def append(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any],
        recorded_at: datetime,
    ) -> LedgerEvent:
        """Append one event and the Merkle nodes it completes; call inside a write transaction.
        Reads only the size and the right-edge nodes the new leaf merges with."""
        size = self.size()
        trailing = merkle.trailing_frontier(size)
        found = self.nodes(trailing) if trailing else {}
        edge = _TrailingEdge(size, [found[pos] for pos in trailing])
        return self._insert([NewEvent(actor, action, subject, details, recorded_at)], edge)[0]

    def append_many(self, new_events: Iterable[NewEvent]) -> list[LedgerEvent]:
        """Append events in order with one round of inserts; call inside a write transaction."""
        return self._insert(new_events, self._current_edge())

    def _insert(
        self, new_events: Iterable[NewEvent], edge: merkle.CompactRange | _TrailingEdge
    ) -> list[LedgerEvent]:
        events: list[LedgerEvent] = []
        event_rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        for new in new_events:
            seq = edge.size
            recorded_at = format_time(new.recorded_at)
            actor = _check_field("actor", new.actor)
            action = _check_field("action", new.action)
            subject = _check_field("subject", new.subject)
            if not isinstance(new.details, Mapping):
                raise InputError("ledger event details must be a mapping")
            details = dict(new.details)
            principal = bound_principal()
            if principal is not None:  # server mode: who authenticated, by which token
                details["auth"] = principal.ledger_record()
            details_json = canonical_json(details).decode("utf-8")
            digest = details_digest(details_json)
            leaf = merkle.leaf_hash(
                event_leaf_data(seq, recorded_at, actor, action, subject, digest)
            )
            for level, idx, value in edge.append(leaf)[1:]:
                node_rows.append({"level": level, "idx": idx, "hash": value})
            seal = None if self._sealer is None else self._sealer.seal(leaf)
            event = LedgerEvent(
                seq, recorded_at, actor, action, subject, details_json, digest, leaf, seal
            )
            events.append(event)
            event_rows.append(
                {
                    "seq": seq,
                    "recorded_at": recorded_at,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "details": details_json,
                    "details_digest": digest,
                    "leaf_hash": leaf,
                    "seal": seal,
                }
            )
        if event_rows:
            self._conn.execute(insert(ledger_events), event_rows)
        if node_rows:
            self._conn.execute(insert(ledger_nodes), node_rows)
        if events and self._sealer is not None:
            self._sealer.appended(self, events)
        return events

    def _current_edge(self) -> merkle.CompactRange:
        # Read afresh on every call: the size is only stable inside the caller's transaction.
        size = self.size()
        positions = merkle.frontier_positions(size)
        found = self.nodes(positions)
        return merkle.CompactRange(size, [found[pos] for pos in positions])

    def record_checkpoint(
        self, size: int, root_hash: bytes, note: str, created_at: datetime
    ) -> StoredCheckpoint:
        """Store an issued checkpoint (signed-note text)."""
        created = format_time(created_at)
        result = self._conn.execute(
            insert(ledger_checkpoints)
            .values(size=size, root_hash=root_hash, note=note, created_at=created)
            .returning(ledger_checkpoints.c.id)
        )
        return StoredCheckpoint(int(result.scalar_one()), size, root_hash, note, created)

    # -- reading --------------------------------------------------------------------------

    def begin_snapshot(self) -> None:
        """Make every later read on this (fresh, read-only) connection see one snapshot, so a
        whole-log check is not confused by appends committed meanwhile. Call before any read."""
        if self._conn.dialect.name == "sqlite":
            self._conn.exec_driver_sql("BEGIN")
        else:
            self._conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def size(self) -> int:
        """The number of events: one more than the highest sequence number. In a write
        transaction it first takes the ledger lock, so the size read is the seq of the next
        append and stays so until commit."""
        serialize_ledger(self._conn)
        highest = self._conn.execute(_MAX_SEQ).scalar()
        return 0 if highest is None else int(highest) + 1

    def count(self) -> int:
        """The number of stored event rows (equals `size()` unless rows went missing)."""
        return int(self._conn.execute(select(func.count()).select_from(ledger_events)).scalar_one())

    def event(self, seq: int) -> LedgerEvent:
        row = self._conn.execute(select(*_EVENT_COLUMNS).where(ledger_events.c.seq == seq)).first()
        if row is None:
            raise NotFoundError(f"ledger event {seq} does not exist")
        return _event_from_row(row)

    def events(
        self, start: int = 0, stop: int | None = None, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[LedgerEvent]:
        """Events with start <= seq < stop in order, fetched in batches (for millions of rows)."""
        for batch in self._event_batches(start, stop, batch_size):
            yield from (_event_from_row(row) for row in batch)

    def subject_events(self, subject: str, after_seq: int = -1) -> list[LedgerEvent]:
        """The events about `subject` with seq > `after_seq`, newest first (the subject index)."""
        rows = self._conn.execute(
            select(*_EVENT_COLUMNS)
            .where(ledger_events.c.subject == subject, ledger_events.c.seq > after_seq)
            .order_by(ledger_events.c.seq.desc())
        )
        return [_event_from_row(row) for row in rows]

    def event_rows(
        self, start: int = 0, stop: int | None = None, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """Raw event rows in batches: (seq, recorded_at, actor, action, subject, details,
        details_digest, leaf_hash, seal); for whole-log verification."""
        return self._event_batches(start, stop, batch_size)

    def _event_batches(
        self, start: int, stop: int | None, batch_size: int
    ) -> Iterator[Sequence[Sequence[Any]]]:
        cursor = start
        while True:
            query = select(*_EVENT_COLUMNS).where(ledger_events.c.seq >= cursor)
            if stop is not None:
                query = query.where(ledger_events.c.seq < stop)
            rows = self._conn.execute(query.order_by(ledger_events.c.seq).limit(batch_size)).all()
            if not rows:
                return
            yield rows
            cursor = int(rows[-1][0]) + 1
            if len(rows) < batch_size:
                return

    def node(self, level: int, idx: int) -> bytes:
        """The hash of complete subtree (level, idx); level 0 is an event's leaf hash."""
        return self.nodes([(level, idx)])[(level, idx)]

    def nodes(self, positions: Iterable[merkle.Position]) -> dict[merkle.Position, bytes]:
        """Hashes of several complete subtrees in at most two queries; ProofError if any is
        missing."""
        wanted = set(positions)
        found: dict[merkle.Position, bytes] = {}
        leaves = sorted(idx for level, idx in wanted if level == 0)
        inner = sorted((level, idx) for level, idx in wanted if level > 0)
        if leaves:
            leaf_rows = self._conn.execute(_LEAVES_BY_SEQ, {"seqs": leaves})
            found.update({(0, int(seq)): bytes(value) for seq, value in leaf_rows})
        for start in range(0, len(inner), _NODES_PER_QUERY):
            chunk = inner[start : start + _NODES_PER_QUERY]
            params: dict[str, int] = {}
            for number, (level, idx) in enumerate(chunk):
                params[f"l{number}"] = level
                params[f"i{number}"] = idx
            node_rows = self._conn.execute(_nodes_statement(len(chunk)), params)
            found.update({(int(lv), int(ix)): bytes(value) for lv, ix, value in node_rows})
        missing = wanted - found.keys()
        if missing:
            level, idx = min(missing)
            raise ProofError(f"ledger tree node (level {level}, index {idx}) is missing")
        return found

    def level_nodes(
        self, level: int, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """Stored nodes of one level (above 0) as (idx, hash) rows in index order, in batches."""
        cursor = -1
        while True:
            rows = self._conn.execute(
                select(ledger_nodes.c.idx, ledger_nodes.c.hash)
                .where(ledger_nodes.c.level == level, ledger_nodes.c.idx > cursor)
                .order_by(ledger_nodes.c.idx)
                .limit(batch_size)
            ).all()
            if not rows:
                return
            yield rows
            cursor = int(rows[-1][0])
            if len(rows) < batch_size:
                return

    def node_levels(self) -> list[int]:
        """The levels (above 0) that hold at least one stored node."""
        rows = self._conn.execute(select(ledger_nodes.c.level).distinct())
        return sorted(int(level) for (level,) in rows)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self._conn.execute(
            select(*ledger_checkpoints.c)
            .order_by(ledger_checkpoints.c.size.desc(), ledger_checkpoints.c.id.desc())
            .limit(1)
        ).first()
        return None if row is None else _checkpoint_from_row(row)

    def checkpoint_at(self, size: int) -> list[StoredCheckpoint]:
        rows = self._conn.execute(
            select(*ledger_checkpoints.c)
            .where(ledger_checkpoints.c.size == size)
            .order_by(ledger_checkpoints.c.id)
        )
        return [_checkpoint_from_row(row) for row in rows]

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        rows = self._conn.execute(
            select(*ledger_checkpoints.c).order_by(ledger_checkpoints.c.id)
        ).all()
        return [_checkpoint_from_row(row) for row in rows]


class _TrailingEdge:
    """Just enough of the right edge to append one leaf: the nodes it merges with."""

    def __init__(self, size: int, trailing: list[bytes]) -> None:
        self.size = size
        self._stored = dict(zip(merkle.trailing_frontier(size), trailing, strict=True))
        self._used = False

    def append(self, new_leaf: bytes) -> list[tuple[int, int, bytes]]:
        if self._used:
            raise ProofError("a trailing edge appends exactly one leaf")
        self._used = True
        completed = merkle.nodes_completed_by_append(
            self.size, new_leaf, merkle.reader_from_mapping(self._stored)
        )
        self.size += 1
        return [(0, self.size - 1, new_leaf), *completed]


_NODES_PER_QUERY = 64
_LEAVES_BY_SEQ = select(ledger_events.c.seq, ledger_events.c.leaf_hash).where(
    ledger_events.c.seq.in_(bindparam("seqs", expanding=True))
)
_MAX_SEQ = select(func.max(ledger_events.c.seq))


@functools.cache
def _nodes_statement(count: int) -> Select[int, int, bytes]:
    """SELECT of `count` nodes by (level, idx), built once per count so it compiles once."""
    return select(ledger_nodes.c.level, ledger_nodes.c.idx, ledger_nodes.c.hash).where(
        or_(
            *(
                and_(
                    ledger_nodes.c.level == bindparam(f"l{n}"),
                    ledger_nodes.c.idx == bindparam(f"i{n}"),
                )
                for n in range(count)
            )
        )
    )


def _checkpoint_from_row(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(int(row[0]), int(row[1]), bytes(row[2]), str(row[3]), str(row[4]))
