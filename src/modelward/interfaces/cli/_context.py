"""Opening the registry context for the gate's CLI commands (lazily, so --help stays fast)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelward.services.context import RegistryContext


@contextmanager
def registry_context() -> Iterator[RegistryContext]:
    from modelward.services.context import open_registry

    context = open_registry()
    warn_ignored_config(context)
    try:
        yield context
    finally:
        context.close()


def warn_ignored_config(context: RegistryContext) -> None:
    """Say on stderr which security keys of `modelward.toml` are ignored (they are settings)."""
    from modelward.interfaces.cli._output import warn
    from modelward.services.gate_config import ignored_security_keys

    for message in ignored_security_keys(context.home):
        warn(f"warning: {message}")
