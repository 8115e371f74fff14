"""The ASGI entry point uvicorn imports in each worker: `modelward.interfaces.http.asgi:create`
(a factory), building the app from the environment (`MODELWARD_HOME`, database and blob URLs)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from modelward.services.context import RegistryContext


def create(context: RegistryContext | None = None) -> FastAPI:
    """The app of this process; on `context` when the caller opened the registry already."""
    from modelward.app import ServerRegistry, ServerSettings
    from modelward.interfaces.http.server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = ServerRegistry(ServerSettings.from_environment(), context)
    return create_app(registry, run_jobs=True)
