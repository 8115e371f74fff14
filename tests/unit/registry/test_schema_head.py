from __future__ import annotations

from alembic.script import ScriptDirectory

from modelward.storage.metadata.migrations import SCHEMA_HEAD, alembic_config


def test_schema_head_constant_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [SCHEMA_HEAD]
