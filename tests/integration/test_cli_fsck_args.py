from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward


@pytest.mark.parametrize("grace", ["nan", "-1", "inf", "x", ""])
def test_fsck_refuses_a_grace_that_is_not_seconds(tmp_path: Path, grace: str) -> None:
    env = {"MODELWARD_HOME": str(tmp_path / "home"), "MODELWARD_ACTOR": "admin"}
    assert run_modelward("init", env=env).returncode == 0
    result = run_modelward("fsck", "--repair", "--grace", grace, env=env)
    assert_clean_error(result, 2, "not a number of seconds")
