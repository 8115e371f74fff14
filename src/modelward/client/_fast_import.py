"""Importing httpx without its command-line tool, which the client never uses."""

from __future__ import annotations

import sys
import types
from typing import Any


def skip_httpx_command_line() -> None:
    """httpx's package imports its command-line tool (rich, click, pygments: half of its import
    time) on every import; the client never uses it. A stand-in loads the real one if called."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def main(*args: Any, **kwargs: Any) -> Any:
        sys.modules.pop("httpx._main", None)
        import importlib

        return importlib.import_module("httpx._main").main(*args, **kwargs)

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in
