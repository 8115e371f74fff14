"""The authenticated identity a service acts for: a `Principal`, and binding one to the work in
progress so that every ledger event appended meanwhile records who (subject, issuer, token id).

A principal is made only by the authentication code that checked a token or a JWT; the embedded
mode binds none (it authenticates nobody). Token scopes and a model-name pattern restrict the
principal further than its role; they never widen it. Pure: no I/O, no clock.
"""

from __future__ import annotations

import contextvars
import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from modelward.errors import PermissionDeniedError


@dataclass(frozen=True)
class Principal:
    """Who is acting: the registry user `name`, as vouched for by `issuer` (`modelward` for API
    tokens, the OIDC issuer URL for JWTs); `subject` is the token's own subject (the JWT `sub`,
    or the user name for API tokens)."""

    name: str
    issuer: str
    token_id: str | None = None
    scopes: tuple[str, ...] = ()
    model_pattern: str | None = None
    subject: str = ""
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    def allows_action(self, action: str) -> bool:
        """An empty scope list means "whatever the role allows"."""
        return not self.scopes or action in self.scopes

    def allows_model(self, model: str) -> bool:
        return self.model_pattern is None or fnmatch.fnmatchcase(model, self.model_pattern)

    def check_action(self, action: str) -> None:
        if not self.allows_action(action):
            raise PermissionDeniedError(
                f"this token of {self.name!r} is limited to {', '.join(self.scopes)}; "
                f"it may not {action}"
            )

    def check_model(self, model: str) -> None:
        if not self.allows_model(model):
            raise PermissionDeniedError(
                f"this token of {self.name!r} is limited to models matching "
                f"{self.model_pattern!r}; {model!r} does not match"
            )

    def ledger_record(self) -> dict[str, Any]:
        """What every ledger event appended for this principal carries under `auth`."""
        return {"sub": self.subject or self.name, "iss": self.issuer, "token_id": self.token_id}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "issuer": self.issuer,
            "token_id": self.token_id,
            "scopes": list(self.scopes),
            "model_pattern": self.model_pattern,
            "subject": self.subject or self.name,
        }


_BOUND: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "modelward_principal", default=None
)


def bound_principal() -> Principal | None:
    """The principal bound to the current request, or None (embedded mode)."""
    return _BOUND.get()


@contextmanager
def bind_principal(principal: Principal | None) -> Iterator[None]:
    """Bind `principal` to the work done inside the block (per thread / task context)."""
    token = _BOUND.set(principal)
    try:
        yield
    finally:
        _BOUND.reset(token)
