"""Witnessing end to end in-process: the registry's `WitnessingService` talking to real
`WitnessService`s through their HTTP edge function (in-memory state), so every step of the
tlog-witness exchange runs but no socket is opened. Honest growth is cosigned; a witness that
holds another size is caught up; a rewritten history and a split view are refused and kept as
evidence; the report counts who vouched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.unit.registry.conftest import Registry

from modelward.core import merkle
from modelward.core.checkpoint import Checkpoint, NoteVerifier, parse_signed_note, sign_checkpoint
from modelward.core.witness_protocol import AddCheckpointRequest, WitnessResponse
from modelward.errors import InputError, SplitViewError, StorageError
from modelward.interfaces.witness_http import handle_add_checkpoint
from modelward.services.witness import WitnessService
from modelward.services.witnessing import WitnessingService
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.witness_config import WitnessConfigFile, WitnessEndpoint
from modelward.storage.witness_state import (
    DirectoryWitnessState,
    MemoryWitnessState,
    StoredWitnessState,
)

CLOCK = datetime(2026, 12, 1, tzinfo=UTC)


def _grow(registry: Registry, count: int) -> None:
    with registry.context.database.transaction() as conn:
        repo = LedgerRepository(conn)
        for number in range(count):
            repo.append("alice", "test.event", f"thing:{number}", {"n": number}, CLOCK)


class Witnesses:
    """Named in-memory witnesses reachable at http://NAME/ through a fake transport."""

    def __init__(self, logs: dict[str, list[NoteVerifier]]) -> None:
        self.logs = logs
        self.services: dict[str, WitnessService] = {}
        self.stores: dict[str, MemoryWitnessState] = {}
        self.down: set[str] = set()
        self.requests: list[tuple[str, bytes]] = []

    def add(self, name: str) -> WitnessEndpoint:
        store = MemoryWitnessState()
        service = WitnessService(
            name, Ed25519PrivateKey.generate(), self.logs, store, clock=lambda: 1_796_000_000
        )
        self.services[name] = service
        self.stores[name] = store
        return WitnessEndpoint(name, f"http://{name}/", service.key)

    def transport(self) -> Callable[[str, bytes], WitnessResponse]:
        def post(url: str, body: bytes) -> WitnessResponse:
            self.requests.append((url, body))
            name = url.removeprefix("http://").split("/")[0]
            if name in self.down:
                return WitnessResponse(0, "text/plain", b"unreachable: connection refused")
            assert url == f"http://{name}/add-checkpoint"
            return handle_add_checkpoint(self.services[name], body)

        return post


def _setup(
    registry: Registry, *names: str
) -> tuple[Witnesses, list[WitnessEndpoint], WitnessingService]:
    audit = registry.audit()
    witnesses = Witnesses({audit.origin: [audit.verifier]})
    endpoints = [witnesses.add(name) for name in names]
    service = WitnessingService(
        registry.context.database, audit, witnesses.transport(), clock=lambda: CLOCK
    )
    return witnesses, endpoints, service


def test_honest_growth_is_cosigned_by_every_witness(registry: Registry) -> None:
    witnesses, endpoints, service = _setup(registry, "w1.example", "w2.example")
    sizes = []
    for step in (0, 3, 1, 0, 7):
        _grow(registry, step)
        result = service.checkpoint(endpoints)
        assert result.ok, result.to_dict()
        sizes.append(result.checkpoint.size)
        note = parse_signed_note(result.note)
        assert {s.name for s in note.signatures} >= {"w1.example", "w2.example"}
    assert sizes == [1, 4, 5, 5, 12]
    # each later request started from the size the witness had cosigned: no 409 round trip
    olds = [body.split(b"\n", 1)[0] for _, body in witnesses.requests]
    assert olds[:2] == [b"old 0", b"old 0"] and b"old 4" in olds and b"old 5" in olds
    report = service.report(endpoints, 2)
    assert report.ok and report.size == 12
    assert sorted(c.name for c in report.tally.vouched) == ["w1.example", "w2.example"]
    for store in witnesses.stores.values():
        assert store.misbehaviour() == []


def test_a_witness_ahead_of_what_we_recorded_is_caught_up_after_409(registry: Registry) -> None:
    witnesses, [endpoint], service = _setup(registry, "w1.example")
    _grow(registry, 4)
    first = service.checkpoint([endpoint])
    assert first.ok
    # the registry loses its record of the cosigned note (only the plain one remains)
    registry.sql("DELETE FROM ledger_checkpoints WHERE note LIKE '%w1.example%'")
    _grow(registry, 3)
    second = service.checkpoint([endpoint])
    assert second.ok, second.to_dict()
    olds = [body.split(b"\n", 1)[0] for _, body in witnesses.requests]
    assert olds[-2:] == [b"old 0", b"old 5"]


def test_rewritten_history_is_refused_and_kept_as_evidence(registry: Registry) -> None:
    witnesses, [endpoint], service = _setup(registry, "w1.example")
    _grow(registry, 6)
    assert service.checkpoint([endpoint]).ok
    # someone with database access rewrites an event and recomputes every node and leaf
    leaves = [
        bytes(row[0]) for row in registry.sql("SELECT leaf_hash FROM ledger_events ORDER BY seq")
    ]
    leaves[2] = merkle.leaf_hash(b"a different history")
    levels = merkle.complete_levels(leaves)
    registry.sql("UPDATE ledger_events SET leaf_hash = ? WHERE seq = 2", (leaves[2],))
    for level in range(1, len(levels)):
        for index, value in enumerate(levels[level]):
            registry.sql(
                "UPDATE ledger_nodes SET hash = ? WHERE level = ? AND idx = ?",
                (value, level, index),
            )
    _grow(registry, 2)
    result = service.checkpoint([endpoint])
    assert not result.ok
    assert "refused (422)" in (result.outcomes[0].error or "")
    # a proof that does not hold proves nothing against the log (anyone can send one): refused,
    # not logged as misbehaviour
    assert witnesses.stores["w1.example"].misbehaviour() == []
    # the witness still holds the honest size
    latest = witnesses.services["w1.example"].latest(registry.context.origin)
    assert latest is not None and latest.checkpoint.size == 7


def test_split_view_is_refused_reported_and_logged(registry: Registry) -> None:
    audit = registry.audit()
    witnesses, [endpoint], service = _setup(registry, "w1.example")
    _grow(registry, 4)
    honest = service.checkpoint([endpoint])
    assert honest.ok
    reports: list[str] = []
    witness = WitnessService(
        "w9.example",
        Ed25519PrivateKey.generate(),
        witnesses.logs,
        witnesses.stores["w1.example"],
        on_misbehaviour=reports.append,
    )
    size = honest.checkpoint.size
    other_view = sign_checkpoint(
        Checkpoint(audit.origin, size, bytes(32)), audit.origin, registry.context.ledger_key
    )
    with pytest.raises(SplitViewError, match="split view"):
        witness.add_checkpoint(AddCheckpointRequest(size, (), other_view))
    response = handle_add_checkpoint(
        witness, AddCheckpointRequest(size, (), other_view).to_text().encode()
    )
    assert response.status == 409 and response.content_type.startswith("text/plain")
    assert b"split view" in response.body
    entries = witnesses.stores["w1.example"].misbehaviour()
    assert [e["kind"] for e in entries] == ["split-view", "split-view"]
    assert entries[0]["offered"] == other_view and entries[0]["cosigned"]
    assert reports and "split-view" in reports[0]


def _junk_lines(count: int) -> str:
    import base64
    import os

    lines = [f"junk{i}.example {base64.b64encode(os.urandom(68)).decode()}" for i in range(count)]
    return "".join(f"\u2014 {line}\n" for line in lines)


def test_only_verified_split_views_are_logged_without_unverified_lines(
    registry: Registry,
) -> None:
    """A real public checkpoint replayed with a garbage proof, padded with signature lines no
    key made, is refused and logged nowhere; a split view is logged with only the lines the
    log's key made."""
    audit = registry.audit()
    witnesses, [endpoint], service = _setup(registry, "w1.example")
    _grow(registry, 4)
    honest = service.checkpoint([endpoint])
    assert honest.ok
    reports: list[str] = []
    store = witnesses.stores["w1.example"]
    witness = WitnessService(
        "w9.example", Ed25519PrivateKey.generate(), witnesses.logs, store,
        on_misbehaviour=reports.append,
    )  # fmt: skip
    size = honest.checkpoint.size
    _grow(registry, 3)
    bigger = audit.checkpoint()
    padded = bigger + _junk_lines(50)
    body = f"old {size}\n{'A' * 43}=\n\n{padded}".encode()
    response = handle_add_checkpoint(witness, body)
    assert response.status == 422, response.body
    assert store.misbehaviour() == [] and reports == []
    other_view = sign_checkpoint(
        Checkpoint(audit.origin, size, bytes(32)), audit.origin, registry.context.ledger_key
    )
    response = handle_add_checkpoint(
        witness, AddCheckpointRequest(size, (), other_view + _junk_lines(50)).to_text().encode()
    )
    assert response.status == 409
    [entry] = store.misbehaviour()
    assert entry["kind"] == "split-view" and entry["offered"] == other_view
    assert "junk" not in entry["cosigned"]


def test_the_misbehaviour_log_is_capped(registry: Registry, tmp_path: Path) -> None:
    audit = registry.audit()
    witnesses, [endpoint], service = _setup(registry, "w1.example")
    _grow(registry, 4)
    honest = service.checkpoint([endpoint])
    store = DirectoryWitnessState(tmp_path / "state", init=True, max_misbehaviour_bytes=3000)
    try:
        store.save(StoredWitnessState(audit.origin, honest.note, 1))
        reports: list[str] = []
        witness = WitnessService(
            "w9.example", Ed25519PrivateKey.generate(), witnesses.logs, store,
            on_misbehaviour=reports.append,
        )  # fmt: skip
        size = honest.checkpoint.size
        for number in range(10):
            view = sign_checkpoint(
                Checkpoint(audit.origin, size, bytes([number + 1]) * 32),
                audit.origin,
                registry.context.ledger_key,
            )
            with pytest.raises(SplitViewError):
                witness.add_checkpoint(AddCheckpointRequest(size, (), view))
        log = tmp_path / "state" / "misbehaviour.jsonl"
        assert 0 < log.stat().st_size <= 3000
        assert 1 <= len(store.misbehaviour()) < 10
        assert any("misbehaviour log is full" in r for r in reports)
    finally:
        store.close()


def test_wrong_log_key_and_unknown_log_statuses(registry: Registry) -> None:
    audit = registry.audit()
    witnesses, _, _ = _setup(registry, "w1.example")
    witness = witnesses.services["w1.example"]
    impostor = sign_checkpoint(
        Checkpoint(audit.origin, 1, bytes(32)), audit.origin, Ed25519PrivateKey.generate()
    )
    response = handle_add_checkpoint(
        witness, AddCheckpointRequest(0, (), impostor).to_text().encode()
    )
    assert response.status == 403
    unknown = sign_checkpoint(
        Checkpoint("other/log", 1, bytes(32)), "other/log", registry.context.ledger_key
    )
    response = handle_add_checkpoint(
        witness, AddCheckpointRequest(0, (), unknown).to_text().encode()
    )
    assert response.status == 404
    assert handle_add_checkpoint(witness, b"garbage").status == 400
    assert witnesses.stores["w1.example"].latest(audit.origin) is None


def test_stale_size_answer_is_the_spec_body(registry: Registry) -> None:
    witnesses, [endpoint], service = _setup(registry, "w1.example")
    _grow(registry, 2)
    assert service.checkpoint([endpoint]).ok
    note = registry.audit().checkpoint()
    response = handle_add_checkpoint(
        witnesses.services["w1.example"], AddCheckpointRequest(0, (), note).to_text().encode()
    )
    assert (response.status, response.content_type, response.body) == (
        409,
        "text/x.tlog.size",
        b"3\n",
    )


def test_unreachable_witness_and_quorum_report(registry: Registry) -> None:
    witnesses, endpoints, service = _setup(registry, "w1.example", "w2.example")
    witnesses.down.add("w2.example")
    _grow(registry, 2)
    result = service.checkpoint(endpoints)
    assert not result.ok
    assert [o.ok for o in result.outcomes] == [True, False]
    assert "unreachable" in (result.outcomes[1].error or "")
    assert service.report(endpoints, 1).ok
    two = service.report(endpoints, 2)
    assert not two.ok and "2 required" in two.problems()[0]
    # a new checkpoint nobody cosigned: the latest is unwitnessed, the report says where the
    # last quorum was
    _grow(registry, 1)
    registry.audit().checkpoint()
    one = service.report(endpoints, 1)
    assert not one.ok and one.latest_quorum_size == 3
    assert "size 3" in one.problems()[0]
    with pytest.raises(InputError):
        service.checkpoint([])


def test_forged_cosignature_in_a_reply_is_not_kept(registry: Registry) -> None:
    audit = registry.audit()
    witnesses, [endpoint], _ = _setup(registry, "w1.example")
    inner = witnesses.transport()

    def lying(url: str, body: bytes) -> WitnessResponse:
        reply = inner(url, body)
        flipped = reply.body.replace(b"A", b"B", 1) if b"A" in reply.body else reply.body + b"x"
        return WitnessResponse(reply.status, reply.content_type, flipped)

    service = WitnessingService(registry.context.database, audit, lying, clock=lambda: CLOCK)
    result = service.checkpoint([endpoint])
    assert not result.ok and "bad cosignature" in (result.outcomes[0].error or "")
    assert "w1.example" not in result.note


def test_witness_state_in_a_folder_survives_a_restart(registry: Registry, tmp_path: Path) -> None:
    audit = registry.audit()
    logs = {audit.origin: [audit.verifier]}
    key = Ed25519PrivateKey.generate()
    store = DirectoryWitnessState(tmp_path / "state", init=True)
    with pytest.raises(StorageError, match="another witness"):
        DirectoryWitnessState(tmp_path / "state")
    witness = WitnessService("w1.example", key, logs, store)
    endpoint = WitnessEndpoint("w1.example", "http://w1.example", witness.key)

    def post(url: str, body: bytes) -> WitnessResponse:
        return handle_add_checkpoint(witness, body)

    service = WitnessingService(registry.context.database, audit, post)
    _grow(registry, 3)
    try:
        assert service.checkpoint([endpoint]).ok
    finally:
        store.close()
    reopened = DirectoryWitnessState(tmp_path / "state")
    try:
        restarted = WitnessService("w1.example", key, logs, reopened)
        latest = restarted.latest(audit.origin)
        assert latest is not None and latest.checkpoint.size == 4
        # tampered state is refused, not trusted
        stored = reopened.latest(audit.origin)
        assert stored is not None
        forged = sign_checkpoint(
            Checkpoint(audit.origin, 2, bytes(32)), audit.origin, Ed25519PrivateKey.generate()
        )
        reopened.save(StoredWitnessState(audit.origin, forged, stored.cosigned_at))
        with pytest.raises(StorageError, match="does not verify"):
            restarted.latest(audit.origin)
    finally:
        reopened.close()


def test_a_lost_state_folder_is_not_started_over(tmp_path: Path) -> None:
    """A witness that forgot what it cosigned can be made to cosign a rewritten history: a
    missing or empty state folder is refused unless this is the witness's first start."""
    import shutil

    from modelward.errors import PathError

    state = tmp_path / "state"
    with pytest.raises(PathError, match="--init"):
        DirectoryWitnessState(state)
    assert not state.exists()
    state.mkdir()
    with pytest.raises(PathError, match="--init"):
        DirectoryWitnessState(state)
    DirectoryWitnessState(state, init=True).close()
    DirectoryWitnessState(state).close()  # a restart of an initialised witness
    with pytest.raises(PathError, match="already holds"):
        DirectoryWitnessState(state, init=True)
    shutil.rmtree(state)
    with pytest.raises(PathError, match="was lost"):
        DirectoryWitnessState(state)
    # a folder from before the marker existed, holding state, is taken as initialised
    legacy = tmp_path / "legacy"
    (legacy / "logs").mkdir(parents=True)
    (legacy / "logs" / ("0" * 64 + ".json")).write_text("{}")
    DirectoryWitnessState(legacy).close()
    assert (legacy / "witness.json").is_file()


def test_a_500_names_no_server_path(registry: Registry, tmp_path: Path) -> None:
    audit = registry.audit()
    store = DirectoryWitnessState(tmp_path / "state", init=True)
    try:
        import hashlib

        name = hashlib.sha256(audit.origin.encode()).hexdigest() + ".json"
        (tmp_path / "state" / "logs" / name).write_text("{not json")
        logged: list[str] = []
        witness = WitnessService(
            "w1.example", Ed25519PrivateKey.generate(), {audit.origin: [audit.verifier]}, store
        )
        body = AddCheckpointRequest(0, (), audit.checkpoint()).to_text().encode()
        response = handle_add_checkpoint(witness, body, log=logged.append)
        assert response.status == 500
        assert str(tmp_path) not in response.body.decode()
        assert b"server log" in response.body
        assert logged and str(tmp_path) in logged[0]
    finally:
        store.close()


def test_the_witness_server_queues_concurrent_connections() -> None:
    """A listen backlog of 5 dropped the sixth concurrent connection; 64 connect at once while
    the server is busy (not accepting) and every one is queued."""
    import socket

    from modelward.interfaces.witness_http import WitnessHTTPServer

    service = WitnessService("w1.example", Ed25519PrivateKey.generate(), {}, MemoryWitnessState())
    server = WitnessHTTPServer(("127.0.0.1", 0), service, lambda _: None)
    sockets: list[socket.socket] = []
    try:
        connected = 0
        for _ in range(64):
            client = socket.socket()
            client.settimeout(0.5)
            sockets.append(client)
            try:
                client.connect(server.server_address[:2])
                connected += 1
            except OSError:
                pass
        assert connected == 64
    finally:
        for client in sockets:
            client.close()
        server.server_close()


def test_witness_config_file(tmp_path: Path) -> None:
    config = WitnessConfigFile(tmp_path)
    assert config.load() == []
    key = WitnessService("w1.example", Ed25519PrivateKey.generate(), {}, MemoryWitnessState()).key
    endpoint = WitnessEndpoint("w1.example", "http://127.0.0.1:1/", key)
    config.add(endpoint)
    assert config.load() == [endpoint]
    with pytest.raises(InputError, match="already"):
        config.add(endpoint)
    with pytest.raises(InputError, match="named"):
        WitnessEndpoint("w2.example", "http://x/", key)
    with pytest.raises(InputError, match="URL"):
        WitnessEndpoint("w1.example", "file:///etc/passwd", key)
    config.remove("w1.example")
    assert config.load() == []
    config.path.write_text("{not json")
    with pytest.raises(StorageError):
        config.load()


class _RecordingStore(MemoryWitnessState):
    def __init__(self) -> None:
        super().__init__()
        self.saved: list[int] = []

    def save(self, state: StoredWitnessState) -> None:
        from modelward.core.checkpoint import parse_checkpoint_body

        self.saved.append(parse_checkpoint_body(parse_signed_note(state.checkpoint).text).size)
        super().save(state)


def test_concurrent_requests_never_roll_the_witness_back() -> None:
    """tlog-witness: checking the old size and persisting must be atomic. Threads race to push
    the witness forward from whatever size they last saw; the sizes it saves never decrease."""
    import random
    import threading

    origin = "example.com/log"
    log_key = Ed25519PrivateKey.generate()
    levels = merkle.complete_levels([merkle.leaf_hash(b"%d" % i) for i in range(80)])
    notes = {
        size: sign_checkpoint(
            Checkpoint(origin, size, merkle.root_from_levels(levels, size)), origin, log_key
        )
        for size in range(1, 81)
    }
    store = _RecordingStore()
    witness = WitnessService(
        "w.example",
        Ed25519PrivateKey.generate(),
        {origin: [NoteVerifier.from_public_key(origin, log_key.public_key())]},
        store,
    )
    accepted: list[int] = []

    def push(seed: int) -> None:
        chance = random.Random(seed)
        seen = 0
        for _ in range(40):
            new = min(80, seen + chance.randint(0, 3)) or 1
            proof = (
                tuple(merkle.consistency_proof(seen, new, lambda lv, i: levels[lv][i]))
                if 0 < seen < new
                else ()
            )
            reply = handle_add_checkpoint(
                witness, AddCheckpointRequest(seen, proof, notes[new]).to_text().encode()
            )
            if reply.status == 200:
                accepted.append(new)
                seen = new
            elif reply.status == 409 and reply.content_type == "text/x.tlog.size":
                seen = int(reply.body)
            else:
                raise AssertionError(reply)

    threads = [threading.Thread(target=push, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert store.saved == sorted(store.saved)
    latest = witness.latest(origin)
    assert latest is not None and latest.checkpoint.size == max(accepted)
