"""The audit service: read the ledger, issue signed checkpoints and proofs, verify the whole log.

Events are appended by the services that change state, with
`LedgerRepository(conn).append(...)` inside their own `Database.transaction()`; this service never
appends. `verify` recomputes every leaf from the stored event fields, every stored Merkle node and
the root, checks every event's seal (from the sealed `registry.init`, or the `ledger.baseline`
written when an older registry was upgraded), checks every issued checkpoint in the database and
every one published in the blob store's `checkpoints/` (signature and root: the log must extend
each), proves consistency with an older checkpoint the caller holds, and runs the state checks
other services hand in. A tampered log is
reported in the `AuditReport`, never raised; only malformed input (an unreadable checkpoint file)
raises. `verify_proof_file` checks an exported tlog-proof offline, without a database;
`consistency` exports a `modelward.consistency/v1` proof between two of the log's checkpoints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from modelward.core import merkle
from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    TlogProof,
    open_checkpoint,
    parse_checkpoint_body,
    parse_signed_note,
    parse_tlog_proof,
    verify_tlog_proof,
)
from modelward.core.consistency import ConsistencyProof
from modelward.errors import (
    InputError,
    ModelwardError,
    NoteFormatError,
    NotFoundError,
    ProofError,
    SignatureMismatchError,
)
from modelward.services.context import RegistryContext
from modelward.services.ledger_keeper import CHECKPOINT_AREA, LedgerKeeper, published_checkpoints
from modelward.services.state_integrity import BASELINE_ACTION
from modelward.storage.blobs.base import BlobStore
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import (
    LedgerEvent,
    LedgerRepository,
    event_leaf_data,
)

StateCheck = Callable[[Connection], list[str]]
"""A check of the registry's state against the ledger: takes a read connection, returns problems."""

MAX_LISTED_PROBLEMS = 50
_MISSING_LEAF = hashlib.sha256(b"modelward: missing ledger event").digest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditReport:
    """What `verify` found. `ok` is true only if there are no problems."""

    size: int
    root_hash: bytes
    problems: tuple[str, ...] = ()
    checkpoints_checked: int = 0
    consistent_with_size: int | None = None
    omitted_problems: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted_problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "root_hash": self.root_hash.hex(),
            "problems": list(self.problems),
            "omitted_problems": self.omitted_problems,
            "checkpoints_checked": self.checkpoints_checked,
            "consistent_with_size": self.consistent_with_size,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditReport:
        try:
            return cls(
                size=int(data["size"]),
                root_hash=bytes.fromhex(str(data["root_hash"])),
                problems=tuple(str(p) for p in data.get("problems", ())),
                checkpoints_checked=int(data.get("checkpoints_checked", 0)),
                consistent_with_size=data.get("consistent_with_size"),
                omitted_problems=int(data.get("omitted_problems", 0)),
                notes=tuple(str(n) for n in data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not an audit report: {exc}") from exc


class _Problems:
    """Collects problems, keeping the report readable when millions of rows are wrong."""

    def __init__(self) -> None:
        self.listed: list[str] = []
        self.omitted = 0

    def add(self, message: str) -> None:
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(message)
        else:
            self.omitted += 1


@dataclass(frozen=True)
class ProofCheck:
    """A verified exported proof: the checkpoint it is anchored in and the entry's leaf data."""

    checkpoint: Checkpoint
    index: int
    leaf_data: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.to_dict(),
            "index": self.index,
            "leaf_data": self.leaf_data.decode("utf-8", "replace"),
        }


def verify_proof_file(
    text: str | bytes,
    public_key: Ed25519PublicKey | NoteVerifier,
    event_leaf_data: bytes | None = None,
    origin: str | None = None,
) -> ProofCheck:
    """Check an exported tlog-proof offline. The entry is `event_leaf_data` if given, else the
    proof's `extra` data (modelward puts the event's canonical leaf there). `origin` pins the log;
    without it the checkpoint's own origin is used as the key name. Raises NoteFormatError for
    malformed input, SignatureMismatchError or ProofError for a proof that does not hold."""
    proof = parse_tlog_proof(text)
    leaf_data = event_leaf_data if event_leaf_data is not None else proof.extra
    if leaf_data is None:
        raise InputError("the proof carries no entry data; give the event's leaf data")
    if isinstance(public_key, NoteVerifier):
        verifier = public_key
    else:
        claimed = parse_checkpoint_body(parse_signed_note(proof.checkpoint).text).origin
        verifier = NoteVerifier.from_public_key(origin or claimed, public_key)
    checkpoint = verify_tlog_proof(proof, verifier, merkle.leaf_hash(leaf_data), origin)
    return ProofCheck(checkpoint, proof.index, leaf_data)


class AuditService:
    """Reads and proves the ledger; its checkpoints are signed as `origin` with the given key."""

    def __init__(
        self,
        database: Database,
        note_signer_key: Ed25519PrivateKey,
        origin: str,
        clock: Callable[[], datetime] = _utc_now,
        *,
        actor: str | None = None,
        blobs: BlobStore | None = None,
        keeper: LedgerKeeper | None = None,
        retired_keys: Sequence[object] = (),
    ) -> None:
        # With an actor (the CLI and any registry edge), reading the log needs the `view` role;
        # without one this is a bare ledger reader for code that already holds the database.
        self.actor = actor
        self._db = database
        self._key = note_signer_key
        self._clock = clock
        self._blobs = blobs if blobs is not None else (keeper.blobs if keeper else None)
        self.keeper = keeper or LedgerKeeper(note_signer_key, origin, self._blobs, clock=clock)
        self.verifier = NoteVerifier.from_public_key(origin, note_signer_key.public_key())
        # checkpoints signed before a `keys rotate --ledger` verify with the retired keys
        self.retired = tuple(
            NoteVerifier.from_public_key(origin, k)
            for k in retired_keys
            if isinstance(k, Ed25519PublicKey)
        )
        self.origin = origin

    # -- reading and issuing ----------------------------------------------------------------

    def log(self, start: int = 0, limit: int | None = None) -> list[LedgerEvent]:
        """Events from `start` in order, at most `limit` of them."""
        if start < 0 or (limit is not None and limit < 0):
            raise InputError("start and limit must not be negative")
        with self._db.read() as conn:
            if self.actor is not None:
                from modelward.core.roles import Action
                from modelward.services.users import require

                require(conn, self.actor, Action.VIEW)
            stop = None if limit is None else start + limit
            return list(LedgerRepository(conn).events(start, stop))

    def checkpoint(self) -> str:
        """A signed checkpoint of the ledger as it is now (stored as issued)."""
        with self._db.transaction() as conn:
            return self._issue_checkpoint(LedgerRepository(conn))[0]

    def proof(self, seq: int) -> str:
        """The tlog-proof of event `seq` under a fresh checkpoint; `extra` is its leaf data."""
        with self._db.transaction() as conn:
            repo = LedgerRepository(conn)
            note, checkpoint = self._issue_checkpoint(repo)
            if not 0 <= seq < checkpoint.size:
                raise NotFoundError(f"ledger event {seq} does not exist (size {checkpoint.size})")
            event = repo.event(seq)
            hashes = _stored_inclusion_proof(repo, seq, checkpoint.size)
        return TlogProof(seq, tuple(hashes), note, event.leaf_data()).to_text()

    def inclusion_proofs(self, seqs: Sequence[int], checkpoint_text: str | bytes) -> list[str]:
        """The tlog-proofs of events `seqs` under checkpoint `checkpoint_text` (this log's,
        signed by its key, agreeing with the stored tree), in one read."""
        note = parse_signed_note(checkpoint_text).to_text()
        checkpoint = open_checkpoint(note, self.verifier)
        with self._db.read() as conn:
            repo = LedgerRepository(conn)
            if checkpoint.size > repo.size() or _stored_root(repo, checkpoint.size) != (
                checkpoint.root_hash
            ):
                raise ProofError(f"the checkpoint of size {checkpoint.size} is not of this log")
            proofs = []
            for seq in seqs:
                if not 0 <= seq < checkpoint.size:
                    raise NotFoundError(
                        f"ledger event {seq} is not under the checkpoint (size {checkpoint.size})"
                    )
                hashes = _stored_inclusion_proof(repo, seq, checkpoint.size)
                leaf = repo.event(seq).leaf_data()
                proofs.append(TlogProof(seq, tuple(hashes), note, leaf).to_text())
        return proofs

    def consistency(self, old_text: str | bytes, new_text: str | bytes | None = None) -> str:
        """A `modelward.consistency/v1` proof that checkpoint `new_text` (default: a fresh one)
        extends `old_text`; both must be this log's, signed by its key, and agree with it."""
        old_note = parse_signed_note(old_text).to_text()
        old = open_checkpoint(old_note, self.verifier)
        with self._db.transaction() as conn:
            repo = LedgerRepository(conn)
            if new_text is None:
                new_note, new = self._issue_checkpoint(repo)
            else:
                new_note = parse_signed_note(new_text).to_text()
                new = open_checkpoint(new_note, self.verifier)
            if old.size > new.size:
                raise InputError(
                    f"the old checkpoint (size {old.size}) is newer than the new one "
                    f"(size {new.size})"
                )
            hashes = self.consistency_hashes(old.size, new.size, repo, (old, new))
        return ConsistencyProof(old_note, new_note, tuple(hashes)).to_text()

    def consistency_hashes(
        self,
        old_size: int,
        new_size: int,
        repo: LedgerRepository | None = None,
        expect: Sequence[Checkpoint] = (),
    ) -> list[bytes]:
        """The RFC 9162 consistency proof between two sizes of this log, from its stored nodes
        (empty when `old_size` is 0 or equal to `new_size`). Each checkpoint in `expect` must
        match the log's root at its size, else ProofError."""
        if repo is None:
            with self._db.read() as conn:
                return self.consistency_hashes(old_size, new_size, LedgerRepository(conn), expect)
        size = repo.size()
        if not 0 <= old_size <= new_size:
            raise InputError(f"no consistency proof from size {old_size} to size {new_size}")
        for checkpoint in expect:
            if checkpoint.size > size:
                raise ProofError(
                    f"the checkpoint of size {checkpoint.size} is larger than the log ({size})"
                )
            if _stored_root(repo, checkpoint.size) != checkpoint.root_hash:
                raise ProofError(
                    f"the checkpoint of size {checkpoint.size} is not of this log's history: "
                    "its root differs from the log's root at that size"
                )
        if new_size > size:
            raise InputError(f"the log has only {size} events, not {new_size}")
        if old_size == 0 or old_size == new_size:
            return []
        groups = merkle.consistency_proof_positions(old_size, new_size)
        reader = _batch_reader(repo, [pos for group in groups for pos in group])
        return merkle.consistency_proof(old_size, new_size, reader)

    def verify_proof_file(
        self, text: str | bytes, event_leaf_data: bytes | None = None
    ) -> ProofCheck:
        return verify_proof_file(text, self.verifier, event_leaf_data, self.origin)

    def _issue_checkpoint(self, repo: LedgerRepository) -> tuple[str, Checkpoint]:
        return self.keeper.issue(repo, self._clock())

    # -- verification ----------------------------------------------------------------------

    def verify(
        self,
        since_checkpoint_text: str | bytes | None = None,
        public_key: Ed25519PublicKey | NoteVerifier | None = None,
        state_checks: Sequence[StateCheck] = (),
    ) -> AuditReport:
        """Recompute and check the whole ledger; see the module docstring. Raises only for a
        malformed `since_checkpoint_text` (NoteFormatError)."""
        verifier = self._verifier_for(public_key)
        since_note = (
            None if since_checkpoint_text is None else parse_signed_note(since_checkpoint_text)
        )
        if since_note is not None:
            parse_checkpoint_body(since_note.text)
        problems = _Problems()
        with self._db.read() as conn:
            repo = LedgerRepository(conn)
            repo.begin_snapshot()
            size = repo.size()
            leaves, baseline = _check_events(repo, size, self.keeper, problems)
            levels = merkle.complete_levels(leaves) if leaves else [[]]
            _check_stored_nodes(repo, levels, problems)
            root = merkle.root_from_levels(levels, size) if size else merkle.EMPTY_ROOT
            if baseline is not None:
                _check_baseline(baseline, levels, problems)
            verifiers = (verifier, *self.retired)
            checked = _check_issued_checkpoints(repo, levels, size, verifiers, problems)
            if self._blobs is not None:
                checked += _check_published(self._blobs, levels, size, verifiers, problems)
            consistent = None
            if since_note is not None:
                consistent = _check_since(
                    since_note.to_text(), verifier, levels, size, root, problems
                )
            for check in state_checks:
                try:
                    for problem in check(conn):
                        problems.add(problem)
                except ModelwardError as exc:
                    problems.add(f"state check failed: {exc}")
        return AuditReport(
            size=size,
            root_hash=root,
            problems=tuple(problems.listed),
            checkpoints_checked=checked,
            consistent_with_size=consistent,
            omitted_problems=problems.omitted,
        )

    @classmethod
    def for_registry(cls, context: RegistryContext, actor: str | None = None) -> AuditService:
        """The audit service of an opened registry: its keeper (seals, published checkpoints)
        and the ledger keys retired by `keys rotate`."""
        return cls(
            context.database,
            context.ledger_key,
            context.origin,
            actor=actor,
            keeper=context.keeper,
            retired_keys=list(context.retired_keys.get("ledger", {}).values()),
        )

    def _verifier_for(self, public_key: Ed25519PublicKey | NoteVerifier | None) -> NoteVerifier:
        if public_key is None:
            return self.verifier
        if isinstance(public_key, NoteVerifier):
            return public_key
        return NoteVerifier.from_public_key(self.origin, public_key)


def _batch_reader(
    repo: LedgerRepository, positions: Sequence[merkle.Position]
) -> merkle.NodeReader:
    return merkle.reader_from_mapping(repo.nodes(positions) if positions else {})


def _stored_root(repo: LedgerRepository, size: int) -> bytes:
    return merkle.root_from_nodes(size, _batch_reader(repo, merkle.frontier_positions(size)))


def _stored_inclusion_proof(repo: LedgerRepository, index: int, size: int) -> list[bytes]:
    groups = merkle.inclusion_proof_positions(index, size)
    reader = _batch_reader(repo, [pos for group in groups for pos in group])
    return merkle.inclusion_proof(index, size, reader)


def _check_events(
    repo: LedgerRepository, size: int, keeper: LedgerKeeper, problems: _Problems
) -> tuple[list[bytes], tuple[int, str] | None]:
    """Recompute every leaf from the stored fields and check every seal; returns the
    recomputed leaf hashes and the (seq, details) of the `ledger.baseline` trust starts at."""
    leaves: list[bytes] = []
    append = leaves.append
    sha256 = hashlib.sha256
    leaf_hash = merkle.leaf_hash
    seal_ok = keeper.seal_ok
    started = False
    baseline: tuple[int, str] | None = None
    provisional: list[str] = []
    for batch in repo.event_rows(0, size):
        for row in batch:
            seq, recorded_at, actor, action, subject, details, digest, stored_leaf, seal = row
            while len(leaves) < seq:
                problems.add(f"event {len(leaves)} is missing")
                append(_MISSING_LEAF)
            if "sha256:" + sha256(details.encode("utf-8")).hexdigest() != digest:
                problems.add(f"event {seq}: details do not match their recorded digest")
            try:
                leaf = leaf_hash(event_leaf_data(seq, recorded_at, actor, action, subject, digest))
            except ModelwardError:
                problems.add(f"event {seq}: fields cannot be written as canonical JSON")
                leaf = _MISSING_LEAF
            if bytes(stored_leaf) != leaf:
                problems.add(f"event {seq}: stored fields do not hash to its recorded leaf")
            sealed = seal_ok(leaf, None if seal is None else bytes(seal))
            if not started and sealed and (seq == 0 or action == BASELINE_ACTION):
                started = True
                if seq != 0:
                    baseline = (seq, details)
            elif started and not sealed:
                problems.add(
                    f"event {seq}: "
                    + ("carries no seal" if seal is None else "its seal is not the ledger key's")
                    + " (appended or edited without the ledger key)"
                )
            elif not started and seal is not None and not sealed:
                # before a baseline: sealed by a rotated-out key (covered by the baseline's
                # root), reported only if no baseline follows
                provisional.append(f"event {seq}: its seal is not the ledger key's")
            append(leaf)
    if size and not started:
        for problem in provisional:
            problems.add(problem)
        problems.add(
            "neither the first event nor a ledger.baseline is sealed by the ledger key: the "
            "ledger cannot be trusted"
        )
    return leaves, baseline


def _check_baseline(
    baseline: tuple[int, str], levels: list[list[bytes]], problems: _Problems
) -> None:
    """The `ledger.baseline` recorded the tree before it: its size is its seq and its root the
    root of the events before it."""
    import json

    seq, details_json = baseline
    try:
        details = json.loads(details_json)
        size, root_hex = int(details["size"]), str(details["root_hash"])
    except (ValueError, KeyError, TypeError):
        problems.add(f"event {seq}: the ledger baseline does not record a size and a root")
        return
    if size != seq or _root_at(levels, size).hex() != root_hex:
        problems.add(
            f"event {seq}: the events before the ledger baseline no longer hash to the root "
            "it recorded"
        )


def _check_stored_nodes(
    repo: LedgerRepository, levels: list[list[bytes]], problems: _Problems
) -> None:
    stored_levels = set(repo.node_levels())
    for level in sorted(stored_levels | set(range(1, len(levels)))):
        expected = levels[level] if level < len(levels) else []
        seen = 0
        for batch in repo.level_nodes(level):
            for idx, value in batch:
                if idx >= len(expected):
                    problems.add(f"tree node (level {level}, index {idx}) covers no events")
                    continue
                while seen < idx:
                    problems.add(f"tree node (level {level}, index {seen}) is missing")
                    seen += 1
                if bytes(value) != expected[idx]:
                    problems.add(f"tree node (level {level}, index {idx}) does not match events")
                seen = idx + 1
        while seen < len(expected):
            problems.add(f"tree node (level {level}, index {seen}) is missing")
            seen += 1


def _root_at(levels: list[list[bytes]], size: int) -> bytes:
    return merkle.root_from_levels(levels, size) if size else merkle.EMPTY_ROOT


def _check_issued_checkpoints(
    repo: LedgerRepository,
    levels: list[list[bytes]],
    size: int,
    verifiers: Sequence[NoteVerifier],
    problems: _Problems,
) -> int:
    checked = 0
    for stored in repo.checkpoints():
        checked += 1
        where = f"issued checkpoint #{stored.id} (size {stored.size})"
        try:
            checkpoint = _open_with(stored.note, verifiers)
        except (NoteFormatError, SignatureMismatchError) as exc:
            problems.add(f"{where}: {exc}")
            continue
        if checkpoint.size != stored.size or checkpoint.root_hash != stored.root_hash:
            problems.add(f"{where}: stored size or root differs from its signed note")
        if checkpoint.size > size:
            problems.add(f"{where}: the log now has only {size} events; events were removed")
        elif _root_at(levels, checkpoint.size) != checkpoint.root_hash:
            problems.add(f"{where}: the events no longer hash to its signed root")
    return checked


def _open_with(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """The checkpoint, signed by the first of `verifiers` (the current key, then retired ones);
    the current key's error when none verifies."""
    first: SignatureMismatchError | None = None
    for verifier in verifiers:
        try:
            return open_checkpoint(note, verifier)
        except SignatureMismatchError as exc:
            first = first or exc
    assert first is not None
    raise first


def _check_published(
    blobs: BlobStore,
    levels: list[list[bytes]],
    size: int,
    verifiers: Sequence[NoteVerifier],
    problems: _Problems,
) -> int:
    """Every checkpoint published outside the database: the log must extend each one."""
    try:
        published = published_checkpoints(blobs)
    except ModelwardError as exc:
        problems.add(f"cannot read the published checkpoints: {exc}")
        return 0
    for _, name in published:
        where = f"published checkpoint {CHECKPOINT_AREA}/{name}"
        try:
            checkpoint = _open_with(blobs.get_named(CHECKPOINT_AREA, name), verifiers)
        except (NoteFormatError, SignatureMismatchError) as exc:
            problems.add(f"{where}: {exc}")
            continue
        except ModelwardError as exc:
            problems.add(f"{where}: cannot be read: {exc}")
            continue
        if checkpoint.size > size:
            problems.add(
                f"{where} has {checkpoint.size} events but the log has only {size}: events were "
                "removed"
            )
        elif _root_at(levels, checkpoint.size) != checkpoint.root_hash:
            problems.add(
                f"{where} (size {checkpoint.size}): the log is not an extension of it (the "
                "ledger was rewritten)"
            )
    return len(published)


def _check_since(
    note: str,
    verifier: NoteVerifier,
    levels: list[list[bytes]],
    size: int,
    root: bytes,
    problems: _Problems,
) -> int | None:
    try:
        old = open_checkpoint(note, verifier)
    except SignatureMismatchError as exc:
        problems.add(f"given checkpoint: {exc}")
        return None
    if old.size > size:
        problems.add(f"given checkpoint has {old.size} events but the log has {size}: truncated")
        return None
    if old.size == 0:
        if old.root_hash != merkle.EMPTY_ROOT:
            problems.add("given checkpoint of size 0 does not carry the empty root")
            return None
        return 0

    def read(level: int, index: int) -> bytes:
        return levels[level][index]

    try:
        proof = merkle.consistency_proof(old.size, size, read)
        merkle.verify_consistency(old.size, size, proof, old.root_hash, root)
    except ProofError as exc:
        problems.add(
            f"the log is not an extension of the given checkpoint (size {old.size}): {exc}"
        )
        return None
    return old.size
