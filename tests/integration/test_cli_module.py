"""`python -m modelward` is the same command line as the `modelward` script."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_runs_the_cli_with_its_exit_codes() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "modelward", "--version"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and shown.stdout.startswith("modelward ")
    wrong = subprocess.run(
        [sys.executable, "-m", "modelward", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "no-such-command" in wrong.stderr
