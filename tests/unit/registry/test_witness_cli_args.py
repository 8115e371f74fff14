"""The witness and offline-proof commands' argument and input errors, run in-process: clear
one-line messages and exit 2, never a traceback; keys are never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelward.core.cosignature import CosignerKey
from modelward.interfaces.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_keygen_writes_a_key_and_its_vkey_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "w.key"
    code, out, _ = _run(capsys, "witness", "keygen", "--out", str(key), "--name", "w.example/1")
    assert code == 0
    vkey = CosignerKey.from_vkey((tmp_path / "w.key.vkey").read_text())
    assert vkey.name == "w.example/1" and vkey.vkey() in out
    assert (key.stat().st_mode & 0o777) == 0o600
    before = key.read_bytes()
    code, _, err = _run(capsys, "witness", "keygen", "--out", str(key), "--name", "w.example/1")
    assert code == 2 and "already exists" in err and key.read_bytes() == before
    code, _, err = _run(capsys, "witness", "keygen", "--out", str(tmp_path / "x"), "--name", "a b")
    assert code == 2 and "name" in err


def test_serve_refuses_bad_keys_and_logs_before_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "w.key"
    _run(capsys, "witness", "keygen", "--out", str(key), "--name", "w.example/1")
    state = str(tmp_path / "state")
    code, _, err = _run(
        capsys, "witness", "serve", "--key", str(key), "--state", state, "--log", "junk"
    )
    assert code == 2 and "junk" in err
    code, _, err = _run(
        capsys, "witness", "serve", "--key", str(tmp_path / "none"), "--state", state, "--log", "x"
    )
    assert code == 2 and "no such key file" in err
    (tmp_path / "w.key.vkey").write_text(
        CosignerKey("w.example/1", bytes(32)).vkey()  # another key under the same name
    )
    code, _, err = _run(
        capsys, "witness", "serve", "--key", str(key), "--state", state, "--log", "a+b"
    )
    assert code == 2 and ("vkey" in err or "verifier key" in err)


def test_serve_refuses_a_missing_state_folder_without_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelward.core.checkpoint import NoteVerifier

    key = tmp_path / "w.key"
    _run(capsys, "witness", "keygen", "--out", str(key), "--name", "w.example/1")
    log = NoteVerifier("example.org/log", bytes(32)).verifier_key()
    state = tmp_path / "state"
    code, _, err = _run(
        capsys, "witness", "serve", "--key", str(key), "--state", str(state), "--log", log
    )
    assert code == 2 and "--init" in err and "Traceback" not in err
    assert not state.exists()


def test_verify_commands_report_missing_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing")
    for args in (
        ("audit", "verify-proof", missing, "--key", missing),
        ("audit", "verify-consistency", missing, "--key", missing),
        ("datasets", "verify-proof", missing, "--root", "ab" * 32),
    ):
        code, _, err = _run(capsys, *args)
        assert code == 2 and "no such" in err, (args, err)
