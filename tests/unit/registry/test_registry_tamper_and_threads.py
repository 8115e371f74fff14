"""Tamper evidence and in-process concurrency on SQLite: rows changed behind modelward's back
are named by the audit check, and threads pushing to one model get versions 1..N."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelward.core.checkpoint import Checkpoint, sign_checkpoint
from modelward.errors import ModelwardError
from modelward.services.registry import RegistryService
from modelward.services.users import UserService
from modelward.signing.keys import generate_private_key

from .bundles import make_bundle
from .conftest import Registry

# Each case: SQL run directly on the database, and a fragment the audit report must contain.
TAMPERING = {
    "version root digest": (
        "UPDATE versions SET root_digest = '" + "ab" * 32 + "' WHERE number = 1",
        "root_digest differs",
    ),
    "version created_by": (
        "UPDATE versions SET created_by = 'mallory' WHERE number = 1",
        "created_by differs",
    ),
    "version manifest": (
        "UPDATE versions SET manifest = replace(manifest, 'config.json', 'config.jsom') "
        "WHERE number = 2",
        "manifest_digest differs",
    ),
    "alias target": (
        "UPDATE aliases SET version_id = (SELECT id FROM versions WHERE number = 2)",
        "alias llama@champion",
    ),
    "event actor": ("UPDATE ledger_events SET actor = 'mallory' WHERE seq = 1", "event 1"),
    "event details": (
        "UPDATE ledger_events SET details = replace(details, 'llama', 'llamb') WHERE seq = 2",
        "event 2",
    ),
    "deleted event": ("DELETE FROM ledger_events WHERE seq = 2", "event 2 is missing"),
    "deleted last event": ("DELETE FROM ledger_events WHERE seq = 3", "alias llama@champion"),
}


def _populate(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "one", seed=1), "llama")
    registry.service.push(make_bundle(tmp_path / "two", seed=2), "llama")
    registry.service.set_alias("llama", "champion", 1)


def test_an_untouched_registry_verifies(registry: Registry, tmp_path: Path) -> None:
    _populate(registry, tmp_path)
    report = registry.audit_verify()
    assert report.ok, report.problems
    assert report.size == 4


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_changed_rows_are_named(registry: Registry, tmp_path: Path, case: str) -> None:
    _populate(registry, tmp_path)
    statement, fragment = TAMPERING[case]
    registry.sql(statement)
    report = registry.audit_verify()
    assert not report.ok
    assert any(fragment in problem for problem in report.problems), report.problems


def test_a_checkpoint_proves_the_log_only_grew(registry: Registry, tmp_path: Path) -> None:
    _populate(registry, tmp_path)
    old = registry.audit().checkpoint()
    registry.service.push(make_bundle(tmp_path / "three", seed=3), "llama")
    registry.service.delete_alias("llama", "champion")
    report = registry.audit_verify(old)
    assert report.ok, report.problems
    assert report.consistent_with_size == 4

    # the same size and root, signed by a key that is not the registry's
    forged_body = Checkpoint(registry.context.origin, report.size, report.root_hash)
    forged = sign_checkpoint(forged_body, registry.context.origin, generate_private_key("ed25519"))
    assert not registry.audit_verify(forged).ok


def test_threads_pushing_to_one_model_get_consecutive_versions(
    registry: Registry, tmp_path: Path
) -> None:
    threads = 6
    bundles = [make_bundle(tmp_path / f"b{i}", seed=100 + i) for i in range(threads)]
    users = UserService(registry.context, registry.service.actor)
    for i in range(threads):
        users.add(f"user{i}", "trainer")  # only registry users may push
    services = [registry.open_service(actor=f"user{i}") for i in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    numbers: list[int] = []
    lock = threading.Lock()

    def push(service: RegistryService, bundle: Path) -> None:
        try:
            barrier.wait()
            result = service.push(bundle, "llama")
            with lock:
                numbers.append(result.version.number)
        except (ModelwardError, threading.BrokenBarrierError) as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=push, args=(s, b)) for s, b in zip(services, bundles, strict=True)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert sorted(numbers) == list(range(1, threads + 1))
    versions = registry.service.list_versions("llama")
    assert [v["version"] for v in versions] == list(range(1, threads + 1))
    assert len({v["root_digest"] for v in versions}) == threads
    events = registry.events()
    assert [e.action for e in events].count("version.push") == threads
    assert len(events) == 2 * threads + 1  # init, the user.add events and the pushes
    assert sorted(v["created_by"] for v in versions) == [f"user{i}" for i in range(threads)]
    assert registry.audit_verify().ok
