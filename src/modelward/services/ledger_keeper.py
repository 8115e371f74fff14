"""The ledger's keeper: seals every appended event and issues checkpoints without being asked.

An event's *seal* is `HMAC-SHA256(K, leaf_hash)`, K derived with HKDF-SHA256 from the ledger's
private key, so someone who can write the database but holds no key cannot append or edit an
event that still carries a valid seal. After every append, when at least `every_events` events
or `every_seconds` seconds passed since the latest checkpoint (or there is none), the keeper
signs a checkpoint in the same transaction and, once the transaction committed, also writes it
to the blob store's append-only `checkpoints/` area, outside the database.

The keeper reaches `LedgerRepository` through the connection (`Database.connection_info`), so
the services that append events need not know about it. It does not verify the whole log
(that is `AuditService.verify`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from modelward.core import merkle
from modelward.core.checkpoint import Checkpoint, sign_checkpoint
from modelward.errors import ModelwardError
from modelward.storage.blobs.base import BlobStore
from modelward.storage.metadata.database import AFTER_COMMIT
from modelward.storage.metadata.ledger_repository import (
    LedgerEvent,
    LedgerRepository,
    event_leaf_data,
)

CHECKPOINT_AREA = "checkpoints"
DEFAULT_CHECKPOINT_EVENTS = 100
DEFAULT_CHECKPOINT_SECONDS = 300.0
SETTING_CHECKPOINT_EVENTS = "ledger.checkpoint_every_events"
SETTING_CHECKPOINT_SECONDS = "ledger.checkpoint_every_seconds"
_SEAL_INFO = b"modelward ledger event seal v1"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def seal_key(ledger_key: Ed25519PrivateKey) -> bytes:
    """The HMAC key of the event seals, derived from the ledger's private key."""
    raw = ledger_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(raw)


def checkpoint_record_name(size: int, root_hash: bytes) -> str:
    """The name of a published checkpoint: sorts by size, unique per (size, root)."""
    return f"{size:016d}-{root_hash.hex()[:32]}.note"


def parse_checkpoint_record_name(name: str) -> int | None:
    head, sep, _ = name.partition("-")
    return int(head) if sep and head.isdigit() and name.endswith(".note") else None


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class LedgerKeeper:
    """Seals events with the ledger key and issues (and publishes) checkpoints."""

    def __init__(
        self,
        ledger_key: Ed25519PrivateKey,
        origin: str,
        blobs: BlobStore | None = None,
        *,
        every_events: int = DEFAULT_CHECKPOINT_EVENTS,
        every_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.origin = origin
        self.blobs = blobs
        self.every_events = every_events
        self.every_seconds = every_seconds
        self._key = ledger_key
        self._seal_key = seal_key(ledger_key)
        self._clock = clock

    # -- seals ------------------------------------------------------------------------------

    def seal(self, leaf_hash: bytes) -> bytes:
        return hmac.new(self._seal_key, leaf_hash, hashlib.sha256).digest()

    def seal_ok(self, leaf_hash: bytes, seal: bytes | None) -> bool:
        return seal is not None and hmac.compare_digest(self.seal(leaf_hash), bytes(seal))

    def event_problem(self, event: LedgerEvent) -> str | None:
        """Why a stored event cannot be trusted (its fields, leaf or seal), or None."""
        digest = "sha256:" + hashlib.sha256(event.details_json.encode("utf-8")).hexdigest()
        if digest != event.details_digest:
            return f"ledger event {event.seq}: its details do not match their recorded digest"
        try:
            leaf = merkle.leaf_hash(
                event_leaf_data(
                    event.seq,
                    event.recorded_at,
                    event.actor,
                    event.action,
                    event.subject,
                    event.details_digest,
                )
            )
        except ModelwardError:
            return f"ledger event {event.seq}: its fields cannot be written as canonical JSON"
        if leaf != event.leaf_hash:
            return f"ledger event {event.seq}: its fields do not hash to its recorded leaf"
        if event.seal is None:
            return f"ledger event {event.seq} carries no seal"
        if not self.seal_ok(leaf, event.seal):
            return f"ledger event {event.seq}: its seal is not the ledger key's"
        return None

    # -- checkpoints ------------------------------------------------------------------------

    def appended(self, repo: LedgerRepository, events: Sequence[LedgerEvent]) -> None:
        """After an append: issue a checkpoint when one is due (same transaction)."""
        latest = repo.latest_checkpoint()
        now = self._clock()
        size = events[-1].seq + 1
        if latest is not None:
            if latest.size >= size:
                return
            last_time = _parse_time(latest.created_at)
            elapsed = None if last_time is None else (now - last_time).total_seconds()
            if size - latest.size < self.every_events and (
                elapsed is not None and elapsed < self.every_seconds
            ):
                return
        self.issue(repo, now)

    def issue(self, repo: LedgerRepository, now: datetime | None = None) -> tuple[str, Checkpoint]:
        """Sign a checkpoint of the ledger as it is in `repo`'s transaction, store it (unless
        the same note is stored) and publish it outside the database once that commits."""
        size = repo.size()
        positions = merkle.frontier_positions(size)
        reader = merkle.reader_from_mapping(repo.nodes(positions) if positions else {})
        root = merkle.root_from_nodes(size, reader)
        checkpoint = Checkpoint(self.origin, size, root)
        note = sign_checkpoint(checkpoint, self.origin, self._key)
        if not any(stored.note == note for stored in repo.checkpoint_at(size)):
            repo.record_checkpoint(size, root, note, now or self._clock())
        if self.blobs is not None:
            callbacks = repo.connection.info.setdefault(AFTER_COMMIT, [])
            callbacks.append(lambda: self.publish(note, size, root))
        return note, checkpoint

    def publish(self, note: str, size: int, root_hash: bytes) -> bool:
        """Write a checkpoint to the blob store's `checkpoints/` (never overwriting); a store
        that fails is not fatal: the checkpoint is in the database and the next one retries."""
        if self.blobs is None:
            return False
        try:
            return self.blobs.put_named(
                CHECKPOINT_AREA, checkpoint_record_name(size, root_hash), note.encode("utf-8")
            )
        except ModelwardError:
            return False


def published_checkpoints(blobs: BlobStore) -> list[tuple[int, str]]:
    """(size, record name) of the checkpoints published in the blob store, largest last."""
    found = []
    for name in blobs.list_named(CHECKPOINT_AREA):
        size = parse_checkpoint_record_name(name)
        if size is not None:
            found.append((size, name))
    return sorted(found)
