"""Security settings on SQLite and a shared PostgreSQL registry: set once by an admin through the
CLI, seen by every client, never widened by a client's own `modelward.toml`, and a row rewritten
in the database is ignored (the default applies) and reported by `audit verify`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from modelward.core.roles import Action
from modelward.services.context import open_registry
from modelward.services.gate_config import load_gate_config

from .conftest import CliRegistry

EVIL_PICKLE = b"cposix\nsystem\n(S'echo pwned'\ntR."


def write_bundle(folder: Path, extra: bytes | None = None) -> Path:
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"abcd")
    if extra is not None:
        (folder / "extra.pkl").write_bytes(extra)
    return folder


def test_settings_are_shared_state_and_the_toml_cannot_widen_them(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    reg.ok("settings", "set", "gate.override_roles", "admin")
    (reg.home / "modelward.toml").write_text(
        '[scan]\nallow = ["posix:system"]\n[gate]\noverride_roles = ["trainer", "releaser"]\n'
    )
    context = open_registry(reg.home)
    try:
        permissions = load_gate_config(context).permissions
    finally:
        context.close()
    assert permissions.roles_for(Action.OVERRIDE) == {"admin"}

    refused = reg.run("push", str(write_bundle(tmp_path / "evil", EVIL_PICKLE)), "--model", "m")
    assert refused.returncode == 1, refused.stderr
    assert "unsafe" in refused.stderr and "settings set scan.allow" in refused.stderr
    assert reg.json("models", "list") == []

    reg.sql("UPDATE registry_settings SET value = :v", {"v": '["trainer"]'})
    shown = reg.json("settings", "show")
    roles = next(v for v in shown if v["key"] == "gate.override_roles")
    assert (roles["value"], roles["source"]) == (["admin", "releaser"], "untrusted")
    audit = reg.run("audit", "verify")
    assert audit.returncode == 1
    assert "does not match its ledger event" in audit.stdout
