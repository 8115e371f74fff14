"""Symbolic values of the pickle machine: imports, call results, containers, and findings.

Dicts and sets are lists of items, so hostile keys are never hashed; nothing here is a live
object built from the file. `short_repr` describes a value for messages with bounded depth.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import Any

Buffer = bytes | bytearray | mmap.mmap


class PickleStop(Exception):
    """Raised inside the machine when loading can go no further (the loader would fail)."""

    def __init__(self, rule_id: str, offset: int, message: str) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.offset = offset
        self.message = message


@dataclass(eq=False)
class Global:
    """An imported object, as `find_class(module, name)` would return it."""

    module: str
    name: str
    allowed: bool

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Instance:
    """The result of a call (REDUCE, NEWOBJ, OBJ, INST): its callable, arguments and state."""

    func: Any
    args: Any
    state: Any = None


@dataclass(eq=False)
class PickleDict:
    """A dict as a list of pairs: hostile keys are never hashed here."""

    items: list[tuple[Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if k == key and isinstance(k, str):
                return v
        return None


@dataclass(eq=False)
class PickleSet:
    items: list[Any] = field(default_factory=list)
    frozen: bool = False


@dataclass(eq=False)
class Opaque:
    """A value the machine does not model (a big blob, an out-of-band buffer, an EXT object)."""

    what: str
    size: int = 0


@dataclass(frozen=True)
class RawFinding:
    rule_id: str
    offset: int
    message: str


@dataclass
class PickleResult:
    """What one pickle (from PROTO or first opcode to STOP) did."""

    start: int
    end: int
    value: Any
    globals: list[Global]
    findings: list[RawFinding]
    complete: bool


def short_repr(value: Any, depth: int = 0) -> str:
    """A bounded, non-recursive-bomb description of a symbolic value for messages."""
    if depth > 3:
        return "…"
    if isinstance(value, Global):
        return value.dotted
    if isinstance(value, Instance):
        return f"{short_repr(value.func, depth + 1)}(…)"
    if isinstance(value, str | bytes):
        text = repr(value[:60])
        return text + ("…" if len(value) > 60 else "")
    if isinstance(value, tuple | list):
        inner = ", ".join(short_repr(v, depth + 1) for v in value[:4])
        return f"({inner}{', …' if len(value) > 4 else ''})"
    if isinstance(value, PickleDict):
        return "{…}"
    if isinstance(value, Opaque):
        return f"<{value.what}>"
    return type(value).__name__
