"""Round trips with the real `model_signing` tool (pinned test dependency), both ways."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward

MODEL_SIGNING = Path(sys.executable).with_name("model_signing")


def _model(root: Path) -> Path:
    model = root / "model"
    (model / "nested").mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(os.urandom(300_000))
    (model / "nested" / "a-b.json").write_text("{}")
    (model / "nested-c.txt").write_text("order matters")
    return model


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODEL_SIGNING), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    result = run_modelward("keys", "generate", "--out", str(tmp_path / "key"))
    assert result.returncode == 0, result.stderr
    return tmp_path / "key", tmp_path / "key.pub"


def test_modelward_signature_verifies_with_model_signing(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    model = _model(tmp_path)
    sig = tmp_path / "model.sig"
    signed = run_modelward("sign", str(model), "--key", str(keypair[0]), "--signature", str(sig))
    assert signed.returncode == 0, signed.stderr
    ok = _run("verify", "key", str(model), "--signature", str(sig), "--public_key", str(keypair[1]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tampered = tmp_path / "tampered"
    shutil.copytree(model, tampered)
    (tampered / "nested-c.txt").write_text("changed")
    bad = _run(
        "verify", "key", str(tampered), "--signature", str(sig), "--public_key", str(keypair[1])
    )
    assert bad.returncode != 0
    assert "nested-c.txt" in bad.stdout + bad.stderr


def test_model_signing_signature_verifies_with_modelward(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    model = _model(tmp_path)
    sig = tmp_path / "model.sig"
    made = _run(
        "sign", "key", str(model), "--private_key", str(keypair[0]), "--signature", str(sig)
    )
    assert made.returncode == 0, made.stdout + made.stderr
    ok = run_modelward(
        "verify", str(model), "--public-key", str(keypair[1]), "--signature", str(sig)
    )
    assert ok.returncode == 0, ok.stderr
    assert "verified" in ok.stdout
    (model / "weights.safetensors").write_bytes(b"swapped weights")
    bad = run_modelward(
        "verify", str(model), "--public-key", str(keypair[1]), "--signature", str(sig)
    )
    assert_clean_error(bad, 1, "file changed: weights.safetensors")
