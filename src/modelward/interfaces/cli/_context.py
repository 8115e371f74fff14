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
    try:
        yield context
    finally:
        context.close()
