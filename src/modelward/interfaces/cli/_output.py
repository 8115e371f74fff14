"""Rendering helpers shared by the CLI modules: JSON for machines, text for people."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def emit(text: str) -> None:
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


def warn(text: str) -> None:
    sys.stderr.write(f"modelward: {text}\n")


def add_json_flag(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
