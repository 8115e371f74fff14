"""The CLI's one error translator: modelward errors to a one-line message and an exit code.

Exit codes (ARCHITECTURE.md): 0 success, 1 a definite "no", 2 usage or input error,
3 (scan only) malformed files and nothing unsafe, 4 the registry could not be read or written
(StorageError) or an internal error (any unexpected exception). Tracebacks only with --debug.

The message goes to stderr; when the command was given `--json`, the error is also written to
stdout as `{"error": {"type", "message", "reasons", "exit_code"}}`, so scripts parse one format.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

from modelward import errors

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2
EXIT_MALFORMED = 3
EXIT_STORAGE = 4

_NO = (
    errors.VerificationError,
    errors.DeniedError,
    errors.PermissionDeniedError,
    errors.ConflictError,
)


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, _NO):
        return EXIT_NO
    if isinstance(error, errors.StorageError):
        return EXIT_STORAGE
    if isinstance(error, errors.ModelwardError):
        return EXIT_USAGE
    return EXIT_STORAGE  # an unexpected exception is a bug, never the user's fault


def error_document(
    type_name: str, message: str, reasons: Sequence[str], exit_code: int
) -> dict[str, object]:
    return {
        "error": {
            "type": type_name,
            "message": message,
            "reasons": [str(r) for r in reasons],
            "exit_code": exit_code,
        }
    }


def emit_error_json(type_name: str, message: str, reasons: Sequence[str], exit_code: int) -> None:
    document = error_document(type_name, message, reasons, exit_code)
    try:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass  # stdout is gone; the stderr line still says what happened


def run_translated(args: argparse.Namespace) -> int:
    debug = bool(getattr(args, "debug", False))
    as_json = bool(getattr(args, "json", False))
    try:
        code: int = args.handler(args)
        return code
    except errors.ModelwardError as exc:
        if debug:
            traceback.print_exc()
        message = _describe(exc)
        code = exit_code_for(exc)
        print(f"modelward: {message}", file=sys.stderr)
        reasons = list(getattr(exc, "reasons", None) or ())
        for reason in reasons:
            print(f"  - {reason}", file=sys.stderr)
        if as_json:
            emit_error_json(type(exc).__name__, message, reasons, code)
        return code
    except KeyboardInterrupt:
        print("modelward: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # an unexpected failure: still one line, never a traceback
        if debug:
            traceback.print_exc()
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"modelward: {message} (run with --debug for details)", file=sys.stderr)
        if as_json:
            emit_error_json("InternalError", message, [], EXIT_STORAGE)
        return EXIT_STORAGE


def _describe(exc: errors.ModelwardError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if "\n" in text and not getattr(exc, "multiline", False) else text
