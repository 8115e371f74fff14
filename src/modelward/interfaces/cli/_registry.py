"""Opening the registry service for a CLI command (lazily, so --help stays fast)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelward.services.registry import RegistryService


@contextmanager
def registry_service() -> Iterator[RegistryService]:
    from modelward.interfaces.cli._context import warn_ignored_config
    from modelward.services.context import open_registry
    from modelward.services.registry import RegistryService

    context = open_registry()
    warn_ignored_config(context)
    try:
        yield RegistryService(context)
    finally:
        context.close()
