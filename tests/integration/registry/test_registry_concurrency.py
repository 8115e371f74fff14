"""Parallel pushes to one model, on SQLite and PostgreSQL: threads in one process (each with a
context of its own) and several `modelward push` processes get distinct, consecutive version
numbers 1..N, and the ledger loses no event and verifies."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.unit.registry.bundles import make_bundle

from modelward.errors import ModelwardError
from modelward.services.audit import AuditService
from modelward.services.context import open_registry
from modelward.services.registry import RegistryService, registry_state_checks
from modelward.services.users import UserService

from .conftest import ACTOR, CliRegistry


def _add_pushers(reg: CliRegistry, actors: list[str]) -> None:
    """Only registry users may push: the admin adds each pusher as a trainer."""
    context = open_registry(reg.home)
    try:
        users = UserService(context, ACTOR)
        for actor in actors:
            users.add(actor, "trainer")
    finally:
        context.close()


def _check_versions_and_ledger(reg: CliRegistry, pushes: int, actors: list[str]) -> None:
    with reg.service() as service:
        versions = service.list_versions("llama")
    assert [v["version"] for v in versions] == list(range(1, pushes + 1))
    assert len({v["root_digest"] for v in versions}) == pushes
    assert sorted(v["created_by"] for v in versions) == sorted(actors)
    events = reg.audit_log()
    assert [e.action for e in events].count("user.add") == len(actors)
    assert len(events) == 1 + len(actors) + pushes  # init, the users added, every push
    pushed = sorted((e.details["version"], e.actor) for e in events if e.action == "version.push")
    assert pushed == sorted((v["version"], v["created_by"]) for v in versions)
    context = open_registry(reg.home)
    try:
        audit = AuditService(context.database, context.ledger_key, context.origin)
        report = audit.verify(state_checks=[registry_state_checks])
    finally:
        context.close()
    assert report.ok, report.problems
    assert report.size == len(events)


def test_threads_pushing_to_one_model(cli_registry: CliRegistry, tmp_path: Path) -> None:
    reg = cli_registry
    threads = 6
    bundles = [make_bundle(tmp_path / f"b{i}", seed=10 + i) for i in range(threads)]
    actors = [f"user{i}" for i in range(threads)]
    _add_pushers(reg, actors)
    contexts = [open_registry(reg.home) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    numbers: list[int] = []

    def push(service: RegistryService, bundle: Path) -> None:
        try:
            barrier.wait()
            numbers.append(service.push(bundle, "llama").version.number)
        except (ModelwardError, threading.BrokenBarrierError) as exc:
            errors.append(exc)

    try:
        workers = [
            threading.Thread(target=push, args=(RegistryService(c, actor=a), b))
            for c, a, b in zip(contexts, actors, bundles, strict=True)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        for context in contexts:
            context.close()
    assert errors == []
    assert sorted(numbers) == list(range(1, threads + 1))
    _check_versions_and_ledger(reg, threads, actors)


def test_processes_pushing_to_one_model(cli_registry: CliRegistry, tmp_path: Path) -> None:
    reg = cli_registry
    processes = 4
    bundles = [make_bundle(tmp_path / f"b{i}", seed=20 + i) for i in range(processes)]
    actors = [f"proc{i}" for i in range(processes)]
    _add_pushers(reg, actors)
    exe = str(Path(sys.executable).with_name("modelward"))
    running = [
        subprocess.Popen(
            [exe, "push", str(bundle), "--model", "llama", "--json"],
            env={**os.environ, **reg.env, "MODELWARD_ACTOR": actor},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for bundle, actor in zip(bundles, actors, strict=True)
    ]
    outputs = [proc.communicate(timeout=300) for proc in running]
    for proc, (stdout, stderr) in zip(running, outputs, strict=True):
        assert proc.returncode == 0, (stdout, stderr)
    _check_versions_and_ledger(reg, processes, actors)
