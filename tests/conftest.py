"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The shared conformance data; its absence is a failure, never a skip."""
    if not CONFORMANCE.is_dir():
        pytest.fail(f"conformance data not found at {CONFORMANCE} (expected ../shared/conformance)")
    return CONFORMANCE


def run_modelward(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `modelward` console script in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    exe = Path(sys.executable).with_name("modelward")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    """A failed command: the documented exit code, a message naming the problem, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert fragment.lower() in result.stderr.lower(), result.stderr
