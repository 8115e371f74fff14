"""The registry's side of witnessing: ask witnesses to cosign a fresh checkpoint, store the
cosigned note, and say which witnesses vouched for the latest checkpoint.

Asking follows C2SP tlog-witness: the request carries the size the witness is believed to hold
(the largest checkpoint of ours it is known to have cosigned, else 0) and a consistency proof from
there; a `409` with `text/x.tlog.size` names the witness's real size, and the request is sent
once more with a proof from that size. A witness that holds a size larger than ours, or refuses
our proof, is reported, never retried. Cosignatures are verified with the witness's configured
key before they are kept; the cosigned note is stored as another row of `ledger_checkpoints`
(same size and root, the log's signature plus the witnesses'), so nothing is overwritten.

The transport (URL, body → response) is injected: HTTP in the CLI, a `WitnessService` called
in-process in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelward.core.checkpoint import (
    Checkpoint,
    SignedNote,
    open_checkpoint,
    parse_signed_note,
)
from modelward.core.cosignature import (
    Cosignature,
    WitnessTally,
    add_signatures,
    tally_cosignatures,
    verify_cosignature,
)
from modelward.core.witness_protocol import (
    SIZE_CONTENT_TYPE,
    AddCheckpointRequest,
    WitnessResponse,
    decimal_size,
    parse_cosignature_lines,
)
from modelward.errors import InputError, ModelwardError
from modelward.services.audit import AuditService
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.witness_config import WitnessEndpoint

Transport = Callable[[str, bytes], WitnessResponse]
"""POSTs a body to a witness URL and returns its answer (status 0: unreachable)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WitnessOutcome:
    """What one witness answered: its cosignature, or why there is none."""

    name: str
    url: str
    cosignature: Cosignature | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.cosignature is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "ok": self.ok,
            "timestamp": None if self.cosignature is None else self.cosignature.timestamp,
            "error": self.error,
        }


@dataclass(frozen=True)
class WitnessedCheckpoint:
    checkpoint: Checkpoint
    note: str  # the log's signature and every cosignature collected
    outcomes: tuple[WitnessOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checkpoint": self.checkpoint.to_dict(),
            "note": self.note,
            "witnesses": [o.to_dict() for o in self.outcomes],
        }


@dataclass(frozen=True)
class WitnessReport:
    """Which configured witnesses vouched for the latest issued checkpoint."""

    size: int | None
    tally: WitnessTally
    required: int
    latest_quorum_size: int | None

    @property
    def ok(self) -> bool:
        return len(self.tally.vouched) >= self.required

    def problems(self) -> list[str]:
        if self.ok:
            return []
        if self.size is None:
            return [f"no checkpoint has been issued; {self.required} witnesses are required"]
        names = ", ".join(c.name for c in self.tally.vouched) or "none"
        quorum = (
            f"; the latest checkpoint with {self.required} is of size {self.latest_quorum_size}"
            if self.latest_quorum_size is not None
            else ""
        )
        return [
            f"the latest checkpoint (size {self.size}) is vouched for by "
            f"{len(self.tally.vouched)} distinct witness key(s) ({names}), {self.required} "
            f"required{quorum}",
            *self.tally.invalid,
            *self.tally.duplicates,
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "required": self.required,
            "latest_quorum_size": self.latest_quorum_size,
            **self.tally.to_dict(),
        }


class WitnessingService:
    """Collects and checks cosignatures on the checkpoints `audit` issues."""

    def __init__(
        self,
        database: Database,
        audit: AuditService,
        transport: Transport,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._audit = audit
        self._db = database
        self._transport = transport
        self._clock = clock

    def checkpoint(self, witnesses: Sequence[WitnessEndpoint]) -> WitnessedCheckpoint:
        """Issue a checkpoint, ask each witness to cosign it, store the cosigned note."""
        if not witnesses:
            raise InputError("no witnesses to ask: add one with `modelward audit witness add`")
        text = self._audit.checkpoint()
        checkpoint = open_checkpoint(text, self._audit.verifier)
        note = parse_signed_note(text)
        outcomes = []
        lines = []
        for witness in witnesses:
            outcome, signatures = self._ask(witness, text, checkpoint, note)
            outcomes.append(outcome)
            lines.extend(signatures)
        merged = add_signatures(note, lines)
        merged_text = merged.to_text()
        if lines:
            with self._db.transaction() as conn:
                repo = LedgerRepository(conn)
                if not any(s.note == merged_text for s in repo.checkpoint_at(checkpoint.size)):
                    repo.record_checkpoint(
                        checkpoint.size, checkpoint.root_hash, merged_text, self._clock()
                    )
        return WitnessedCheckpoint(checkpoint, merged_text, tuple(outcomes))

    def _ask(
        self, witness: WitnessEndpoint, text: str, checkpoint: Checkpoint, note: SignedNote
    ) -> tuple[WitnessOutcome, list[Any]]:
        old_size = self._known_size(witness, checkpoint.size)
        for _attempt in range(2):
            try:
                proof = self._audit.consistency_hashes(old_size, checkpoint.size)
            except ModelwardError as exc:
                return self._failed(witness, f"cannot prove consistency: {exc}"), []
            body = AddCheckpointRequest(old_size, tuple(proof), text).to_text().encode()
            reply = self._transport(witness.add_checkpoint_url, body)
            if reply.status == 200:
                return self._accept(witness, note, reply.body)
            message = reply.body.decode("utf-8", "replace").strip()[:300]
            if reply.status == 409 and reply.content_type == SIZE_CONTENT_TYPE:
                try:
                    held = decimal_size(message, "witness size")
                except ModelwardError:
                    return self._failed(witness, f"409 with a malformed size {message!r}"), []
                if held > checkpoint.size:
                    return self._failed(
                        witness,
                        f"the witness has cosigned size {held} of this log, more than its "
                        f"{checkpoint.size} events: the log was rolled back or forked",
                    ), []
                old_size = held
                continue
            status = "unreachable" if reply.status == 0 else f"refused ({reply.status})"
            return self._failed(witness, f"{status}: {message}"), []
        return self._failed(witness, "the witness changed its size twice; try again"), []

    def _accept(
        self, witness: WitnessEndpoint, note: SignedNote, body: bytes
    ) -> tuple[WitnessOutcome, list[Any]]:
        try:
            signatures = parse_cosignature_lines(body)
            mine = [
                s for s in signatures if (s.name, s.key_id) == (witness.name, witness.key.key_id)
            ]
            cosigned = add_signatures(note, mine)
            now = int(self._clock().timestamp())
            cosignature = verify_cosignature(cosigned, witness.key, now)
        except ModelwardError as exc:
            return self._failed(witness, f"bad cosignature: {exc}"), []
        return WitnessOutcome(witness.name, witness.url, cosignature), mine

    @staticmethod
    def _failed(witness: WitnessEndpoint, error: str) -> WitnessOutcome:
        return WitnessOutcome(witness.name, witness.url, None, error)

    def _known_size(self, witness: WitnessEndpoint, limit: int) -> int:
        """The largest size of ours (up to `limit`) this witness is recorded to have cosigned."""
        best = 0
        with self._db.read() as conn:
            stored = LedgerRepository(conn).checkpoints()
        for row in stored:
            if witness.name not in row.note:
                continue
            if best < row.size <= limit and _cosigned_by(row.note, witness):
                best = row.size
        return best

    def report(self, witnesses: Sequence[WitnessEndpoint], required: int) -> WitnessReport:
        """Which of `witnesses` cosigned the latest issued checkpoint (all stored notes of that
        size and root are merged), and the latest size at least `required` of them cosigned."""
        if required < 0:
            raise InputError("the number of witnesses required must not be negative")
        keys = [w.key for w in witnesses]
        with self._db.read() as conn:
            stored = LedgerRepository(conn).checkpoints()
        groups: dict[tuple[int, bytes], list[str]] = {}
        for row in stored:
            groups.setdefault((row.size, bytes(row.root_hash)), []).append(row.note)
        now = int(self._clock().timestamp())
        latest: tuple[int, WitnessTally] | None = None
        quorum = None
        # newest first; notes are verified only as far as the answer needs
        for key in sorted(groups, key=lambda k: k[0], reverse=True):
            note = self._merged(key, groups[key])
            if note is None:
                continue  # `audit verify` reports checkpoints that do not verify
            tally = tally_cosignatures(note, keys, now)
            if latest is None:
                latest = (key[0], tally)
            if len(tally.vouched) >= max(required, 1):
                quorum = key[0]
                break
        if latest is None:
            missing = tuple(k.name for k in keys)
            return WitnessReport(None, WitnessTally((), missing, ()), required, None)
        return WitnessReport(latest[0], latest[1], required, quorum)

    def _merged(self, key: tuple[int, bytes], notes: list[str]) -> SignedNote | None:
        """Every signature of the stored notes of one (size, root) that the log really signed."""
        merged = None
        for text in notes:
            try:
                checkpoint = open_checkpoint(text, self._audit.verifier)
                note = parse_signed_note(text)
            except ModelwardError:
                continue
            if (checkpoint.size, checkpoint.root_hash) != key:
                continue
            merged = note if merged is None else add_signatures(merged, note.signatures)
        return merged


def _cosigned_by(note_text: str, witness: WitnessEndpoint) -> bool:
    try:
        verify_cosignature(parse_signed_note(note_text), witness.key)
    except ModelwardError:
        return False
    return True
