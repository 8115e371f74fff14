"""Pull, releases and errors through the real `modelward` console script: single-file and folder
versions pulled with the registry's OMS signature, which the real `model_signing verify` accepts;
`pull --release` and `releases show|check`; promotion saying what it carried forward; fsck repair
refused to non-admins; storage failures and internal errors exit 4; `--json` errors are JSON."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward

from modelward.services.context import open_registry
from modelward.services.registry_init import initialize_registry
from modelward.services.users import UserService

Run = Callable[..., subprocess.CompletedProcess[str]]
MODEL_SIGNING = str(Path(sys.executable).with_name("model_signing"))
ALLOW = "rules:\n  - id: always\n    expression: 'true'\n    message: anything goes\n"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Run, Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    initialize_registry(home)
    context = open_registry(home)
    try:
        UserService(context, actor="alice").add("bob", "trainer")
    finally:
        context.close()

    def run(*args: str, actor: str = "alice") -> subprocess.CompletedProcess[str]:
        return run_modelward(*args, env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": actor})

    return run, home


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def model_signing_verify(
    path: Path, home: Path, signature: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            MODEL_SIGNING,
            "verify",
            "key",
            str(path),
            "--public_key",
            str(home / "keys" / "registry.key.pub"),
            "--signature",
            str(signature),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_single_file_and_folder_versions_pull_with_a_signature_model_signing_accepts(
    cli: tuple[Run, Path], tmp_path: Path
) -> None:
    run, home = cli
    single = tmp_path / "tiny.gguf.json"
    single.write_text('{"weights": [1, 2, 3]}')
    ok(run("push", str(single), "--model", "tiny"))
    out = tmp_path / "pulled-single"
    data = json.loads(ok(run("pull", "models:/tiny/1", "--out", str(out), "--json")).stdout)
    assert data["file_name"] == "tiny.gguf.json" and data["verified"]
    assert (out / "tiny.gguf.json").read_bytes() == single.read_bytes()
    signature = Path(data["signature"])
    assert signature == tmp_path / "pulled-single.sig"
    verified = model_signing_verify(out, home, signature)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    renamed = tmp_path / "renamed"
    ok(run("pull", "models:/tiny/1", "--out", str(renamed), "--file-name", "model.json"))
    assert (renamed / "model.json").read_bytes() == single.read_bytes()

    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "tokenizer.json").write_text('{"vocab": ["a"]}')
    ok(run("push", str(folder), "--model", "folder"))
    custom = tmp_path / "sigs" / "folder.sig"
    custom.parent.mkdir()
    out2 = tmp_path / "pulled-folder"
    ok(run("pull", "models:/folder/1", "--out", str(out2), "--signature", str(custom)))
    verified = model_signing_verify(out2, home, custom)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # a tampered pulled file no longer verifies with that signature
    (out2 / "config.json").write_text('{"layers": 3}')
    assert model_signing_verify(out2, home, custom).returncode != 0

    # the signature is never written over an existing file, and nothing is pulled then
    assert_clean_error(
        run("pull", "models:/folder/1", "--out", str(tmp_path / "x"), "--signature", str(custom)),
        2,
        "exists",
    )
    assert not (tmp_path / "x").exists()


def test_releases_show_check_and_pull_release_through_the_cli(
    cli: tuple[Run, Path], tmp_path: Path
) -> None:
    run, home = cli
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW)
    for environment in ("staging", "canary", "production"):
        ok(run("policy", "set", environment, str(policy)))
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "config.json").write_text('{"layers": 2}')
    ok(run("push", str(folder), "--model", "llama"))
    template = tmp_path / "chat.jinja"
    template.write_text("{{ prompt }}")
    ok(
        run(
            "promote",
            "models:/llama/1",
            "--to",
            "staging",
            "--prompt-template",
            str(template),
            "--flag",
            "streaming=true",
        )
    )
    promoted = ok(run("promote", "models:/llama/1", "--to", "canary")).stdout
    assert "carried forward from rel-1" in promoted and "chat.jinja" in promoted
    bare = ok(run("promote", "models:/llama/1", "--to", "production", "--no-carry")).stdout
    assert "nothing carried forward" in bare

    shown = json.loads(ok(run("releases", "show", "rel-2", "--json")).stdout)
    assert shown["state"]["environment"] == "canary"
    assert shown["state"]["feature_flags"] == {"streaming": True}
    assert "chat.jinja" in shown["state"]["prompt_templates"]
    assert "chat.jinja" in ok(run("releases", "show", "rel-2")).stdout
    assert_clean_error(run("releases", "show", "rel-99"), 2, "no release 'rel-99'")
    listed = json.loads(ok(run("releases", "canary", "--model", "llama", "--json")).stdout)
    assert listed[-1]["override_expired"] is False
    checked = run("releases", "check", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout) == []

    out = tmp_path / "release"
    ok(run("pull", "--release", "canary", "--model", "llama", "--out", str(out)))
    assert (out / "prompt_templates" / "chat.jinja").read_text() == "{{ prompt }}"
    assert json.loads((out / "flags.json").read_text()) == {"streaming": True}
    verified = model_signing_verify(out / "bundle", home, out / "bundle.sig")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    by_id = tmp_path / "by-id"
    data = json.loads(ok(run("pull", "--release", "rel-1", "--out", str(by_id), "--json")).stdout)
    assert data["release_id"] == "rel-1" and data["verified"]


def test_fsck_repair_is_refused_to_a_non_admin(cli: tuple[Run, Path]) -> None:
    run, _ = cli
    assert_clean_error(run("fsck", "--repair", actor="bob"), 1, "admin role")
    assert ok(run("fsck", actor="bob")).stdout.startswith("no orphan blobs")
    assert_clean_error(run("fsck", "--repair", "--grace", "0"), 2, "at least 300")


def test_an_unreachable_database_exits_4_with_a_json_error(tmp_path: Path) -> None:
    env = {
        "MODELWARD_HOME": str(tmp_path / "home"),
        "MODELWARD_ACTOR": "alice",
        "MODELWARD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/nothing",
    }
    result = run_modelward("models", "list", "--json", env=env)
    assert_clean_error(result, 4, "cannot reach the registry database")
    error = json.loads(result.stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("StorageError", 4)
    assert_clean_error(run_modelward("models", "list", env=env), 4, "cannot reach")


def test_an_internal_error_exits_4_and_json_errors_parse(
    cli: tuple[Run, Path], tmp_path: Path
) -> None:
    run, home = cli
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "config.json").write_text('{"layers": 2}')
    ok(run("push", str(folder), "--model", "llama"))
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW)
    ok(run("policy", "set", "staging", str(policy)))
    ok(run("promote", "models:/llama/1", "--to", "staging"))
    conn = sqlite3.connect(home / "registry.db")
    conn.execute("UPDATE gate_releases SET record = '{not json'")
    conn.commit()
    conn.close()
    broken = run("releases", "staging", "--model", "llama", "--json")
    assert_clean_error(broken, 4, "internal error")
    assert json.loads(broken.stdout)["error"]["exit_code"] == 4

    missing = run("show", "models:/nope/1", "--json")
    assert missing.returncode == 2
    error = json.loads(missing.stdout)["error"]
    assert error["type"] == "NotFoundError" and "nope" in error["message"]
    assert error["reasons"] == [] and error["exit_code"] == 2

    usage = run("promote", "models:/llama/1", "--json")  # --to is missing
    assert usage.returncode == 2
    assert json.loads(usage.stdout)["error"]["type"] == "UsageError"
    assert "--to" in json.loads(usage.stdout)["error"]["message"]
