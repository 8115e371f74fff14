"""Bad paths given to push and pull are input errors (exit 2) naming the path, escaped: an
output folder that cannot be made (/proc, a file in the way), a file whose name holds control
or other non-printing characters (refused before anything is stored)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_modelward
from tests.unit.registry.bundles import make_bundle


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("paths") / "home"
    env = {"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": "root"}
    for var in ("MODELWARD_URL", "MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        env[var] = ""
    assert run_modelward("init", env=env).returncode == 0
    bundle = make_bundle(home.parent / "bundle", seed=3)
    pushed = run_modelward("push", str(bundle), "--model", "llm", env=env)
    assert pushed.returncode == 0, pushed.stderr
    return env


@pytest.mark.parametrize("where", ["/proc/modelward-out", "FILE/sub", "/proc/self/no/such"])
def test_pull_into_a_folder_that_cannot_be_made_is_a_bad_path(
    env: dict[str, str], tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = where.replace("FILE", str(blocker))
    result = run_modelward("pull", "models:/llm/1", "--out", out, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert blocker.read_text() == "in the way"
    if where.startswith("/proc/modelward"):
        as_json = run_modelward("pull", "models:/llm/1", "--out", out, "--json", env=env)
        assert as_json.returncode == 2
        assert json.loads(as_json.stdout)["error"]["exit_code"] == 2


def test_pull_makes_missing_parent_folders_for_the_files_and_the_signature(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "new" / "deep" / "out"
    result = run_modelward("pull", "models:/llm/1", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert (out / "config.json").is_file()
    assert (out.parent / "out.sig").is_file()


@pytest.mark.parametrize(
    "bad", ["evil\x1b[31mred.json", "bell\x07.txt", "right\u202eto-left.bin", "del\x7f"]
)
def test_push_refuses_file_names_that_do_not_print(
    env: dict[str, str], tmp_path: Path, bad: str
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=4)
    (bundle / "tokenizer" / bad).write_text("{}")
    result = run_modelward("push", str(bundle), "--model", "llm-bad", env=env)
    assert result.returncode == 2, result.stderr
    assert repr(f"tokenizer/{bad}") in result.stderr  # named, escaped
    assert bad not in result.stderr  # never printed raw
    if bad.startswith("evil"):  # a single file is checked by its own name; nothing stored
        single = tmp_path / f"weights-{bad}"
        single.write_bytes(b"\x00" * 16)
        result = run_modelward("push", str(single), "--model", "llm-bad", env=env)
        assert result.returncode == 2 and bad not in result.stderr
        models = run_modelward("models", "list", "--json", env=env)
        assert "llm-bad" not in models.stdout
