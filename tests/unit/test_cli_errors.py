"""The CLI's error translator: exit codes by error type (storage failures and internal bugs are 4,
never a usage error), and `--json` errors written to stdout as one parseable document."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import pytest

from modelward import errors
from modelward.interfaces.cli import main
from modelward.interfaces.cli._errors import EXIT_STORAGE, exit_code_for, run_translated


def _raising(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def handler(_: argparse.Namespace) -> int:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.StorageError("database is locked"), 4),
        (RuntimeError("a bug"), 4),
        (KeyError("state"), 4),
        (errors.InputError("bad"), 2),
        (errors.RegistryNotFoundError("no registry"), 2),
        (errors.DeniedError("no", ["r1"]), 1),
        (errors.VerificationError("mismatch"), 1),
    ],
)
def test_exit_codes_by_error(
    error: BaseException, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code_for(error) == code
    args = argparse.Namespace(handler=_raising(error), json=True, debug=False)
    assert run_translated(args) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.startswith("modelward: ")
    document = json.loads(captured.out)["error"]
    assert document["exit_code"] == code
    assert document["type"] == (
        type(error).__name__ if isinstance(error, errors.ModelwardError) else "InternalError"
    )
    assert document["reasons"] == (["r1"] if isinstance(error, errors.DeniedError) else [])


def test_without_json_nothing_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(handler=_raising(RuntimeError("boom")), json=False, debug=False)
    assert run_translated(args) == EXIT_STORAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "internal error: RuntimeError: boom" in captured.err


def test_usage_errors_are_json_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["type"] == "UsageError"
    assert "--out" in captured.err
    assert main(["pull"]) == 2
    assert capsys.readouterr().out == ""
