"""The ASGI entry point uvicorn imports in each worker: `modelward.interfaces.http.asgi:create`
(a factory), building the app from the environment (`MODELWARD_HOME`, database and blob URLs)."""

from __future__ import annotations

import logging

from fastapi import FastAPI


def create() -> FastAPI:
    from modelward.app import ServerRegistry, ServerSettings
    from modelward.interfaces.http.server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return create_app(ServerRegistry(ServerSettings.from_environment()), run_jobs=True)
