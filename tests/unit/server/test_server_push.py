"""Pushing and pulling over HTTP: digests checked on upload, names that cannot leave the bundle,
nothing stored on refusal, pulls verified against the pinned registry key, the JSON error
taxonomy, size limits and security headers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.unit.registry.bundles import bundle_files, make_bundle
from tests.unit.server.conftest import Served

from modelward.client import Client
from modelward.errors import (
    DeniedError,
    DigestMismatchError,
    NotFoundError,
    SignatureMismatchError,
    StorageError,
)
from modelward.signing.keys import generate_private_key, public_key_pem


def _client(served: Served, who: str, tmp_path: Path, **kwargs: object) -> Client:
    kwargs.setdefault("known_registries", tmp_path / "known.json")
    return Client("http://testserver", served.tokens[who], http=served.http, **kwargs)  # type: ignore[arg-type]


def test_pull_gives_back_every_byte_pushed(served: Served, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", weights=2)
    pushed = _client(served, "trainer", tmp_path).push(bundle, "llama", description="first")
    assert pushed["created"] and pushed["uri"] == "models:/llama/1"
    again = _client(served, "trainer", tmp_path).push(bundle, "llama")
    assert again["created"] is False and again["version"] == 1
    _client(served, "viewer", tmp_path).pull("models:/llama/1", tmp_path / "out")
    assert bundle_files(tmp_path / "out") == bundle_files(bundle)


def test_single_file_push_keeps_its_name_for_the_scanner(served: Served, tmp_path: Path) -> None:
    weights = make_bundle(tmp_path / "b") / "model-00001-of-00001.safetensors"
    pushed = _client(served, "trainer", tmp_path).push(weights, "single")
    shown = _client(served, "viewer", tmp_path).show(pushed["uri"])
    assert [f["name"] for f in shown["manifest"]["files"]] == ["."]
    assert any(a["kind"] == "scan" for a in shown["attestations"])


def test_an_upload_whose_bytes_differ_from_its_digest_stores_nothing(served: Served) -> None:
    claimed = hashlib.sha256(b"what I said I would send").hexdigest()
    response = served.http.put(
        f"/api/v1/uploads/{claimed}", headers=served.headers("trainer"), content=b"other bytes"
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "DigestMismatchError"
    assert not served.registry.ctx.blobs.exists(claimed)
    assert not served.registry.ctx.blobs.exists(hashlib.sha256(b"other bytes").hexdigest())


@pytest.mark.parametrize(
    "name",
    ["../escape", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\..\\b", "a\x00b", "a/./b"],
)
def test_push_names_cannot_leave_the_bundle(served: Served, name: str, tmp_path: Path) -> None:
    data = b"payload"
    digest = hashlib.sha256(data).hexdigest()
    served.http.put(f"/api/v1/uploads/{digest}", headers=served.headers("trainer"), content=data)
    response = served.http.post(
        "/api/v1/models/llama/versions",
        headers=served.headers("trainer"),
        json={"files": [{"name": name, "digest": digest, "size": len(data)}]},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["exit_code"] == 2
    assert not (tmp_path.parent / "escape").exists()
    assert served.http.get("/api/v1/models", headers=served.headers("viewer")).json() == []


def test_a_commit_naming_unuploaded_files_is_refused(served: Served) -> None:
    response = served.http.post(
        "/api/v1/models/llama/versions",
        headers=served.headers("trainer"),
        json={"files": [{"name": "w.bin", "digest": "ab" * 32, "size": 3}]},
    )
    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "NotFoundError",
        "message": response.json()["error"]["message"],
        "reasons": [],
        "exit_code": 2,
    }


def test_a_refused_scan_stores_no_version(served: Served, tmp_path: Path) -> None:
    import pickle

    bundle = make_bundle(tmp_path / "b")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("echo owned",))

    (bundle / "model.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DeniedError, match="unsafe") as caught:
        _client(served, "trainer", tmp_path).push(bundle, "llama")
    assert caught.value.reasons
    assert _client(served, "viewer", tmp_path).list_models() == []


def test_errors_follow_the_cli_taxonomy(served: Served) -> None:
    viewer = served.headers("viewer")
    missing = served.http.get("/api/v1/resolve", params={"uri": "models:/nope/1"}, headers=viewer)
    assert missing.status_code == 404 and missing.json()["error"]["exit_code"] == 2
    bad = served.http.get("/api/v1/resolve", params={"uri": "nonsense"}, headers=viewer)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidURIError"
    malformed = served.http.post("/api/v1/approvals", headers=viewer, content=b"{not json")
    assert malformed.status_code == 400 and malformed.json()["error"]["exit_code"] == 2


def test_pull_refuses_a_server_presenting_another_registry_key(
    served: Served, tmp_path: Path
) -> None:
    _client(served, "trainer", tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    other = public_key_pem(generate_private_key("ecdsa-p256").public_key())
    with pytest.raises(SignatureMismatchError, match="refusing"):
        _client(served, "viewer", tmp_path, registry_key=other).pull(
            "models:/llama/1", tmp_path / "out"
        )
    assert not (tmp_path / "out").exists()
    known = tmp_path / "pinned.json"
    known.write_text(json.dumps({"http://testserver": {"public_key": other.decode()}}))
    with pytest.raises(SignatureMismatchError):
        _client(served, "viewer", tmp_path, known_registries=known).pull(
            "models:/llama/1", tmp_path / "out2"
        )


def test_first_use_pins_the_registry_key(served: Served, tmp_path: Path) -> None:
    _client(served, "trainer", tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    _client(served, "viewer", tmp_path).pull("models:/llama/1", tmp_path / "out")
    pinned = json.loads((tmp_path / "known.json").read_text())
    served_key = served.http.get("/api/v1/registry").json()["registry_public_key"]
    assert pinned["http://testserver"]["public_key"] == served_key


def test_pull_refuses_tampered_blobs_and_removes_what_it_wrote(
    served: Served, tmp_path: Path
) -> None:
    pushed = _client(served, "trainer", tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    files = _client(served, "viewer", tmp_path).show(pushed["uri"])["manifest"]["files"]
    digest = files[0]["digest"]
    blob = served.home / "blobs" / "sha256" / digest[:2] / digest[2:4] / digest
    blob.chmod(0o644)
    blob.write_bytes(b"x" * blob.stat().st_size)
    from fastapi.testclient import TestClient

    # as over a socket: the server's stream breaks off, the client sees what it got
    lenient = TestClient(served.http.app, raise_server_exceptions=False)
    viewer = Client(
        "http://testserver",
        served.tokens["viewer"],
        http=lenient,
        known_registries=tmp_path / "known.json",
    )
    with pytest.raises((DigestMismatchError, StorageError)):
        viewer.pull("models:/llama/1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_not_in_the_version_cannot_be_downloaded_through_it(
    served: Served, tmp_path: Path
) -> None:
    _client(served, "trainer", tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    data = b"someone else's file"
    digest = hashlib.sha256(data).hexdigest()
    served.http.put(f"/api/v1/uploads/{digest}", headers=served.headers("trainer"), content=data)
    response = served.http.get(
        f"/api/v1/models/llama/versions/1/files/{digest}", headers=served.headers("viewer")
    )
    assert response.status_code == 404
    with pytest.raises(NotFoundError):
        Client("http://testserver", served.tokens["viewer"], http=served.http).resolve(
            "models:/llama/9"
        )


def test_oversized_json_bodies_are_refused(served: Served) -> None:
    response = served.http.post(
        "/api/v1/approvals",
        headers={**served.headers("reviewer"), "content-type": "application/json"},
        content=b'{"uri": "' + b"x" * (2 * 1024 * 1024) + b'"}',
    )
    assert response.status_code == 413
    assert response.json()["error"]["exit_code"] == 2


def test_uploads_over_the_limit_are_refused(served: Served, tmp_path: Path) -> None:
    from dataclasses import replace

    served.registry.settings = replace(served.registry.settings, max_upload_bytes=10)
    data = b"eleven byte"
    response = served.http.put(
        f"/api/v1/uploads/{hashlib.sha256(data).hexdigest()}",
        headers=served.headers("trainer"),
        content=data,
    )
    assert response.status_code == 413


def test_security_headers_and_no_cors(served: Served) -> None:
    response = served.http.get(
        "/api/v1/models", headers={**served.headers("viewer"), "origin": "https://evil.example"}
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers
    preflight = served.http.options(
        "/api/v1/models",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_health_readiness_and_openapi(served: Served) -> None:
    assert served.http.get("/healthz").json() == {"status": "ok"}
    assert served.http.get("/readyz").json() == {"status": "ready"}
    document = served.http.get("/api/v1/openapi.json").json()
    assert "/api/v1/models/{name}/versions" in document["paths"]


def test_push_folders_left_by_a_killed_server_are_removed_at_start(tmp_path: Path) -> None:
    import os

    from modelward.app import remove_stale_push_folders

    stale = tmp_path / "mw-push-old"
    (stale / "bundle").mkdir(parents=True)
    (stale / "bundle" / "w.bin").write_bytes(b"x")
    os.utime(stale, (0, 0))
    fresh = tmp_path / "mw-push-now"
    fresh.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    os.utime(other, (0, 0))
    assert remove_stale_push_folders(tmp_path) == [stale]
    assert not stale.exists() and fresh.exists() and other.exists()
