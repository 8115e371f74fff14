"""The CLI's one error translator: modelward errors to a one-line message and an exit code.

Exit codes (ARCHITECTURE.md): 0 success, 1 a definite "no", 2 usage or input error,
3 (scan only) malformed files and nothing unsafe. Tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from modelward import errors

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2
EXIT_MALFORMED = 3

_NO = (
    errors.VerificationError,
    errors.DeniedError,
    errors.PermissionDeniedError,
    errors.ConflictError,
)


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, _NO):
        return EXIT_NO
    return EXIT_USAGE


def run_translated(args: argparse.Namespace) -> int:
    debug = bool(getattr(args, "debug", False))
    try:
        code: int = args.handler(args)
        return code
    except errors.ModelwardError as exc:
        if debug:
            traceback.print_exc()
        print(f"modelward: {_describe(exc)}", file=sys.stderr)
        reasons = getattr(exc, "reasons", None)
        for reason in reasons or ():
            print(f"  - {reason}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("modelward: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # an unexpected failure: still one line, never a traceback
        if debug:
            traceback.print_exc()
        print(
            f"modelward: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _describe(exc: errors.ModelwardError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if "\n" in text and not getattr(exc, "multiline", False) else text
