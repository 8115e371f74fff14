"""Fixtures shared by every test layer."""

from __future__ import annotations

import compileall
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

import modelward

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package under test once, before any worker starts.

    Hundreds of tests run the `modelward` console script in a subprocess, and each of those
    imports the package afresh; where PYTHONDONTWRITEBYTECODE is set (as on CI machines) no
    import ever writes bytecode, so every subprocess would compile every module it imports
    from source. The bytecode written here is checked-hash: each import compares it with the
    hash of the source file it came from, so an edited module is never run from stale bytecode.
    """
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    for folder in modelward.__path__:
        compileall.compile_dir(
            folder, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )


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
