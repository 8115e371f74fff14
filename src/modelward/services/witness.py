"""The witness: cosigns a log's checkpoint only after checking it extends the last one it cosigned
for that log (C2SP tlog-witness `add-checkpoint`), and keeps evidence of a log that equivocates.

Only a verified split view is evidence: two checkpoints signed by the log's key for one size with
different roots. A consistency proof that does not hold is refused but not logged (anyone can
replay a public checkpoint with a bad proof; it proves nothing against the log). What is kept
(the state and the evidence) carries only the signature lines a trusted log key made, never
lines the client added; the store caps the evidence log's size and the service reports when it
is full (`on_misbehaviour`, the server log).

One request at a time per witness: the check of the old size and the persisting of the new state
happen under one lock, so concurrent requests cannot roll the witness back (tlog-witness, "MUST
be performed atomically"); the state store's folder lock keeps other processes out. What the
store returns is re-verified against the log's keys before it is trusted. Refusals are the typed
errors of `core.witness_protocol`; the HTTP edge maps them to statuses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core.checkpoint import (
    NoteSignature,
    NoteVerifier,
    SignedNote,
    parse_checkpoint_body,
    parse_signed_note,
    verify_note,
)
from modelward.core.cosignature import CosignerKey, cosign
from modelward.core.witness_protocol import (
    AddCheckpointRequest,
    WitnessedState,
    decide_add_checkpoint,
    parse_add_checkpoint,
)
from modelward.errors import (
    ModelwardError,
    SignatureMismatchError,
    SplitViewError,
    StorageError,
)
from modelward.storage.witness_state import StoredWitnessState, WitnessStateStore


def _posix_now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Cosigned:
    """A successful `add-checkpoint`: the response lines and what was cosigned."""

    origin: str
    size: int
    timestamp: int
    lines: str


class WitnessService:
    """Cosigns checkpoints of the logs in `logs` (origin → trusted log keys) as witness `name`."""

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        logs: Mapping[str, Sequence[NoteVerifier]],
        store: WitnessStateStore,
        clock: Callable[[], int] = _posix_now,
        on_misbehaviour: Callable[[str], None] | None = None,
    ) -> None:
        self.key = CosignerKey.from_public_key(name, key.public_key())
        self._name = name
        self._private = key
        self._logs = {origin: tuple(keys) for origin, keys in logs.items()}
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._report = on_misbehaviour

    def add_checkpoint(self, body: bytes | str | AddCheckpointRequest) -> Cosigned:
        request = body if isinstance(body, AddCheckpointRequest) else parse_add_checkpoint(body)
        origin = parse_checkpoint_body(parse_signed_note(request.checkpoint).text).origin
        with self._lock:
            latest = self._latest(origin) if origin in self._logs else None
            try:
                checkpoint, note = decide_add_checkpoint(request, self._logs, latest)
            except SplitViewError as exc:
                self._misbehaviour("split-view", str(exc), request, latest)
                raise
            now = self._clock()
            if latest is None or checkpoint.size != latest.checkpoint.size:
                kept = _log_signed(note, self._logs[origin])
                self._store.save(StoredWitnessState(origin, kept.to_text(), now))
            line = cosign(note.text, self._name, self._private, now).line()
        return Cosigned(origin, checkpoint.size, now, line)

    def latest(self, origin: str) -> WitnessedState | None:
        """What the witness last cosigned for `origin` (re-verified)."""
        with self._lock:
            return self._latest(origin)

    def _latest(self, origin: str) -> WitnessedState | None:
        stored = self._store.latest(origin)
        if stored is None:
            return None
        try:
            note = parse_signed_note(stored.checkpoint)
            checkpoint = parse_checkpoint_body(note.text)
            if checkpoint.origin != origin:
                raise SignatureMismatchError(f"it is a checkpoint of {checkpoint.origin!r}")
            if not any(_verifies(note.to_text(), v) for v in self._logs.get(origin, ())):
                raise SignatureMismatchError("no trusted key of the log signed it")
        except ModelwardError as exc:
            raise StorageError(
                f"the witness's stored state for {origin!r} does not verify ({exc}); "
                "refusing to cosign"
            ) from exc
        return WitnessedState(checkpoint, stored.checkpoint)

    def _misbehaviour(
        self,
        kind: str,
        message: str,
        request: AddCheckpointRequest,
        latest: WitnessedState | None,
    ) -> None:
        verifiers = self._logs.get(latest.checkpoint.origin, ()) if latest else ()
        entry = {
            "kind": kind,
            "time": self._clock(),
            "message": message,
            "old_size": request.old_size,
            "offered": _log_signed(parse_signed_note(request.checkpoint), verifiers).to_text(),
            "cosigned": (
                None
                if latest is None
                else _log_signed(parse_signed_note(latest.note), verifiers).to_text()
            ),
        }
        recorded = self._store.record_misbehaviour(entry)
        if self._report is not None:
            self._report(f"{kind}: {message}")
            if not recorded:
                self._report(
                    "the misbehaviour log is full: this evidence was not recorded (keep the "
                    "log elsewhere and empty it to record more)"
                )


def _log_signed(note: SignedNote, verifiers: Sequence[NoteVerifier]) -> SignedNote:
    """`note` with only the signature lines one of the log's `verifiers` made, each once."""
    message = note.text.encode("utf-8")
    kept: list[NoteSignature] = []
    for sig in note.signatures:
        if sig in kept:
            continue
        for verifier in verifiers:
            if (sig.name, sig.key_id) == (verifier.name, verifier.key_id) and (
                len(sig.signature) == 64 and verifier.verify(message, sig.signature)
            ):
                kept.append(sig)
                break
    return SignedNote(note.text, tuple(kept))


def _verifies(note: str, verifier: NoteVerifier) -> bool:
    try:
        verify_note(note, verifier)
    except SignatureMismatchError:
        return False
    return True
