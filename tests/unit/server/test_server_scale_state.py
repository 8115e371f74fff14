"""Server state every process shares through the database, attacked first:

- a digest alone does not let a caller use (or learn of) another model's stored file;
- a large push is scanned and committed by a job, invisible until it is whole, run once;
- a job row written outside modelward (unsealed, or changed) is refused, not run as the user
  it names; a push queued with a token revoked since is refused; a long job keeps its lease;
- failed authentications counted in one process count in every other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.registry.bundles import bundle_files, make_bundle
from tests.unit.server.conftest import Served

from modelward.client import Client
from modelward.errors import NotFoundError, PermissionDeniedError
from modelward.services.auth_failures import FailureLimiter
from modelward.services.context import RegistryContext
from modelward.services.jobs import JobService
from modelward.services.tokens import TokenService
from modelward.services.users import UserService
from modelward.storage.metadata.jobs_repository import JobsRepository


def _client(served: Served, token: str, tmp_path: Path) -> Client:
    return Client(
        "http://testserver", token, http=served.http, known_registries=tmp_path / "known.json"
    )


def _files(bundle: Path) -> list[dict[str, Any]]:
    return [
        {"name": name, "digest": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in sorted(bundle_files(bundle).items())
    ]


@pytest.fixture
def teams(served: Served) -> dict[str, str]:
    """Two trainers, each with a token limited to their own team's models; team A's model
    `a-secret` is pushed."""
    users = UserService(served.registry.ctx, actor="root")
    users.add("ann", "trainer")
    users.add("bob", "trainer")
    return {
        "ann": served.token_for("ann", model_pattern="a-*"),
        "bob": served.token_for("bob", model_pattern="b-*"),
    }


def test_a_digest_alone_does_not_let_another_team_take_a_stored_file(
    served: Served, teams: dict[str, str], tmp_path: Path
) -> None:
    secret = make_bundle(tmp_path / "secret", seed=7)
    _client(served, teams["ann"], tmp_path).push(secret, "a-secret")
    files = _files(secret)
    bob = {"authorization": f"Bearer {teams['bob']}"}

    # bob learns the digests (manifests, evidence bundles and OCI manifests print them)
    for entry in files:  # ... but the server will not say it holds those blobs
        assert (
            served.http.head(f"/api/v1/uploads/{entry['digest']}", headers=bob).status_code == 404
        )
    # ... nor let him name them in a push of his own, which he could then pull
    response = served.http.post(
        "/api/v1/models/b-copy/versions", headers=bob, json={"files": files}
    )
    assert response.status_code == 404, response.text
    assert "not uploaded first" in response.json()["error"]["message"]
    listed = served.http.get("/api/v1/models", headers=served.headers("admin")).json()
    assert "b-copy" not in {m["name"] for m in listed}
    with pytest.raises(NotFoundError):
        _client(served, teams["bob"], tmp_path).resolve("models:/b-copy/1")

    # holding the bytes is what counts: bob sends them himself, and then may name them
    pushed = _client(served, teams["bob"], tmp_path).push(secret, "b-copy")
    assert pushed["created"] is True


def test_a_caller_who_may_view_the_model_need_not_send_its_files_again(
    served: Served, teams: dict[str, str], tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "shared", seed=8)
    _client(served, teams["ann"], tmp_path).push(bundle, "a-base")
    digest = _files(bundle)[0]["digest"]
    bob = {"authorization": f"Bearer {teams['bob']}"}
    assert served.http.head(f"/api/v1/uploads/{digest}", headers=bob).status_code == 404
    # an admin grants bob view on a-base (a token of his with no model limit then sees it)
    UserService(served.registry.ctx, actor="root").grant("bob", "viewer", "a-*")
    wide = {"authorization": f"Bearer {served.token_for('bob')}"}
    assert served.http.head(f"/api/v1/uploads/{digest}", headers=wide).status_code == 200
    response = served.http.post(
        "/api/v1/models/b-derived/versions", headers=wide, json={"files": _files(bundle)}
    )
    assert response.status_code == 201, response.text


def _slow_push_settings(served: Served) -> None:
    served.registry.settings = dataclasses.replace(served.registry.settings, push_job_bytes=1)


def test_a_large_push_is_scanned_by_a_job_and_visible_only_once_whole(
    served: Served, tmp_path: Path
) -> None:
    _slow_push_settings(served)
    bundle = make_bundle(tmp_path / "big", weights=2)
    trainer = served.headers("trainer")
    for entry, data in zip(_files(bundle), sorted(bundle_files(bundle).items()), strict=True):
        put = served.http.put(
            f"/api/v1/uploads/{entry['digest']}", headers=trainer, content=data[1]
        )
        assert put.status_code == 200
    answer = served.http.post(
        "/api/v1/models/llama/versions", headers=trainer, json={"files": _files(bundle)}
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()["job"]
    assert job["kind"] == "push" and job["state"] == "queued"
    # the job shows what it pushes, not the seal, the caller's credentials or the evidence
    assert job["payload"] == {
        "model": "llama",
        "files": 4,
        "bytes": sum(f["size"] for f in _files(bundle)),
    }
    # nothing of the version is visible before the job ran
    versions = served.http.get("/api/v1/models/llama/versions", headers=trainer)
    assert versions.status_code == 404 or versions.json() == []

    jobs = served.registry.jobs()
    done = jobs.run_one("worker-a")
    assert done is not None and done.state == "done", done
    assert done.result is not None and done.result["uri"] == "models:/llama/1"
    assert done.result["created"] is True
    assert jobs.run_one("worker-b") is None  # run once

    # the same push again (say, the job ran twice after a crash) creates nothing new
    again = served.http.post(
        "/api/v1/models/llama/versions", headers=trainer, json={"files": _files(bundle)}
    )
    assert jobs.run_one("worker-c") is not None
    rerun = jobs.get(again.json()["job"]["id"])
    assert rerun.result is not None and rerun.result["created"] is False
    shown = _client(served, served.tokens["viewer"], tmp_path).show("models:/llama/1")
    assert any(a["kind"] == "scan" for a in shown["attestations"])


def test_the_client_waits_for_a_push_job_and_gets_the_version(
    served: Served, tmp_path: Path
) -> None:
    _slow_push_settings(served)
    worker = served.registry.start_job_worker(idle_seconds=0.05)
    try:
        client = _client(served, served.tokens["trainer"], tmp_path)
        pushed = client.push(make_bundle(tmp_path / "b"), "llama", wait=60)
        assert pushed["uri"] == "models:/llama/1" and pushed["created"] is True
        background = client.push(make_bundle(tmp_path / "c", seed=3), "llama", background=True)
        assert background["uri"] == "models:/llama/2"
    finally:
        worker.stop()
    client.pull("models:/llama/2", tmp_path / "out")
    assert bundle_files(tmp_path / "out") == bundle_files(tmp_path / "c")


def test_a_push_job_queued_with_a_token_revoked_since_is_refused(
    served: Served, tmp_path: Path
) -> None:
    client = _client(served, served.tokens["trainer"], tmp_path)
    client.push(make_bundle(tmp_path / "b"), "llama")  # in the request: under the threshold
    _slow_push_settings(served)
    token = served.token_for("trainer")  # a second token of the trainer's
    trainer = {"authorization": f"Bearer {token}"}
    other = make_bundle(tmp_path / "c", seed=9)
    for entry, (_, data) in zip(_files(other), sorted(bundle_files(other).items()), strict=True):
        served.http.put(f"/api/v1/uploads/{entry['digest']}", headers=trainer, content=data)
    answer = served.http.post(
        "/api/v1/models/llama/versions", headers=trainer, json={"files": _files(other)}
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job"]["id"]
    TokenService(served.registry.ctx, actor="root").revoke(token.split("_")[1])
    done = served.registry.jobs().run_one("worker")
    assert done is not None and done.id == job_id and done.state == "failed"
    assert done.result is not None and "revoked" in done.result["error"]
    with pytest.raises(PermissionDeniedError, match="revoked"):
        client.wait_for_job(job_id, wait=5)
    assert [v["version"] for v in client.list_versions("llama")] == [1]


def _row(served: Served, job_id: int) -> tuple[str, str]:
    rows = served.sql("SELECT payload, created_by FROM jobs WHERE id = ?", (job_id,))
    return str(rows[0][0]), str(rows[0][1])


def test_a_job_row_written_outside_modelward_is_refused_not_run(served: Served) -> None:
    ran: list[str] = []

    def handler(_: RegistryContext, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        ran.append(actor)
        return {}

    service = JobService(served.registry.ctx, {"t": handler})
    # someone who can write the database queues work as the admin
    with served.registry.ctx.database.transaction() as conn:
        forged = JobsRepository(conn).enqueue(
            "t", {"act": True}, "2026-01-01T00:00:00.000000Z", "admin"
        )
    # ... or changes a sealed job's payload, or who queued it
    edited = service.enqueue("t", {"uri": "models:/llama/1"}, "viewer")
    payload, _ = _row(served, edited.id)
    served.sql(
        "UPDATE jobs SET payload = ? WHERE id = ?", (payload.replace("llama", "other"), edited.id)
    )
    moved = service.enqueue("t", {"n": 1}, "viewer")
    served.sql("UPDATE jobs SET created_by = 'admin' WHERE id = ?", (moved.id,))

    outcomes = {}
    while (job := service.run_one("w")) is not None:
        outcomes[job.id] = job
    assert ran == []
    for job_id in (forged, edited.id, moved.id):
        assert outcomes[job_id].state == "failed"
        assert outcomes[job_id].result is not None
        assert "not sealed by this registry's key" in outcomes[job_id].result["error"]


def test_a_sealed_job_runs_and_its_payload_cannot_carry_a_seal(served: Served) -> None:
    service = JobService(served.registry.ctx, {"t": lambda c, p, a: {"got": p, "as": a}})
    job = service.enqueue("t", {"n": 1}, "viewer")
    done = service.run_one("w")
    assert done is not None and done.id == job.id and done.state == "done"
    assert done.result == {"got": {"n": 1}, "as": "viewer"}
    from modelward.errors import InputError

    with pytest.raises(InputError):
        service.enqueue("t", {"_seal": "x"}, "viewer")


def test_a_long_job_keeps_its_lease_and_is_not_claimed_twice(served: Served) -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow(_: RegistryContext, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        runs.append("run")
        started.set()
        release.wait(timeout=30)
        return {}

    lease = timedelta(seconds=1.5)
    first = JobService(served.registry.ctx, {"t": slow}, lease=lease)
    job = first.enqueue("t", {}, "root")
    thread = threading.Thread(target=first.run_one, args=("worker-a",))
    thread.start()
    try:
        assert started.wait(timeout=30)
        second = JobService(served.registry.ctx, {"t": slow}, lease=lease)
        deadline = time.monotonic() + 4.0  # well past the first lease's end
        while time.monotonic() < deadline:
            assert second.claim("worker-b") is None
            time.sleep(0.25)
    finally:
        release.set()
        thread.join(timeout=30)
    assert runs == ["run"]
    finished = first.get(job.id)
    assert finished.state == "done" and finished.claimed_by == "worker-a"


def test_someone_elses_job_is_readable_only_to_who_may_view_its_model(
    served: Served, teams: dict[str, str], tmp_path: Path
) -> None:
    _client(served, teams["ann"], tmp_path).push(make_bundle(tmp_path / "a"), "a-model")
    ann = {"authorization": f"Bearer {teams['ann']}"}
    created = served.http.post(
        "/api/v1/jobs", headers=ann, json={"kind": "verify", "uri": "models:/a-model/1"}
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert served.http.get(f"/api/v1/jobs/{job_id}", headers=ann).status_code == 200
    bob = {"authorization": f"Bearer {teams['bob']}"}
    assert served.http.get(f"/api/v1/jobs/{job_id}", headers=bob).status_code == 404
    assert (
        served.http.get(f"/api/v1/jobs/{job_id}", headers=served.headers("viewer")).status_code
        == 200
    )
    # bob cannot queue work on ann's model either, nor learn whether it exists (he named it)
    for uri in ("models:/a-model/1", "models:/a-none/1"):
        queued = served.http.post("/api/v1/jobs", headers=bob, json={"kind": "verify", "uri": uri})
        assert queued.status_code == 403


def test_failed_authentications_count_across_server_processes(served: Served) -> None:
    now = [1_000_000.0]
    database = served.registry.ctx.database
    one = FailureLimiter(database, per_minute=3, clock=lambda: now[0])
    other = FailureLimiter(database, per_minute=3, clock=lambda: now[0])
    assert not other.blocked("203.0.113.9")
    for _ in range(3):
        one.failed("203.0.113.9")
    assert one.blocked("203.0.113.9")
    now[0] += 1.5  # the other process re-reads after a second
    assert other.blocked("203.0.113.9")
    assert not other.blocked("203.0.113.10")  # per address
    now[0] += 61  # a minute later the failures have aged out of the window
    assert not one.blocked("203.0.113.9") and not other.blocked("203.0.113.9")


def test_the_http_limit_is_shared_by_two_apps_on_one_database(served: Served) -> None:
    from fastapi.testclient import TestClient

    from modelward.app import ServerRegistry
    from modelward.interfaces.http.server import create_app

    limit = 3
    served.http.app.state.limiter.per_minute = limit  # type: ignore[attr-defined]
    second_registry = ServerRegistry(served.registry.settings, served.registry.ctx)
    second = TestClient(create_app(second_registry))
    second.app.state.limiter.per_minute = limit  # type: ignore[attr-defined]
    bad = {"authorization": "Bearer mwt_nope_nope"}
    for _ in range(limit):
        assert served.http.get("/api/v1/whoami", headers=bad).status_code == 401
    # the other process refuses this address too, even with a good token
    limited = second.get("/api/v1/whoami", headers=served.headers("viewer"))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    second.close()


def test_a_token_limited_to_a_pattern_cannot_use_what_its_user_sent_with_another_token(
    served: Served, teams: dict[str, str], tmp_path: Path
) -> None:
    secret = make_bundle(tmp_path / "secret", seed=11)
    wide = served.token_for("ann")  # ann's token with no model limit pushes a team-a model
    _client(served, wide, tmp_path).push(secret, "a-secret")
    narrow = {"authorization": f"Bearer {served.token_for('ann', model_pattern='b-*')}"}
    for entry in _files(secret):
        assert (
            served.http.head(f"/api/v1/uploads/{entry['digest']}", headers=narrow).status_code
            == 404
        )
    response = served.http.post(
        "/api/v1/models/b-steal/versions", headers=narrow, json={"files": _files(secret)}
    )
    assert response.status_code == 404, response.text
    # her unlimited token may use what her limited token sent
    other = make_bundle(tmp_path / "other", seed=12)
    for entry, (_, data) in zip(_files(other), sorted(bundle_files(other).items()), strict=True):
        served.http.put(f"/api/v1/uploads/{entry['digest']}", headers=narrow, content=data)
    answer = served.http.post(
        "/api/v1/models/a-other/versions",
        headers={"authorization": f"Bearer {wide}"},
        json={"files": _files(other)},
    )
    assert answer.status_code == 201, answer.text


def test_upload_claims_and_file_rows_written_into_the_database_vouch_for_nothing(
    served: Served, teams: dict[str, str], tmp_path: Path
) -> None:
    secret = make_bundle(tmp_path / "secret", seed=13)
    _client(served, teams["ann"], tmp_path).push(secret, "a-secret")
    _client(served, teams["bob"], tmp_path).push(make_bundle(tmp_path / "mine", seed=14), "b-mine")
    digest = _files(secret)[0]["digest"]
    bob = {"authorization": f"Bearer {teams['bob']}"}
    # a claim for bob, with no seal or a seal copied from another claim
    copied = served.sql("SELECT mac FROM upload_claims LIMIT 1")[0][0]
    for mac in ("", "0" * 64, copied):
        served.sql(
            "INSERT OR REPLACE INTO upload_claims VALUES (?, 'bob', 'b-*', 'then', ?)",
            (digest, mac),
        )
        assert served.http.head(f"/api/v1/uploads/{digest}", headers=bob).status_code == 404
    # a file row saying bob's own model holds the secret blob
    version_id = served.sql(
        "SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = 'b-mine'"
    )[0][0]
    served.sql("INSERT INTO version_files VALUES (?, 'stolen.bin', ?, 1)", (version_id, digest))
    assert served.http.head(f"/api/v1/uploads/{digest}", headers=bob).status_code == 404
    response = served.http.post(
        "/api/v1/models/b-loot/versions", headers=bob, json={"files": [_files(secret)[0]]}
    )
    assert response.status_code == 404


def test_a_version_by_root_digest_outside_the_callers_reach_is_not_found(
    served: Served, teams: dict[str, str], tmp_path: Path
) -> None:
    pushed = _client(served, teams["ann"], tmp_path).push(make_bundle(tmp_path / "a"), "a-model")
    bob = {"authorization": f"Bearer {teams['bob']}"}
    known = f"sha256:{pushed['root_digest']}"
    unknown = "sha256:" + "0" * 64
    for path in ("/api/v1/resolve", "/api/v1/show"):
        for uri in (known, unknown):
            answer = served.http.get(path, params={"uri": uri}, headers=bob)
            assert answer.status_code == 404, (path, uri, answer.text)
            assert "a-model" not in answer.text
    for uri in (known, unknown):
        queued = served.http.post("/api/v1/jobs", headers=bob, json={"kind": "verify", "uri": uri})
        assert queued.status_code == 404 and "a-model" not in queued.text
    # ann's job, walked to by bob, does not exist for him (and names no model)
    ann = {"authorization": f"Bearer {teams['ann']}"}
    job = served.http.post("/api/v1/jobs", headers=ann, json={"kind": "verify", "uri": known})
    seen = served.http.get(f"/api/v1/jobs/{job.json()['id']}", headers=bob)
    assert seen.status_code == 404 and "a-model" not in seen.text


def test_a_job_outcome_written_into_the_database_is_not_believed(
    served: Served, tmp_path: Path
) -> None:
    _client(served, served.tokens["trainer"], tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    jobs = served.registry.jobs()
    job = jobs.enqueue("verify", {"uri": "models:/llama/1"}, "trainer")
    served.sql(
        "UPDATE jobs SET state = 'done', result = ? WHERE id = ?",
        (json.dumps({"created": True, "uri": "models:/llama/9"}), job.id),
    )
    shown = served.http.get(f"/api/v1/jobs/{job.id}", headers=served.headers("trainer")).json()
    assert shown["state"] == "untrusted" and "not sealed" in shown["result"]["error"]
    from modelward.errors import VerificationError

    with pytest.raises(VerificationError, match="not sealed"):
        _client(served, served.tokens["trainer"], tmp_path).wait_for_job(job.id, wait=5)
    # a sealed row copied under a new id is not run either
    second = jobs.enqueue("verify", {"uri": "models:/llama/1"}, "trainer")
    row = served.sql("SELECT kind, payload, created_by FROM jobs WHERE id = ?", (second.id,))[0]
    served.sql(
        "INSERT INTO jobs (kind, payload, state, attempts, created_at, created_by) "
        "VALUES (?, ?, 'queued', 0, 'now', ?)",
        row,
    )
    outcomes = []
    while (ran := jobs.run_one("w")) is not None:
        outcomes.append((ran.id, ran.state))
    assert outcomes[0] == (second.id, "done")
    assert outcomes[1][1] == "failed"
    copy = jobs.trusted(jobs.get(outcomes[1][0]))
    assert copy.state == "failed" and "not sealed" in str(copy.result)


def test_one_user_cannot_flood_the_queue_and_canary_judgements_go_first(
    served: Served, tmp_path: Path
) -> None:
    _client(served, served.tokens["trainer"], tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    viewer = served.headers("viewer")
    body = {"kind": "verify", "uri": "models:/llama/1"}
    codes = [
        served.http.post("/api/v1/jobs", headers=viewer, json=body).status_code for _ in range(21)
    ]
    assert codes[:20] == [202] * 20 and codes[20] == 429
    refused = served.http.post("/api/v1/jobs", headers=viewer, json=body).json()["error"]
    assert refused["exit_code"] == 4 and "20 jobs" in refused["message"]
    # others are not held up by it
    assert (
        served.http.post("/api/v1/jobs", headers=served.headers("auditor"), json=body).status_code
        == 202
    )
    jobs = JobService(
        served.registry.ctx, {"verify": lambda c, p, a: {}, "canary.judge": lambda c, p, a: {}}
    )
    judge = jobs.enqueue_once("canary.judge", {"model": "llama"}, "releaser", "canary.judge:1:1")
    assert judge is not None
    first = jobs.run_one("w")
    assert first is not None and first.id == judge.id  # queued last, claimed first


def test_rate_limited_callers_get_exit_4_through_the_client(served: Served, tmp_path: Path) -> None:
    from modelward.errors import RateLimitedError, StorageError

    served.http.app.state.limiter.per_minute = 2  # type: ignore[attr-defined]
    bad = {"authorization": "Bearer mwt_nope_nope"}
    for _ in range(2):
        served.http.get("/api/v1/whoami", headers=bad)
    with pytest.raises(RateLimitedError) as caught:
        _client(served, served.tokens["viewer"], tmp_path).whoami()
    assert isinstance(caught.value, StorageError)  # exit 4, as the server's body says


def test_a_body_over_the_limit_without_a_length_is_a_413_in_the_error_shape(
    served: Served,
) -> None:
    def chunks() -> Any:
        for _ in range(3):
            yield b"[" + b"1," * (512 * 1024)

    answer = served.http.post("/api/v1/jobs", headers=served.headers("viewer"), content=chunks())
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["type"] == "InputError"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_refused_remote_push_says_why(served: Served, tmp_path: Path) -> None:
    with pytest.raises(PermissionDeniedError, match=r"viewer|push"):
        _client(served, served.tokens["viewer"], tmp_path).push(
            make_bundle(tmp_path / "b"), "llama"
        )


def test_a_single_file_named_like_the_pushed_evidence_keeps_its_bytes(
    served: Served, tmp_path: Path
) -> None:
    from modelward.services.bundle_signing import sign_bundle
    from modelward.services.trusted_keys import TrustedKeyService
    from modelward.signing.keys import Signer, generate_private_key, public_key_pem

    key = generate_private_key()
    pub = tmp_path / "uploader.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    TrustedKeyService(served.registry.ctx, actor="root").trust(pub.read_bytes(), "laptop")
    folder = tmp_path / "single"
    folder.mkdir()
    model = folder / "uploader.sig"  # named as the server names the uploader's signature
    model.write_bytes(bundle_files(make_bundle(tmp_path / "b"))["model-00001-of-00001.safetensors"])
    signature = tmp_path / "model.sig"
    sign_bundle(model, Signer(key), signature_path=signature)
    pushed = _client(served, served.tokens["trainer"], tmp_path).push(
        model, "single", signature=signature, public_key=pub
    )
    assert pushed["created"] is True
    shown = _client(served, served.tokens["viewer"], tmp_path).show(pushed["uri"])
    assert "uploader-signature" in json.dumps(shown)
