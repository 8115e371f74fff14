"""`modelward keys/sign/verify` as a user runs them: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(1000))
    (model / "c.json").write_text("{}")
    assert run_modelward("keys", "generate", "--out", str(tmp_path / "k")).returncode == 0
    return model, tmp_path / "k"


def test_sign_verify_json(setup: tuple[Path, Path]) -> None:
    model, key = setup
    signed = run_modelward("sign", str(model), "--key", str(key), "--json")
    assert signed.returncode == 0, signed.stderr
    data = json.loads(signed.stdout)
    assert data["files"] == 2 and Path(data["signature"]).name == "m.sig"
    verified = run_modelward("verify", str(model), "--public-key", f"{key}.pub", "--json")
    assert verified.returncode == 0
    assert json.loads(verified.stdout)["root_digest"] == data["root_digest"]
    (model / "w.bin").write_bytes(b"x")
    failed = run_modelward("verify", str(model), "--public-key", f"{key}.pub", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["diff"]["changed"][0]["name"] == "w.bin"


def test_encrypted_key_with_passphrase_env(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    model, _ = setup
    env = {"MODELWARD_KEY_PASSPHRASE": "hunter2"}
    made = run_modelward(
        "keys", "generate", "--out", str(tmp_path / "enc"), "--passphrase", env=env
    )
    assert made.returncode == 0, made.stderr
    no_pass = run_modelward("sign", str(model), "--key", str(tmp_path / "enc"))
    assert_clean_error(no_pass, 2, "encrypted")
    assert (
        run_modelward("sign", str(model), "--key", str(tmp_path / "enc"), env=env).returncode == 0
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sign", "{tmp}/absent", "--key", "{key}"], "no such file"),
        (["sign", "{model}", "--key", "{tmp}/absent"], "no such key file"),
        (["sign", "{model}", "--key", "{model}/c.json"], "not a PEM private key"),
        (["sign", "/dev/null", "--key", "{key}"], "not a regular file"),
        (["verify", "{model}", "--public-key", "{key}"], "not a PEM public key"),
        (["verify", "{model}", "--public-key", "{key}.pub"], "no such signature"),
        (["keys", "generate", "--out", "{key}"], "already exists"),
        (["sign", "{model}"], "required"),
        (["verify", "{model}"], "needs --public-key"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, setup: tuple[Path, Path], args: list[str], fragment: str
) -> None:
    model, key = setup
    filled = [a.format(tmp=tmp_path, model=model, key=key) for a in args]
    assert_clean_error(run_modelward(*filled), 2, fragment)


def test_signature_not_json_exits_2(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, key = setup
    (tmp_path / "m.sig").write_text("garbage")
    assert_clean_error(
        run_modelward("verify", str(model), "--public-key", f"{key}.pub"), 2, "not JSON"
    )


def test_wrong_key_exits_1(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, key = setup
    assert run_modelward("sign", str(model), "--key", str(key)).returncode == 0
    run_modelward("keys", "generate", "--out", str(tmp_path / "other"))
    assert_clean_error(
        run_modelward("verify", str(model), "--public-key", str(tmp_path / "other.pub")),
        1,
        "wrong key",
    )


def test_symlink_loop_exits_2(setup: tuple[Path, Path]) -> None:
    model, key = setup
    (model / "a").symlink_to(model / "b")
    (model / "b").symlink_to(model / "a")
    assert_clean_error(
        run_modelward("sign", str(model), "--key", str(key), "--allow-symlinks"), 2, "loop"
    )
    assert_clean_error(run_modelward("sign", str(model), "--key", str(key)), 2, "symbolic link")
