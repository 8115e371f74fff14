"""Two `modelward serve` processes sharing one PostgreSQL database and one S3 bucket (moto's
server on loopback): concurrent pushes through both get distinct version numbers, each
visible from both; a server killed (SIGKILL) mid-upload or mid-commit loses nothing and leaves
nothing half-visible."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, text
from tests.integration.server.harness import cli, create_token, running, start_server
from tests.unit.registry.bundles import bundle_files, make_bundle

from modelward.client import Client

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BUCKET = "modelward-server"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a registry on a fresh PostgreSQL database and a moto S3 bucket."""
    aws = {
        "AWS_ACCESS_KEY_ID": "modelward-test",
        "AWS_SECRET_ACCESS_KEY": "modelward-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/modelward-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/modelward-aws-credentials",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in aws.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        name = f"mw_server_{secrets.token_hex(6)}"
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            host, port = moto.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            root = tmp_path_factory.mktemp("shared")
            env = {
                **aws,
                "MODELWARD_HOME": str(root / "home"),
                "MODELWARD_ACTOR": "root",
                "MODELWARD_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "MODELWARD_BLOB_URL": f"s3://{BUCKET}/registry",
                "MODELWARD_S3_ENDPOINT_URL": endpoint,
                "MODELWARD_SPOOL_DIR": str(root),
            }
            assert cli(env, "init").returncode == 0
            assert cli(env, "users", "add", "tina", "--role", "trainer").returncode == 0
            assert cli(env, "users", "add", "vic", "--role", "viewer").returncode == 0
            yield env
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
            moto.stop()


_OPEN: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _client(url: str, token: str, home: Path) -> Client:
    client = Client(url, token, known_registries=home / "known.json", timeout=120)
    _OPEN.append(client)
    return client


def test_two_servers_share_one_database_and_bucket(shared: dict[str, str], tmp_path: Path) -> None:
    token = create_token(shared, "tina")
    viewer = create_token(shared, "vic")
    with (
        running(shared, tmp_path / "a.log") as a,
        running(shared, tmp_path / "b.log") as b,
    ):
        bundles = [make_bundle(tmp_path / f"bundle-{i}", seed=100 + i) for i in range(8)]

        def push(i: int) -> dict[str, object]:
            server = (a, b)[i % 2]
            return _client(server.url, token, tmp_path).push(bundles[i], "shared-llm")

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(push, range(8)))
        numbers = sorted(int(str(r["version"])) for r in results)
        assert numbers == list(range(1, 9))  # none lost, none duplicated
        for server in (a, b):
            listed = _client(server.url, viewer, tmp_path).list_versions("shared-llm")
            assert [v["version"] for v in listed] == list(range(1, 9))
        by_digest = {str(r["root_digest"]): int(str(r["version"])) for r in results}
        assert len(by_digest) == 8
        # pushed through one server, pulled through the other, byte for byte
        first = next(r for r in results if r["version"] == 1)
        index = next(i for i, r in enumerate(results) if r is first)
        other = (b, a)[index % 2]
        out = tmp_path / "pulled"
        _client(other.url, viewer, tmp_path).pull("models:/shared-llm/1", out)
        assert bundle_files(out) == bundle_files(bundles[index])
    verified = cli(shared, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def _slow_chunks(data: bytes, after: int, kill: threading.Event) -> Iterator[bytes]:
    for offset in range(0, len(data), 64 * 1024):
        if offset >= after:
            kill.set()
            time.sleep(1.0)  # the server is being killed now
        yield data[offset : offset + 64 * 1024]


def test_a_server_killed_mid_upload_or_mid_commit_leaves_nothing_half_visible(
    shared: dict[str, str], tmp_path: Path
) -> None:
    token = create_token(shared, "tina")
    viewer = create_token(shared, "vic")
    store = boto3.client("s3", endpoint_url=shared["MODELWARD_S3_ENDPOINT_URL"])

    def stored_keys() -> set[str]:
        pages = store.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    # 1. killed while receiving a file: the blob never appears, no version appears
    victim = start_server(shared, tmp_path / "victim.log")
    with running(shared, tmp_path / "survivor.log") as survivor:
        before_versions = _client(survivor.url, viewer, tmp_path).list_models()
        data = os.urandom(4 * 1024 * 1024)
        digest = hashlib.sha256(data).hexdigest()
        kill = threading.Event()

        def killer() -> None:
            kill.wait(timeout=60)
            victim.stop(signal.SIGKILL)

        thread = threading.Thread(target=killer)
        thread.start()
        with pytest.raises(httpx.HTTPError):
            httpx.put(
                f"{victim.url}/api/v1/uploads/{digest}",
                content=_slow_chunks(data, 1024 * 1024, kill),
                headers={"authorization": f"Bearer {token}"},
                timeout=60,
            )
        thread.join(timeout=60)
        assert victim.process.poll() is not None
        assert not any(digest in key for key in stored_keys())
        assert _client(survivor.url, viewer, tmp_path).list_models() == before_versions

        # 2. killed at some moment of a commit: either the whole version or none of it
        big = make_bundle(tmp_path / "big", seed=42, weights=3, weight_size=8 * 1024 * 1024)
        second = start_server(shared, tmp_path / "victim2.log")
        pusher = _client(second.url, token, tmp_path)
        failure: list[BaseException] = []

        def push() -> None:
            try:
                pusher.push(big, "crash-llm")
            except BaseException as exc:  # the server dies under it
                failure.append(exc)

        worker = threading.Thread(target=push)
        worker.start()
        time.sleep(2.0)
        second.stop(signal.SIGKILL)
        worker.join(timeout=120)
        reader = _client(survivor.url, viewer, tmp_path)
        models = {m["name"] for m in reader.list_models()}
        if "crash-llm" in models:  # it committed before the kill: it must be whole
            out = tmp_path / "whole"
            reader.pull("models:/crash-llm/1", out)
            assert bundle_files(out) == bundle_files(big)
        # nothing was lost: the same push through the survivor completes
        done = _client(survivor.url, token, tmp_path).push(big, "crash-llm")
        assert done["version"] == 1
        reader.pull("models:/crash-llm/1", tmp_path / "after")
        assert bundle_files(tmp_path / "after") == bundle_files(big)
    verified = cli(shared, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    fsck = cli(shared, "fsck", "--grace", "0", "--json")
    assert fsck.returncode == 0, fsck.stderr
    leftovers = json.loads(fsck.stdout)
    # at most the blobs a killed push had stored before it could commit, which fsck removes
    assert all(d != digest for d in leftovers["orphan_blobs"])


def test_jobs_are_claimed_once_across_servers_and_survive_a_killed_worker(
    shared: dict[str, str], tmp_path: Path
) -> None:
    token = create_token(shared, "tina")
    viewer = create_token(shared, "vic")
    env = {**shared, "MODELWARD_JOB_LEASE_SECONDS": "3"}
    big = make_bundle(tmp_path / "jobs-big", seed=77, weights=2, weight_size=8 * 1024 * 1024)
    with running(env, tmp_path / "pusher.log") as pusher:
        _client(pusher.url, token, tmp_path).push(big, "jobs-llm")
    engine = create_engine(shared["MODELWARD_DATABASE_URL"])

    def job_rows() -> list[tuple[int, str, int, str | None]]:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, state, attempts, claimed_by FROM jobs ORDER BY id")
            ).all()
        return [(int(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

    # a server that dies while running a job: its lease ends, another server finishes it
    victim = start_server(env, tmp_path / "jobs-victim.log")
    try:
        job = httpx.post(
            f"{victim.url}/api/v1/jobs",
            json={"kind": "verify", "uri": "models:/jobs-llm/1"},
            headers={"authorization": f"Bearer {viewer}"},
            timeout=30,
        ).json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = {r[0]: r for r in job_rows()}[job["id"]]
            if state[1] != "queued":
                break
            time.sleep(0.01)
        victim.stop(signal.SIGKILL)
    finally:
        victim.stop(signal.SIGKILL)
    with (
        running(env, tmp_path / "jobs-a.log") as a,
        running(env, tmp_path / "jobs-b.log") as b,
    ):
        ids = [job["id"]]
        for i in range(10):
            server = (a, b)[i % 2]
            response = httpx.post(
                f"{server.url}/api/v1/jobs",
                json={"kind": "verify", "uri": "models:/jobs-llm/1"},
                headers={"authorization": f"Bearer {viewer}"},
                timeout=30,
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = {r[0]: r for r in job_rows()}
            if all(rows[i][1] == "done" for i in ids):
                break
            time.sleep(0.2)
    rows = {r[0]: r for r in job_rows()}
    assert all(rows[i][1] == "done" for i in ids), rows
    # every new job ran exactly once, whichever server took it; the killed one at most twice
    assert all(rows[i][2] == 1 for i in ids[1:]), rows
    assert rows[ids[0]][2] in (1, 2)
    with engine.connect() as conn:
        results = [
            json.loads(r[0])
            for r in conn.execute(text("SELECT result FROM jobs WHERE state = 'done'"))
        ]
    engine.dispose()
    assert all(r["ok"] is True for r in results)


def test_a_push_job_whose_server_dies_is_finished_by_another_once(
    shared: dict[str, str], tmp_path: Path
) -> None:
    token = create_token(shared, "tina")
    env = {**shared, "MODELWARD_JOB_LEASE_SECONDS": "3", "MODELWARD_PUSH_JOB_BYTES": "1"}
    big = make_bundle(tmp_path / "pushjob", seed=78, weights=2, weight_size=16 * 1024 * 1024)
    files = [
        {"name": name, "digest": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in sorted(bundle_files(big).items())
    ]
    auth = {"authorization": f"Bearer {token}"}
    engine = create_engine(shared["MODELWARD_DATABASE_URL"])

    def job_state(job_id: int) -> tuple[str, int]:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT state, attempts FROM jobs WHERE id = :i"), {"i": job_id}
            ).one()
        return str(row[0]), int(row[1])

    victim = start_server(env, tmp_path / "pushjob-victim.log")
    try:
        for entry, (_, data) in zip(files, sorted(bundle_files(big).items()), strict=True):
            put = httpx.put(
                f"{victim.url}/api/v1/uploads/{entry['digest']}",
                content=data,
                headers=auth,
                timeout=60,
            )
            assert put.status_code == 200, put.text
        answer = httpx.post(
            f"{victim.url}/api/v1/models/pushjob-llm/versions",
            json={"files": files},
            headers=auth,
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        job_id = int(answer.json()["job"]["id"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and job_state(job_id)[0] == "queued":
            time.sleep(0.005)
    finally:
        victim.stop(signal.SIGKILL)
    with running(env, tmp_path / "pushjob-a.log") as survivor:
        client = _client(survivor.url, token, tmp_path)
        result = client.wait_for_job(job_id, wait=120)
        assert result["uri"] == "models:/pushjob-llm/1"
        versions = client.list_versions("pushjob-llm")
        assert [v["version"] for v in versions] == [1]  # once, never twice or half
        client.pull("models:/pushjob-llm/1", tmp_path / "pushjob-out")
    assert bundle_files(tmp_path / "pushjob-out") == bundle_files(big)
    state, attempts = job_state(job_id)
    engine.dispose()
    assert state == "done" and attempts in (1, 2)
