"""Where a witness keeps, per log, the latest checkpoint it cosigned, and its misbehaviour log.

`DirectoryWitnessState` (a folder):

- `logs/<sha256(origin) hex>.json`: `{"origin", "checkpoint", "cosigned_at"}`, the log-signed
  checkpoint note as received; replaced atomically (temporary file, fsync, rename, fsync of the
  folder), so a crash leaves the old or the new state, never a torn one.
- `misbehaviour.jsonl`: one JSON object per verified split view (evidence against a log), with
  the two log-signed checkpoints; appended and fsynced, and never grown past
  `max_misbehaviour_bytes` (default 16 MiB): `record_misbehaviour` then appends nothing and
  returns False, so the caller can say so.
- `witness.lock`: an exclusive `flock` held while the store is open, so two witness processes
  cannot serve one state folder (the check-then-persist must be atomic, tlog-witness).
- `witness.json`: the marker written on the witness's first start (`init=True`). Without it (and
  without any saved state) the folder is refused: a witness whose state was deleted must not
  silently start over, or it would cosign a rewritten history of a log it had witnessed. A
  folder from before the marker existed that holds state is taken as initialised (and marked).

`MemoryWitnessState` is its in-memory twin for unit tests. Stores bytes; does not verify them
(the witness service re-verifies what it reads).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.errors import PathError, StorageError


@dataclass(frozen=True)
class StoredWitnessState:
    origin: str
    checkpoint: str
    cosigned_at: int


class WitnessStateStore(ABC):
    """The witness's memory. Callers serialise `latest`/`save` pairs themselves."""

    @abstractmethod
    def latest(self, origin: str) -> StoredWitnessState | None: ...

    @abstractmethod
    def save(self, state: StoredWitnessState) -> None: ...

    @abstractmethod
    def record_misbehaviour(self, entry: dict[str, Any]) -> bool:
        """Append `entry`; False (and nothing appended) when the log is full."""

    @abstractmethod
    def misbehaviour(self) -> list[dict[str, Any]]: ...

    def close(self) -> None:  # noqa: B027 (optional hook: most stores hold nothing)
        """Release whatever the store holds (a lock)."""


MAX_MISBEHAVIOUR_BYTES = 16 * 1024 * 1024


def _entry_line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True) + "\n"


class MemoryWitnessState(WitnessStateStore):
    def __init__(self, max_misbehaviour_bytes: int = MAX_MISBEHAVIOUR_BYTES) -> None:
        self._states: dict[str, StoredWitnessState] = {}
        self._evidence: list[dict[str, Any]] = []
        self._evidence_bytes = 0
        self._max_evidence = max_misbehaviour_bytes

    def latest(self, origin: str) -> StoredWitnessState | None:
        return self._states.get(origin)

    def save(self, state: StoredWitnessState) -> None:
        self._states[state.origin] = state

    def record_misbehaviour(self, entry: dict[str, Any]) -> bool:
        size = len(_entry_line(entry).encode("utf-8"))
        if self._evidence_bytes + size > self._max_evidence:
            return False
        self._evidence.append(dict(entry))
        self._evidence_bytes += size
        return True

    def misbehaviour(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._evidence]


def _state_name(origin: str) -> str:
    return hashlib.sha256(origin.encode("utf-8")).hexdigest() + ".json"


MARKER = "witness.json"


def _holds_state(folder: Path) -> bool:
    logs = folder / "logs"
    try:
        return logs.is_dir() and any(p.suffix == ".json" for p in logs.iterdir())
    except OSError:
        return False


class DirectoryWitnessState(WitnessStateStore):
    def __init__(
        self,
        folder: Path,
        *,
        init: bool = False,
        max_misbehaviour_bytes: int = MAX_MISBEHAVIOUR_BYTES,
    ) -> None:
        import fcntl

        self._folder = folder
        self._max_evidence = max_misbehaviour_bytes
        self._logs = folder / "logs"
        if not init:
            _require_initialised(folder)
        try:
            self._logs.mkdir(parents=True, exist_ok=True)
            self._lock = open(folder / "witness.lock", "a+b")  # noqa: SIM115 (held while open)
        except OSError as exc:
            raise PathError(
                f"{folder}: cannot use as witness state: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise StorageError(
                f"{folder}: another witness process is using this state folder"
            ) from exc
        try:
            self._mark(folder, init)
        except BaseException:
            self.close()
            raise

    def _mark(self, folder: Path, init: bool) -> None:
        marker = folder / MARKER
        if init and (marker.exists() or _holds_state(folder)):
            raise PathError(
                f"{folder}: already holds a witness's state; start without --init (--init is "
                "for the witness's first start only)"
            )
        if init or not marker.exists():
            try:
                with open(marker, "x", encoding="utf-8") as handle:
                    handle.write(json.dumps({"format": 1}) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                _fsync_folder(folder)
            except OSError as exc:
                raise StorageError(f"{marker}: cannot write: {exc.strerror or exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._lock.close()

    def latest(self, origin: str) -> StoredWitnessState | None:
        path = self._logs / _state_name(origin)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StorageError(f"{path}: unreadable witness state: {exc}") from exc
        try:
            state = StoredWitnessState(
                str(data["origin"]), str(data["checkpoint"]), int(data["cosigned_at"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{path}: malformed witness state: {exc}") from exc
        if state.origin != origin:
            raise StorageError(f"{path}: holds the state of {state.origin!r}, not {origin!r}")
        return state

    def save(self, state: StoredWitnessState) -> None:
        path = self._logs / _state_name(state.origin)
        body = json.dumps(
            {
                "origin": state.origin,
                "checkpoint": state.checkpoint,
                "cosigned_at": state.cosigned_at,
            },
            sort_keys=True,
        )
        try:
            fd, temporary = tempfile.mkstemp(prefix=".state-", dir=self._logs)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(body + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            _fsync_folder(self._logs)
        except OSError as exc:
            raise StorageError(f"{path}: cannot save witness state: {exc}") from exc

    def record_misbehaviour(self, entry: dict[str, Any]) -> bool:
        path = self._folder / "misbehaviour.jsonl"
        line = _entry_line(entry).encode("utf-8")
        try:
            with open(path, "ab") as handle:
                if handle.tell() + len(line) > self._max_evidence:
                    return False
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(f"{path}: cannot record misbehaviour: {exc}") from exc
        return True

    def misbehaviour(self) -> list[dict[str, Any]]:
        path = self._folder / "misbehaviour.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"{path}: unreadable: {exc}") from exc
        entries = []
        for line in lines:
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries


def _require_initialised(folder: Path) -> None:
    """Refuse a state folder that is missing or was never initialised (see `MARKER`)."""
    lost = (
        "If this is the witness's first start, give --init. If its state was lost, do not start "
        "it over: a witness that forgets what it cosigned can be made to cosign a rewritten "
        "history; restore the folder from a backup, or start a new witness under a new name "
        "and key."
    )
    if not folder.exists():
        raise PathError(f"{folder}: no witness state here (missing, or it was lost). {lost}")
    if not folder.is_dir():
        raise PathError(f"{folder}: not a folder")
    if not (folder / MARKER).exists() and not _holds_state(folder):
        raise PathError(f"{folder}: holds no witness state (empty, or it was lost). {lost}")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
