"""The Database handle: one engine, and write/read transactions that services use as their unit
of work.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
`BEGIN IMMEDIATE`, so writers are serialised by the database itself (never by a process lock).
On PostgreSQL, write transactions run concurrently (READ COMMITTED); only the ledger append is
serialised: `serialize_ledger(conn)` takes a transaction-scoped advisory lock, once, the first
time a write transaction reads the ledger's head (`LedgerRepository.size()`, so every append)
or decides on state it is about to change, and holds it until commit, so the sequence stays
gap-free and in commit order. Writes that append nothing (token last-use, job claims) never take
it; uniqueness elsewhere rests on row locks and unique constraints. Does not know any table.

`connection_info` is put into every connection's `info` (the ledger sealer travels that way to
`LedgerRepository`), and callables a transaction appends to `conn.info[AFTER_COMMIT]` run once
it has committed (publishing a checkpoint outside the database, say); they never run after a
rollback, and their errors do not undo the commit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from modelward.errors import DependencyError, StorageError

# The advisory-lock key that serialises ledger appends on PostgreSQL.
LEDGER_LOCK_KEY = 0x6D77_6C65  # "mwle"
_BUSY_TIMEOUT_MS = 30_000
AFTER_COMMIT = "modelward.after_commit"
_LEDGER_LOCK = "modelward.ledger_lock"


def serialize_ledger(conn: Connection) -> None:
    """Inside a PostgreSQL write transaction, wait for and take the ledger lock (once; it is held
    until the transaction ends). Every statement after it sees every append committed before.
    A no-op in read transactions and on SQLite, whose write transactions are serialised whole."""
    pending = conn.info.get(_LEDGER_LOCK)
    if pending is False:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LEDGER_LOCK_KEY})
        conn.info[_LEDGER_LOCK] = True


class Database:
    """Owns the engine; hands out transactions. One per process and URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.engine = _make_engine(url)
        self.connection_info: dict[str, Any] = {}

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: commits on success, rolls back on any error."""
        try:
            with self.engine.connect() as conn:
                self._prepare(conn)
                if self.is_sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.begin()
                    conn.info[_LEDGER_LOCK] = False  # not taken yet: see serialize_ledger
                try:
                    yield conn
                except BaseException:
                    conn.info.pop(_LEDGER_LOCK, None)
                    conn.rollback()
                    raise
                conn.info.pop(_LEDGER_LOCK, None)
                conn.commit()
                callbacks = conn.info.pop(AFTER_COMMIT, [])
            for callback in callbacks:
                callback()
        except OperationalError as exc:
            raise StorageError(_describe(exc)) from exc
        except DBAPIError as exc:
            raise StorageError(_describe(exc)) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (rolled back at the end)."""
        try:
            with self.engine.connect() as conn:
                self._prepare(conn)
                yield conn
                conn.rollback()
        except OperationalError as exc:
            raise StorageError(_describe(exc)) from exc
        except DBAPIError as exc:
            raise StorageError(_describe(exc)) from exc

    def _prepare(self, conn: Connection) -> None:
        conn.info.pop(AFTER_COMMIT, None)
        conn.info.pop(_LEDGER_LOCK, None)
        conn.info.update(self.connection_info)

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            # A pool keeps connections (and their WAL state) open between transactions.
            engine = create_engine(url, pool_size=4, max_overflow=8)
            event.listen(engine, "connect", _configure_sqlite)
            # let BEGIN IMMEDIATE be issued by us, not pysqlite's implicit BEGIN
            event.listen(engine, "begin", lambda conn: None)
            return engine
        if url.startswith("postgresql"):
            try:
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise DependencyError(
                    "PostgreSQL support needs psycopg: pip install 'modelward[postgres]'"
                ) from exc
            return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot open database {_redact(url)}: {exc}") from exc
    raise StorageError(
        f"unsupported database URL {_redact(url)}: use sqlite:///PATH or postgresql+psycopg://…"
    )


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    assert isinstance(dbapi_connection, sqlite3.Connection)
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError:
            time.sleep(0.05 * (attempt + 1))
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


def _describe(exc: DBAPIError) -> str:
    message = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if "locked" in message:
        return f"the database is locked by another writer and did not free up in time ({message})"
    return f"database error: {message}"
