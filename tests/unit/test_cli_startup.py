"""CLI start-up: one invocation builds only the module of its command (the table of owners is
pinned to what the modules register), and in remote mode (`MODELWARD_URL`) no command imports
the database, server or S3 libraries; an unreachable server is exit 4, naming it."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelward.interfaces import cli

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "pydantic", "boto3", "jwt")


def test_the_owner_table_names_every_command_of_every_module() -> None:
    registered: dict[str, str] = {}
    for name in cli.COMMAND_MODULES:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"modelward.interfaces.cli.{name}").register(subparsers)
        registered.update(dict.fromkeys(subparsers.choices, name))
    assert registered == cli.COMMAND_OWNERS


def test_a_command_word_builds_only_its_module() -> None:
    assert cli._command_word(["--debug", "whoami"]) == "whoami"
    assert cli._command_word(["--help"]) is None
    assert cli._command_word(["pusj"]) is None  # a typo gets the full list of choices
    parser = cli.build_parser([cli.COMMAND_OWNERS["whoami"]])
    assert parser.parse_args(["whoami"]).command == "whoami"


REMOTE_COMMANDS = [
    ["whoami"],
    ["models", "list"],
    ["versions", "list", "llm"],
    ["show", "models:/llm/1"],
    ["pull", "models:/llm/1", "--out", "OUT"],
    ["push", "BUNDLE", "--model", "llm"],
    ["promote", "models:/llm/1", "--to", "staging"],
    ["approve", "models:/llm/1", "--for", "staging"],
    ["rollback", "llm", "--env", "staging"],
    ["decisions", "models:/llm/1"],
    ["audit", "log"],
    ["users", "list"],
    ["canary", "status", "llm", "--env", "staging"],
    ["canary", "judge", "llm", "--env", "staging", "--act"],
    ["drift", "llm", "--env", "staging"],
    ["alerts", "deliveries"],
]

_PROBE = (
    "import json, sys\n"
    "from modelward.interfaces.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
    "print('PROBE', json.dumps({'code': code, 'heavy': heavy}))\n"
)


@pytest.mark.parametrize("command", REMOTE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_remote_commands_import_no_database_or_server_code(
    command: list[str], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    args = [
        str(bundle) if a == "BUNDLE" else str(tmp_path / "out") if a == "OUT" else a
        for a in command
    ]
    env = {
        **os.environ,
        "MODELWARD_URL": "http://127.0.0.1:9",  # the discard port: nothing listens
        "MODELWARD_TOKEN": "mwt_0123456789abcdef_secret",
        "MODELWARD_HOME": str(tmp_path / "home"),
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    probe = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert probe, result.stdout + result.stderr
    outcome = json.loads(probe[-1][len("PROBE ") :])
    assert outcome["code"] == 4, result.stderr
    assert "cannot reach the server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert outcome["heavy"] == []
