"""Which pickle globals may be imported: the default list plus what configuration adds.

A global is a `(module, qualified_name)` pair after the unpickler's own renaming (Python 2 module
names mapped as `pickle` maps them for protocols below 3). Matching is exact: allowing
`torch._utils:_rebuild_tensor_v2` allows neither `torch._utils:_rebuild_tensor_v2.__globals__`
nor anything else in `torch._utils`. This module does not parse pickles.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import InputError
from modelward.scanning.allowlist_default import DEFAULT_ALLOWED_GLOBALS

_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def parse_global(spec: str) -> tuple[str, str]:
    """Turn `module:name` or `module.name` into a pair; raise InputError if it is not one."""
    text = spec.strip()
    if ":" in text:
        module, _, name = text.partition(":")
    else:
        module, _, name = text.rpartition(".")
    if (
        not module
        or not name
        or not set(module) <= _IDENTIFIER_CHARS
        or not set(name) <= _IDENTIFIER_CHARS
        or module.startswith(".")
        or module.endswith(".")
        or name.startswith(".")
        or name.endswith(".")
    ):
        raise InputError(
            f"not a pickle global: {spec!r} (write it as module:name, e.g. mypkg.models:Net)"
        )
    return module, name


@dataclass(frozen=True)
class AllowList:
    """An immutable set of allowed `(module, name)` pairs."""

    pairs: frozenset[tuple[str, str]]

    @classmethod
    def default(cls, extra: Iterable[str] = ()) -> AllowList:
        pairs = {parse_global(g) for g in DEFAULT_ALLOWED_GLOBALS}
        pairs.update(parse_global(g) for g in extra)
        return cls(frozenset(pairs))

    def allows(self, module: str, name: str) -> bool:
        return (module, name) in self.pairs


def configured_allow(home: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Read `[scan] allow = [...]` from `$MODELWARD_HOME/modelward.toml`, if the file exists."""
    base = Path(home) if home is not None else _default_home()
    config_path = base / "modelward.toml"
    try:
        raw = config_path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise InputError(f"cannot read {config_path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{config_path} is not valid TOML: {exc}") from exc
    section = data.get("scan", {})
    allow = section.get("allow", []) if isinstance(section, dict) else None
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise InputError(f"{config_path}: [scan] allow must be a list of strings")
    for entry in allow:
        parse_global(entry)
    return tuple(allow)


def _default_home() -> Path:
    env = os.environ.get("MODELWARD_HOME")
    return Path(env) if env else Path.home() / ".modelward"
