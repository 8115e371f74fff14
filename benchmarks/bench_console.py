"""Console page render time (server side), against the target of 300 ms per page: a version
with 50 evaluations and 200 decisions, and the ledger page of a 1,000,000-event ledger (the
newest page, one in the middle, the oldest), and the runtime page with 10,000 spans (a canary
with two verdicts, drift between two releases, an alert).

    .venv/bin/python benchmarks/bench_console.py [--events 1000000] [--evaluations 50]
        [--decisions 200] [--spans 10000] [--samples 20] [--dir DIR]

The registry is a real one on SQLite (`modelward init`), filled through the services (the
ledger's bulk is appended, sealed, in batches of 50,000). Each page is requested in-process
through the ASGI app (FastAPI's TestClient, no sockets), signed in with a session cookie, so
the time is the server's: authentication, the services' reads and checks, and rendering.
Prints the median and the 95th percentile of each page's wall time and of its CPU time (the
process's, so waits for a busy machine's cores do not count), and their ratio to the target
(> 1.0 means the target is met). Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/ helpers

TARGET_MS = 300.0
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _report(label: str, samples: list[tuple[float, float]]) -> None:
    wall = [w for w, _ in samples]
    cpu = [c for _, c in samples]
    print(
        f"{label:<52} wall median {statistics.median(wall):6.1f} p95 {_p95(wall):6.1f} ms"
        f" | cpu median {statistics.median(cpu):6.1f} p95 {_p95(cpu):6.1f} ms"
        f" | ratio to {TARGET_MS:.0f} ms (p95 wall) {TARGET_MS / _p95(wall):5.2f}"
        f" (p95 cpu) {TARGET_MS / _p95(cpu):5.2f}"
    )


def _time(client: object, path: str, samples: int) -> list[tuple[float, float]]:
    get = client.get  # type: ignore[attr-defined]
    first = get(path, follow_redirects=False)
    assert first.status_code == 200, (path, first.status_code, first.text[:500])
    out = []
    for _ in range(samples):
        start, cpu = time.perf_counter(), time.process_time()
        answer = get(path, follow_redirects=False)
        out.append(((time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000))
        assert answer.status_code == 200
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--evaluations", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--spans", type=int, default=10_000, help="runtime page: 0 skips it")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-console-") as work:
        run(Path(work), args)


def run(root: Path, args: argparse.Namespace) -> None:
    os.environ["MODELWARD_HOME"] = str(root / "home")
    os.environ["MODELWARD_ACTOR"] = "root"
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        os.environ.pop(variable, None)
    from fastapi.testclient import TestClient
    from tests.console_world import build_world

    from modelward.app import ServerRegistry, ServerSettings
    from modelward.interfaces.http.server import create_app
    from modelward.services.gate import GateService
    from modelward.services.web_sessions import WebSessionService
    from modelward.storage.metadata.ledger_repository import LedgerRepository, NewEvent

    began = time.perf_counter()
    world = build_world(root)
    uri = "models:/llama-chat/2"
    for i in range(args.evaluations - 1):  # the world attached one already
        world.evaluate(uri, f"suite-{i % 10}", {"accuracy": 0.8 + i / 1000, "latency_ms": 40 + i})
    gate = GateService(world.ctx, actor="rex")
    for i in range(args.decisions):
        # production without canary: denied, every failed rule recorded; no release
        gate.promote(uri, "production" if i % 4 else "canary", risk_tier="medium")
    print(
        f"registry: {args.evaluations} evaluations and {args.decisions} decisions on {uri} "
        f"in {time.perf_counter() - began:.1f} s"
    )
    began = time.perf_counter()
    with world.ctx.database.read() as conn:
        have = LedgerRepository(conn).size()
    chunk = 50_000
    for offset in range(have, args.events, chunk):
        with world.ctx.database.transaction() as conn:
            LedgerRepository(conn).append_many(
                NewEvent(
                    actor=f"user{i % 17}@example.com",
                    action="model.pull",
                    subject=f"models:/model-{i % 101}/{i % 7 + 1}",
                    details={"n": i},
                    recorded_at=T0 + timedelta(microseconds=i),
                )
                for i in range(offset, min(args.events, offset + chunk))
            )
    with world.ctx.database.read() as conn:
        size = LedgerRepository(conn).size()
    print(f"ledger: {size:,} events (filled in {time.perf_counter() - began:.1f} s)")

    registry = ServerRegistry(ServerSettings(home=world.home, spool_dir=root), world.ctx)
    client = TestClient(create_app(registry), base_url="https://testserver")
    from modelward.core.principal import Principal

    session = WebSessionService(world.ctx).start(
        Principal(name="rex", issuer="https://issuer.test", subject="rex"), registry.now()
    )
    client.cookies.set("__Host-modelward_session", session.secret)
    decisions = len(gate.decisions(uri))
    evaluations = len(registry.registry(Principal("rex", "x")).show(uri)["evaluations"])
    answer = client.get("/ui/models/llama-chat/versions/2", follow_redirects=False)
    assert answer.status_code == 200, (answer.status_code, answer.headers)
    page = answer.text
    shown = page.count('<details class="decision"')
    assert shown == decisions, (shown, decisions)  # every decision is on the page
    print(
        f"version page of {uri}: {evaluations} evaluations, {decisions} decisions "
        f"({shown} rendered, {len(page) / 1024:.0f} KiB of HTML)"
    )
    _report(
        f"version page ({evaluations} evaluations, {decisions} decisions)",
        _time(client, "/ui/models/llama-chat/versions/2", args.samples),
    )
    _report(f"ledger page, newest ({size:,} events)", _time(client, "/ui/ledger", args.samples))
    _report(
        f"ledger page, middle ({size:,} events)",
        _time(client, f"/ui/ledger?before={size // 2}", args.samples),
    )
    _report(
        f"ledger page, oldest ({size:,} events)",
        _time(client, "/ui/ledger?before=50", args.samples),
    )
    _report("models page", _time(client, "/ui/models", args.samples))
    if args.spans:
        from tests.console_world import seed_runtime

        began = time.perf_counter()
        # half the spans per arm over the canary's first 100 minutes, two judgements, an alert
        seed = seed_runtime(
            world, promote_candidate=True, spans=args.spans // 2, every_s=6000 / (args.spans // 2)
        )
        print(
            f"runtime: {seed.accepted:,} spans of llama-chat in staging, a canary with "
            f"{len(seed.verdicts)} verdicts, an alert "
            f"(seeded in {time.perf_counter() - began:.1f} s)"
        )
        _report(
            f"runtime page, 24 h ({seed.accepted:,} spans)",
            _time(client, "/ui/runtime", args.samples),
        )
        _report(
            f"runtime page, 7 d ({seed.accepted:,} spans)",
            _time(client, "/ui/runtime?range=7d", args.samples),
        )
        _report(
            f"runtime drift panel ({seed.accepted:,} spans)",
            _time(client, "/ui/runtime/drift?model=llama-chat&environment=staging", args.samples),
        )
    client.close()
    registry.close()


if __name__ == "__main__":
    main()
