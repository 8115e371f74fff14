"""fsck --repair: only an admin may run it, it keeps a minimum grace, and it never removes the
blobs of a push that stored them and is still waiting for the database's write lock."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelward.errors import InputError, PermissionDeniedError
from modelward.services.pending_writes import MIN_REPAIR_GRACE, pending_writers, pending_writes
from modelward.services.registry import PushResult
from modelward.services.users import UserService

from .bundles import make_bundle
from .conftest import Registry


def _clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """fsck's clock `seconds` ahead: every blob stored so far looks that old."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def test_repair_needs_the_admin_role(registry: Registry, tmp_path: Path) -> None:
    UserService(registry.context).add("bob", "trainer")
    UserService(registry.context).add("rita", "releaser")
    loose = tmp_path / "loose.bin"
    loose.write_bytes(b"an orphan")
    orphan = registry.context.blobs.put_file(loose).digest
    for actor in ("bob", "rita", "mallory"):
        service = registry.open_service(actor)
        assert orphan in service.fsck(grace_seconds=0).details["orphan_blobs"]  # a report is fine
        with pytest.raises(PermissionDeniedError):
            service.fsck(repair=True, grace_seconds=MIN_REPAIR_GRACE)
    assert registry.blob_path(orphan).exists()


def test_repair_keeps_a_minimum_grace(registry: Registry, tmp_path: Path) -> None:
    loose = tmp_path / "loose.bin"
    loose.write_bytes(b"an orphan")
    orphan = registry.context.blobs.put_file(loose).digest
    for grace in (0.0, 1.0, MIN_REPAIR_GRACE - 1):
        with pytest.raises(InputError, match="at least 300"):
            registry.service.fsck(repair=True, grace_seconds=grace)
    assert registry.blob_path(orphan).exists()
    registry.service.fsck(repair=True, grace_seconds=MIN_REPAIR_GRACE)
    assert registry.blob_path(orphan).exists()  # still younger than the grace


def test_fsck_spares_the_blobs_of_a_push_waiting_on_the_database_lock(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=3)
    lock = sqlite3.connect(registry.home / "registry.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
    pusher = registry.open_service()
    outcome: dict[str, Any] = {}

    def push() -> None:
        try:
            outcome["result"] = pusher.push(bundle, "llama")
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=push)
    thread.start()
    try:
        deadline = time.monotonic() + 25
        while len(registry.blob_digests()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        stored = registry.blob_digests()
        assert len(stored) == 3, "the push did not store its blobs"
        assert [w.alive for w in pending_writers(registry.context.blobs, time.time())] == [True]

        with monkeypatch.context() as patched:
            _clock_ahead(patched, 7200)  # the push has waited two hours, as far as fsck knows
            report = registry.service.fsck(repair=True, grace_seconds=MIN_REPAIR_GRACE)
            zero = registry.service.fsck(grace_seconds=0)
        assert report.details["orphan_blobs"] == []
        assert sorted(report.details["spared_for_pending_pushes"]) == sorted(stored)
        assert zero.details["orphan_blobs"] == []
        assert registry.blob_digests() == stored
    finally:
        lock.rollback()
        lock.close()
        thread.join(60)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert isinstance(result, PushResult) and result.created
    assert registry.service.verify("models:/llama/1").ok
    assert registry.context.blobs.pending() == []  # the push unregistered itself


def test_a_dead_pushs_registration_is_reported_and_its_blobs_repaired(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    record = {"started_at": time.time(), "host": socket.gethostname(), "pid": dead_pid, "what": "x"}
    registry.context.blobs.register_pending("ab" * 16, json.dumps(record).encode())
    loose = tmp_path / "loose.bin"
    loose.write_bytes(b"left by the dead push")
    orphan = registry.context.blobs.put_file(loose).digest
    with monkeypatch.context() as patched:
        _clock_ahead(patched, 7200)
        report = registry.service.fsck()
        assert report.details["dead_pending_pushes"] == ["ab" * 16]
        assert report.details["orphan_blobs"] == [orphan]
        registry.service.fsck(repair=True)
    assert not registry.blob_path(orphan).exists()
    assert registry.context.blobs.pending() == []
    assert registry.service.fsck(grace_seconds=0).ok


def test_a_live_registration_spares_blobs_stored_after_it_started(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loose = tmp_path / "old.bin"
    loose.write_bytes(b"stored long before any push started")
    old = registry.context.blobs.put_file(loose).digest
    then = time.time() - 7200
    os.utime(registry.blob_path(old), (then, then))
    with pending_writes(registry.context.blobs, "push models:/x"):
        fresh_file = tmp_path / "fresh.bin"
        fresh_file.write_bytes(b"stored by the push in flight")
        fresh = registry.context.blobs.put_file(fresh_file).digest
        with monkeypatch.context() as patched:
            _clock_ahead(patched, 3600)
            report = registry.service.fsck(repair=True)
    assert report.details["orphan_blobs"] == [old]
    assert report.details["spared_for_pending_pushes"] == [fresh]
    assert not registry.blob_path(old).exists() and registry.blob_path(fresh).exists()
