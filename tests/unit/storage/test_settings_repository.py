"""`SettingsRepository`: insert-only rows, the newest per key is current, anchors of rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelward.core.anchors import row_digest
from modelward.storage.metadata import schema
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.metadata.settings_repository import (
    SettingsRepository,
    setting_anchor,
    setting_subject,
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'settings.db'}")
    schema.metadata.create_all(database.engine)
    yield database
    database.dispose()


def test_latest_put_all_latest_history(db: Database) -> None:
    with db.transaction() as conn:
        repo = SettingsRepository(conn)
        assert repo.latest("a") is None and repo.all_latest() == {}
        first = repo.put("a", {"x": [1, 2]}, "2026-01-01T00:00:00.000000Z", "alice")
        repo.put("b", ["y"], "2026-01-01T00:00:01.000000Z", "alice")
        second = repo.put("a", {"x": [3]}, "2026-01-01T00:00:02.000000Z", "bob")
        repo.set_ledger_seq(second.id, 7)
    with db.read() as conn:
        repo = SettingsRepository(conn)
        latest = repo.latest("a")
        assert latest is not None
        assert (latest.id, latest.value, latest.created_by, latest.ledger_seq) == (
            second.id,
            {"x": [3]},
            "bob",
            7,
        )
        assert latest.value_json == '{"x":[3]}'  # canonical JSON
        assert {k: r.value for k, r in repo.all_latest().items()} == {"a": {"x": [3]}, "b": ["y"]}
        assert [r.id for r in repo.history("a")] == [first.id, second.id]


def test_anchor_and_last_event(db: Database) -> None:
    from datetime import UTC, datetime

    with db.transaction() as conn:
        repo = SettingsRepository(conn)
        record = repo.put("k", 1, "2026-01-01T00:00:00.000000Z", "alice")
        anchor = setting_anchor(record)
        assert (anchor.table, anchor.key) == ("registry_settings", "k")
        assert anchor.digest == row_digest("registry_settings", "k", record.anchor_fields())
        assert repo.last_event_seq("k") is None
        LedgerRepository(conn).append(
            "alice", "setting.set", setting_subject("k"), {}, datetime.now(UTC)
        )
        LedgerRepository(conn).append("alice", "other", "setting:other", {}, datetime.now(UTC))
        assert repo.last_event_seq("k") == 0
