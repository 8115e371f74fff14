"""The HTTP interface's one error translator: modelward errors to a status and a JSON body
`{"error": {"type", "message", "reasons", "exit_code"}}`, with the CLI's exit-code taxonomy
(1 a definite no, 2 input, 4 storage or internal). Internal errors say nothing of their cause.
"""

from __future__ import annotations

import logging
from typing import Any

from modelward import errors

log = logging.getLogger("modelward.http")

EXIT_NO = 1
EXIT_INPUT = 2
EXIT_STORAGE = 4


RateLimitedError = errors.RateLimitedError  # 429; exit 4, as every "try again later"


class RequestTooLargeError(errors.InputError):
    """A request body is larger than the server accepts."""


class AuthenticationRequiredError(errors.PermissionDeniedError):
    """No credential, or one that does not authenticate."""


def status_for(error: BaseException) -> tuple[int, int]:
    """(HTTP status, CLI exit code) for an error."""
    from modelward.services.tokens import AuthenticationError

    table: list[tuple[type[BaseException], int, int]] = [
        (RateLimitedError, 429, EXIT_STORAGE),
        (RequestTooLargeError, 413, EXIT_INPUT),
        (AuthenticationRequiredError, 401, EXIT_NO),
        (AuthenticationError, 401, EXIT_NO),
        (errors.PermissionDeniedError, 403, EXIT_NO),
        (errors.ConflictError, 409, EXIT_NO),
        (errors.VerificationError, 422, EXIT_NO),
        (errors.DeniedError, 422, EXIT_NO),
        (errors.RegistryNotFoundError, 503, EXIT_STORAGE),
        (errors.NotFoundError, 404, EXIT_INPUT),
        (errors.StorageError, 503, EXIT_STORAGE),
        (errors.DependencyError, 500, EXIT_STORAGE),
        (errors.InputError, 400, EXIT_INPUT),
        (errors.PolicyError, 400, EXIT_INPUT),
        (errors.ChangedDuringReadError, 400, EXIT_INPUT),
        (errors.ModelwardError, 400, EXIT_INPUT),
    ]
    for kind, status, code in table:
        if isinstance(error, kind):
            return status, code
    return 500, EXIT_STORAGE


def error_body(error: BaseException) -> tuple[int, dict[str, Any]]:
    status, code = status_for(error)
    if isinstance(error, errors.ModelwardError):
        # the nearest class of the public hierarchy in `modelward.errors`, so that a client
        # raises what the embedded service would have raised
        kind = next(
            k.__name__
            for k in type(error).__mro__
            if getattr(errors, k.__name__, None) is k and issubclass(k, errors.ModelwardError)
        )
        message = str(error).strip() or kind
        reasons = [str(r) for r in getattr(error, "reasons", [])]
    else:
        log.exception("internal error")
        kind, message, reasons = "InternalError", "internal error (see the server's log)", []
    return status, {
        "error": {"type": kind, "message": message, "reasons": reasons, "exit_code": code}
    }
