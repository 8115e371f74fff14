"""`modelward settings` through the real console script: show, set by an admin (ledgered), set
refused for other roles and for bad values, and `modelward.toml` security keys ignored with a
warning."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Run, Path]:
    home = tmp_path / "home"
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)

    def run(actor: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_modelward(*args, env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": actor})

    assert run("alice", "init").returncode == 0
    assert run("alice", "users", "add", "bob", "--role", "trainer").returncode == 0
    return run, home


def test_settings_show_and_set_by_an_admin_are_ledgered(cli: tuple[Run, Path]) -> None:
    run, _home = cli
    shown = run("bob", "settings", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    views = {v["key"]: v for v in json.loads(shown.stdout)}
    assert set(views) == {"scan.allow", "gate.environments", "gate.override_roles",
                          "gate.max_override", "probe.suites"}  # fmt: skip
    assert views["gate.override_roles"]["value"] == ["admin", "releaser"]
    assert {v["source"] for v in views.values()} == {"default"}

    changed = run("alice", "settings", "set", "gate.override_roles", "admin", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["value"] == ["admin"]
    text = run("alice", "settings", "show")
    assert "gate.override_roles\tadmin\tset by alice" in text.stdout

    log = json.loads(run("alice", "audit", "log", "--json").stdout)
    assert log[-1]["action"] == "settings.set"
    assert log[-1]["subject"] == "setting:gate.override_roles"
    assert run("alice", "audit", "verify").returncode == 0

    # a setting rewritten behind modelward's back: ignored, reported, and caught by audit verify
    conn = sqlite3.connect(_home / "registry.db")
    conn.execute("UPDATE registry_settings SET value = '[\"trainer\"]'")
    conn.commit()
    conn.close()
    shown = run("alice", "settings", "show", "--json")
    assert "does not match its ledger event" in shown.stderr
    roles = next(v for v in json.loads(shown.stdout) if v["key"] == "gate.override_roles")
    assert (roles["value"], roles["source"]) == (["admin", "releaser"], "untrusted")
    audit = run("alice", "audit", "verify")
    assert audit.returncode == 1
    assert "setting gate.override_roles (row 1) does not match its ledger event" in audit.stdout


def test_settings_set_is_refused_for_non_admins_and_bad_values(cli: tuple[Run, Path]) -> None:
    run, _home = cli
    assert_clean_error(
        run("bob", "settings", "set", "gate.override_roles", "trainer"), 1, "admin role"
    )
    assert_clean_error(run("mallory", "settings", "show"), 1, "not a user of this registry")
    assert_clean_error(run("alice", "settings", "set", "gate.max_override", "forever"), 2,
                       "not a duration")  # fmt: skip
    assert_clean_error(run("alice", "settings", "set", "scan.allow", "os system"), 2,
                       "not a pickle global")  # fmt: skip
    assert_clean_error(run("alice", "settings", "set", "no.such", "1"), 2, "unknown setting")
    log = json.loads(run("alice", "audit", "log", "--json").stdout)
    assert all(event["action"] != "settings.set" for event in log)


def test_toml_security_keys_are_ignored_with_a_warning(cli: tuple[Run, Path]) -> None:
    run, home = cli
    (home / "modelward.toml").write_text(
        '[scan]\nallow = ["posix:system"]\n[gate]\noverride_roles = ["trainer"]\n'
    )
    result = run("bob", "models", "list")
    assert result.returncode == 0, result.stderr
    assert "[gate] override_roles is ignored" in result.stderr
    assert "modelward settings set gate.override_roles" in result.stderr
    assert "modelward settings set scan.allow" in result.stderr
    shown = json.loads(run("bob", "settings", "show", "--json").stdout)
    roles = next(v for v in shown if v["key"] == "gate.override_roles")
    assert roles["value"] == ["admin", "releaser"]
