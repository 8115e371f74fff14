"""The witnesses a registry asks for cosignatures: `$MODELWARD_HOME/witnesses.json`.

`{"witnesses": [{"name": ..., "url": ..., "vkey": ...}, ...]}`, written atomically. This is a
local file for now, not ledgered registry state: whoever can write `$MODELWARD_HOME` can change
it (as with the embedded registry's keys). It should move to the ledgered `registry_settings`
once a settings service exists. Reads and writes the file; checks each entry's form.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core.cosignature import CosignerKey
from modelward.errors import InputError, ModelwardError, NotFoundError, PathError, StorageError

CONFIG_NAME = "witnesses.json"


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness: its name, the URL prefix of its `add-checkpoint`, and its cosigner key."""

    name: str
    url: str
    key: CosignerKey

    def __post_init__(self) -> None:
        if self.key.name != self.name:
            raise InputError(
                f"the witness key is named {self.key.name!r}, not {self.name!r}: "
                "use the name in the witness's vkey"
            )
        if not self.url.startswith(("http://", "https://")) or any(c.isspace() for c in self.url):
            raise InputError(f"witness URL {self.url!r} must be an http:// or https:// URL")

    @property
    def add_checkpoint_url(self) -> str:
        return self.url.rstrip("/") + "/add-checkpoint"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "vkey": self.key.vkey()}

    @classmethod
    def from_dict(cls, data: Any) -> WitnessEndpoint:
        if not isinstance(data, dict):
            raise InputError("a witness entry is not a JSON object")
        try:
            return cls(
                str(data["name"]), str(data["url"]), CosignerKey.from_vkey(str(data["vkey"]))
            )
        except KeyError as exc:
            raise InputError(f"a witness entry has no {exc.args[0]!r}") from exc


class WitnessConfigFile:
    def __init__(self, home: Path) -> None:
        self.path = home / CONFIG_NAME

    def load(self) -> list[WitnessEndpoint]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StorageError(f"{self.path}: unreadable witness configuration: {exc}") from exc
        entries = data.get("witnesses") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise StorageError(f"{self.path}: has no 'witnesses' list")
        try:
            return [WitnessEndpoint.from_dict(entry) for entry in entries]
        except ModelwardError as exc:
            raise StorageError(f"{self.path}: {exc}") from exc

    def add(self, endpoint: WitnessEndpoint) -> list[WitnessEndpoint]:
        current = self.load()
        if any(w.name == endpoint.name for w in current):
            raise InputError(f"a witness named {endpoint.name!r} is already configured")
        updated = [*current, endpoint]
        self._write(updated)
        return updated

    def remove(self, name: str) -> list[WitnessEndpoint]:
        current = self.load()
        updated = [w for w in current if w.name != name]
        if len(updated) == len(current):
            raise NotFoundError(f"no witness named {name!r} is configured")
        self._write(updated)
        return updated

    def _write(self, endpoints: list[WitnessEndpoint]) -> None:
        body = json.dumps({"witnesses": [w.to_dict() for w in endpoints]}, indent=2) + "\n"
        try:
            fd, temporary = tempfile.mkstemp(prefix=".witnesses-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise PathError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
