"""The HTTP interface: FastAPI routers per noun, authentication, and one error translator.

`create_app` builds the application around a `ServerRegistry` (see `modelward.app`).
"""

from __future__ import annotations

from modelward.interfaces.http.server import create_app

__all__ = ["create_app"]
