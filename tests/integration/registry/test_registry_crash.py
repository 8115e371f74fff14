"""Crash safety: a CLI push of a largish bundle killed with SIGKILL at several points (after a
short delay, and while its blobs are being stored) leaves no visible version and a ledger that
verifies; `fsck --repair` then removes what it left (once older than the minimum repair grace;
the tests age the blob store's files), and a following fsck finds nothing. Run on SQLite and on
PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.unit.registry.bundles import make_bundle

from modelward.services.audit import AuditService
from modelward.services.context import open_registry
from modelward.services.registry import registry_state_checks

from .conftest import CliRegistry

WEIGHTS = 20
WEIGHT_SIZE = 2 * 1024 * 1024


def _kill_when(proc: subprocess.Popen[bytes], ready: object) -> bool:
    """SIGKILL `proc` once `ready()` is true; False if it finished first."""
    assert callable(ready)
    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return True
        time.sleep(0.01)
    return False


def _age_blob_store(reg: CliRegistry, seconds: float = 7200) -> None:
    """Make every file of the filesystem blob store look `seconds` old (repair spares young
    ones)."""
    then = time.time() - seconds
    for path in (reg.home / "blobs").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def _audit_problems(reg: CliRegistry) -> list[str]:
    context = open_registry(reg.home)
    try:
        audit = AuditService(context.database, context.ledger_key, context.origin)
        return list(audit.verify(state_checks=[registry_state_checks]).problems)
    finally:
        context.close()


def test_a_killed_push_leaves_no_visible_version(cli_registry: CliRegistry, tmp_path: Path) -> None:
    reg = cli_registry
    with reg.service() as service:
        v1 = service.push(make_bundle(tmp_path / "small", seed=1), "llama").version
    baseline_blobs = reg.blob_digests()
    baseline_events = len(reg.audit_log())
    big = make_bundle(tmp_path / "big", seed=2, weights=WEIGHTS, weight_size=WEIGHT_SIZE)
    exe = str(Path(sys.executable).with_name("modelward"))

    def stored(n: int) -> object:
        return lambda: len(reg.blob_digests() - baseline_blobs) >= n

    start = 0.0

    def after(seconds: float) -> object:
        return lambda: time.monotonic() - start >= seconds

    kills = leftovers = 0
    for ready in (after(0.3), stored(1), stored(WEIGHTS // 2)):
        start = time.monotonic()
        proc = subprocess.Popen(
            [exe, "push", str(big), "--model", "llama"],
            env={**os.environ, **reg.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _kill_when(proc, ready):
            # it finished before the kill point (a very fast machine): that push is complete
            assert proc.returncode == 0
            break
        kills += 1
        assert proc.returncode == -signal.SIGKILL
        with reg.service() as service:
            assert [v["version"] for v in service.list_versions("llama")] == [1]
            assert [m["latest"] for m in service.list_models()] == [1]
        assert len(reg.audit_log()) == baseline_events
        assert _audit_problems(reg) == []

        left_behind = reg.blob_digests() - baseline_blobs
        _age_blob_store(reg)
        repaired = reg.json("fsck", "--repair", "--grace", "300")
        assert set(repaired["orphan_blobs"]) == left_behind
        leftovers += len(repaired["orphan_blobs"]) + len(repaired["incomplete_writes"])
        with reg.service() as service:
            after_repair = service.fsck(grace_seconds=0)
        assert after_repair.ok, after_repair.problems
        assert reg.blob_digests() == baseline_blobs
    assert kills >= 2, "the push finished before most kill points"
    assert leftovers > 0, "no kill landed while blobs were being stored"

    assert reg.json("fsck", "--grace", "0")["problems"] == []
    assert reg.ok("audit", "verify").returncode == 0
    with reg.service() as service:
        assert service.verify(v1.uri).ok
        # no version number was used up by the killed pushes
        assert service.push(big, "llama").version.number == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_fsck_reports_and_removes_what_a_crash_left(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    with reg.service() as service:
        service.push(make_bundle(tmp_path / "small", seed=1), "llama")
        loose = tmp_path / "loose.bin"
        loose.write_bytes(b"stored, then the push died")
        orphan = service.ctx.blobs.put_file(loose).digest
    partial = reg.home / "blobs" / "tmp" / "crashed.partial"
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"half a blob")

    report = reg.json("fsck", "--grace", "0")
    assert report["orphan_blobs"] == [orphan]
    assert report["incomplete_writes"] == ["tmp/crashed.partial"]
    assert orphan in reg.blob_digests() and partial.exists()
    assert reg.run("fsck", "--repair", "--grace", "0").returncode == 2  # repair keeps a grace
    _age_blob_store(reg)
    text = reg.ok("fsck", "--repair", "--grace", "300").stdout
    assert f"removed orphan blob {orphan}" in text
    assert "removed half-finished write tmp/crashed.partial" in text
    assert orphan not in reg.blob_digests() and not partial.exists()
    assert reg.ok("fsck", "--grace", "0").stdout.startswith("no orphan blobs")
