"""API tokens at the HTTP boundary: hashed storage, scopes and model patterns narrowing a role,
the authenticated identity in the ledger, MODELWARD_ACTOR ignored, revocation, rate limits."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from tests.unit.registry.bundles import make_bundle
from tests.unit.server.conftest import Served

from modelward.client import Client
from modelward.errors import PermissionDeniedError, VerificationError
from modelward.services.tokens import TokenService


def _client(served: Served, token: str, tmp_path: Path) -> Client:
    return Client(
        "http://testserver", token, http=served.http, known_registries=tmp_path / "known.json"
    )


def test_tokens_are_stored_as_a_hash_of_the_secret_only(served: Served) -> None:
    token = served.tokens["trainer"]
    token_id, secret = token[len("mwt_") :].split("_", 1)
    rows = served.sql("SELECT id, secret_sha256 FROM api_tokens WHERE id = ?", (token_id,))
    assert rows == [(token_id, hashlib.sha256(secret.encode()).hexdigest())]
    dump = "\n".join(str(r) for r in served.sql("SELECT * FROM api_tokens"))
    dump += "\n".join(str(r) for r in served.sql("SELECT details FROM ledger_events"))
    assert secret not in dump


def test_a_wrong_secret_for_a_real_id_is_refused(served: Served) -> None:
    token_id = served.tokens["admin"].split("_")[1]
    response = served.http.get(
        "/api/v1/whoami", headers={"authorization": f"Bearer mwt_{token_id}_guessed"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["exit_code"] == 1


def test_ledger_events_record_the_authenticated_subject_issuer_and_token(
    served: Served, tmp_path: Path
) -> None:
    token = served.tokens["trainer"]
    _client(served, token, tmp_path).push(make_bundle(tmp_path / "b"), "llama")
    (details,) = served.sql("SELECT details FROM ledger_events WHERE action = 'version.push'")[0]
    auth = json.loads(str(details))["auth"]
    assert auth == {"sub": "trainer", "iss": "modelward", "token_id": token.split("_")[1]}
    (actor,) = served.sql("SELECT actor FROM ledger_events WHERE action = 'version.push'")[0]
    assert actor == "trainer"


def test_modelward_actor_means_nothing_to_the_server(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELWARD_ACTOR", "admin")
    trainer = _client(served, served.tokens["trainer"], tmp_path)
    trainer.push(make_bundle(tmp_path / "b"), "llama")
    with pytest.raises(PermissionDeniedError, match="may not approve"):
        trainer.approve("models:/llama/1", "staging")
    with pytest.raises(PermissionDeniedError, match="may not promote"):
        trainer.promote("models:/llama/1", "staging")
    with pytest.raises(PermissionDeniedError, match="may not add users"):
        trainer.add_user("mallory", "admin")
    assert "mallory" not in {
        u["name"] for u in _client(served, served.tokens["admin"], tmp_path).users()
    }


def test_nobody_approves_their_own_version_even_as_admin(served: Served, tmp_path: Path) -> None:
    admin = _client(served, served.tokens["admin"], tmp_path)
    admin.push(make_bundle(tmp_path / "b"), "llama")
    with pytest.raises(PermissionDeniedError, match="author"):
        admin.approve("models:/llama/1", "staging")
    reviewer = _client(served, served.tokens["reviewer"], tmp_path)
    assert reviewer.approve("models:/llama/1", "staging")["reviewer"] == "reviewer"


def test_a_scoped_token_may_do_less_than_its_role(served: Served, tmp_path: Path) -> None:
    push_only = served.token_for("trainer", scopes=["push"])
    client = _client(served, push_only, tmp_path)
    pushed = client.push(make_bundle(tmp_path / "b"), "llama")
    assert pushed["created"]
    with pytest.raises(PermissionDeniedError, match="limited to push"):
        client.show("models:/llama/1")
    # the scope never widens the role
    widened = served.token_for("viewer", scopes=["push"])
    with pytest.raises(PermissionDeniedError):
        _client(served, widened, tmp_path).push(make_bundle(tmp_path / "c", seed=2), "llama")
    response = served.http.post(
        "/api/v1/models/llama/versions",
        headers={"authorization": f"Bearer {widened}"},
        json={"files": [{"name": "x", "digest": "0" * 64, "size": 1}]},
    )
    assert response.status_code == 403 and "may not push" in response.json()["error"]["message"]


def test_a_model_pattern_token_sees_and_touches_only_its_models(
    served: Served, tmp_path: Path
) -> None:
    admin = _client(served, served.tokens["trainer"], tmp_path)
    admin.push(make_bundle(tmp_path / "a"), "team-a-llm")
    admin.push(make_bundle(tmp_path / "b", seed=2), "secret-llm")
    limited = _client(served, served.token_for("trainer", model_pattern="team-a-*"), tmp_path)
    assert [m["name"] for m in limited.list_models()] == ["team-a-llm"]
    assert limited.show("models:/team-a-llm/1")["version"] == 1
    for call in (
        lambda: limited.show("models:/secret-llm/1"),
        lambda: limited.list_versions("secret-llm"),
        lambda: limited.push(make_bundle(tmp_path / "c", seed=3), "secret-llm"),
        lambda: limited.audit_log(),
    ):
        with pytest.raises(PermissionDeniedError, match="team-a-"):
            call()


def test_revoked_and_revoked_all_tokens_stop_working(served: Served) -> None:
    service = TokenService(served.registry.ctx, actor="root")
    first, second = served.token_for("viewer"), served.token_for("viewer")
    ok = {"authorization": f"Bearer {first}"}
    assert served.http.get("/api/v1/whoami", headers=ok).status_code == 200
    service.revoke_all("viewer")
    for token in (first, second, served.tokens["viewer"]):
        response = served.http.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert "revoked" in response.json()["error"]["message"]


def test_last_use_is_recorded(served: Served) -> None:
    token = served.tokens["auditor"]
    token_id = token.split("_")[1]
    assert served.sql("SELECT last_used_at FROM api_tokens WHERE id = ?", (token_id,)) == [(None,)]
    served.http.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"})
    (used,) = served.sql("SELECT last_used_at FROM api_tokens WHERE id = ?", (token_id,))[0]
    assert used is not None


def test_only_an_admin_creates_tokens(served: Served) -> None:
    with pytest.raises(PermissionDeniedError):
        TokenService(served.registry.ctx, actor="trainer").create("trainer")


def test_failed_authentications_are_rate_limited_per_address(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.http.app.state.limiter.per_minute = 3  # type: ignore[attr-defined]
    bad = {"authorization": "Bearer mwt_0000_s3cr3tguess"}
    statuses = [served.http.get("/api/v1/whoami", headers=bad).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # even a good token from that address waits now
    good = served.http.get("/api/v1/whoami", headers=served.headers("admin"))
    assert good.status_code == 429
    assert good.json()["error"]["exit_code"] == 4
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "modelward.http.auth"]
    assert logged and logged[0]["event"] == "authentication.failed"
    assert "s3cr3tguess" not in caplog.text  # the credential itself is never logged


def _token_id(token: str) -> str:
    return token.split("_")[1]


def _whoami(served: Served, token: str) -> tuple[int, str]:
    response = served.http.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"})
    return response.status_code, response.text


def test_an_expired_token_is_refused_as_expired(served: Served) -> None:
    status, text = _whoami(served, served.tokens["expired"])
    assert status == 401
    assert "expired at 2020-01-01T01:00" in text


def test_a_token_revoked_in_the_ledger_cannot_be_revived_in_the_database(served: Served) -> None:
    token = served.tokens["revoked"]
    token_id = _token_id(token)
    [(create_seq,)] = served.sql(
        "SELECT seq FROM ledger_events WHERE action = 'token.create' AND subject = ?",
        (f"token:{token_id}",),
    )
    # someone with write access to the database puts the row back as it was before revocation
    served.sql(
        "UPDATE api_tokens SET revoked_at = NULL, ledger_seq = ? WHERE id = ?",
        (create_seq, token_id),
    )
    status, text = _whoami(served, token)
    assert status == 401
    assert "not the current one" in text


def test_a_token_row_inserted_behind_the_registrys_back_is_refused(served: Served) -> None:
    secret = "forged-secret-forged-secret-forged"
    served.sql(
        "INSERT INTO api_tokens (id, user_name, secret_sha256, scopes, created_at, created_by)"
        " VALUES ('feedfacefeedface', 'admin', ?, '[]', '2026-01-01T00:00:00Z', 'root')",
        (hashlib.sha256(secret.encode()).hexdigest(),),
    )
    status, text = _whoami(served, f"mwt_feedfacefeedface_{secret}")
    assert status == 401
    assert "no ledger event anchors it" in text


@pytest.mark.parametrize(
    "column,value",
    [("user_name", "admin"), ("scopes", "[]"), ("expires_at", None), ("model_pattern", None)],
)
def test_an_edited_token_row_is_refused(served: Served, column: str, value: object) -> None:
    token = served.token_for(
        "trainer", scopes=["push"], model_pattern="team-*", expires_in=timedelta(days=1)
    )
    served.sql(f"UPDATE api_tokens SET {column} = ? WHERE id = ?", (value, _token_id(token)))
    status, text = _whoami(served, token)
    assert status == 401
    assert "differs from what its ledger event" in text


def test_tokens_made_and_revoked_are_anchored_so_audit_names_tampering(served: Served) -> None:
    from modelward.services.state_integrity import state_integrity_check

    served.sql("UPDATE api_tokens SET revoked_at = NULL")
    with served.registry.ctx.database.read() as conn:
        problems = state_integrity_check(conn)
    revoked = _token_id(served.tokens["revoked"])
    assert any(f"token {revoked}" in p and "edited" in p for p in problems)


def test_a_model_scoped_grant_works_through_the_server(served: Served, tmp_path: Path) -> None:
    from modelward.services.users import UserService

    UserService(served.registry.ctx, actor="root").grant("viewer", "reviewer", "llama*")
    trainer = _client(served, served.tokens["trainer"], tmp_path)
    trainer.push(make_bundle(tmp_path / "a", seed=1), "llama")
    trainer.push(make_bundle(tmp_path / "b", seed=2), "other")
    viewer = _client(served, served.tokens["viewer"], tmp_path)
    viewer.approve("models:/llama/1", "staging")
    with pytest.raises(PermissionDeniedError, match="may not approve"):
        viewer.approve("models:/other/1", "staging")
    auditor = _client(served, served.tokens["auditor"], tmp_path)
    with pytest.raises(PermissionDeniedError, match="may not approve"):
        auditor.approve("models:/llama/1", "staging")


def test_a_revocation_hidden_by_editing_its_subject_still_refuses(served: Served) -> None:
    token = served.tokens["revoked"]
    token_id = _token_id(token)
    [(create_seq,)] = served.sql(
        "SELECT seq FROM ledger_events WHERE action = 'token.create' AND subject = ?",
        (f"token:{token_id}",),
    )
    assert _whoami(served, served.tokens["admin"])[0] == 200  # this process has seen the log
    served.sql(
        "UPDATE ledger_events SET subject = 'token:hidden' WHERE action = 'token.revoke'"
        " AND subject = ?",
        (f"token:{token_id}",),
    )
    served.sql(
        "UPDATE api_tokens SET revoked_at = NULL, ledger_seq = ? WHERE id = ?",
        (create_seq, token_id),
    )
    status, text = _whoami(served, token)
    assert status == 401
    assert "not trusted" in text


def test_a_fresh_process_refuses_after_a_hidden_or_deleted_event(
    served: Served, tmp_path: Path
) -> None:
    """The attacker edits the database before this process ever read the ledger: the hidden
    revocation fails its seal where the process's own index meets it."""
    from modelward.services.context import open_registry
    from modelward.services.tokens import authenticate_token

    token = served.tokens["revoked"]
    token_id = _token_id(token)
    [(create_seq,)] = served.sql(
        "SELECT seq FROM ledger_events WHERE action = 'token.create' AND subject = ?",
        (f"token:{token_id}",),
    )
    [(revoke_seq,)] = served.sql(
        "SELECT seq FROM ledger_events WHERE action = 'token.revoke' AND subject = ?",
        (f"token:{token_id}",),
    )
    served.sql(
        "UPDATE api_tokens SET revoked_at = NULL, ledger_seq = ? WHERE id = ?",
        (create_seq, token_id),
    )
    served.token_for("viewer")  # a later event: the deleted one is not the log's tail
    served.sql("DELETE FROM ledger_events WHERE seq = ?", (revoke_seq,))
    from datetime import UTC, datetime

    context = open_registry(served.home)
    try:
        with pytest.raises(PermissionDeniedError, match="missing"):
            authenticate_token(context, token, datetime.now(UTC))
    finally:
        context.close()


class _SwapModels(httpx.BaseTransport):
    """Someone between client and server (no keys) answers for model `team-a` with the genuine,
    registry-signed files of `team-b`, relabelled."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url).replace("team-a", "team-b")
        swapped = httpx.Request(request.method, url, headers=request.headers)
        response = self.inner.handle_request(swapped)
        content = response.read()
        if "/resolve" in url and response.status_code == 200:
            body = json.loads(content)
            body["model"] = "team-a"
            body["uri"] = str(body.get("uri", "")).replace("team-b", "team-a")
            content = json.dumps(body).encode()
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=content)


def test_a_pull_refuses_another_models_signed_files(served: Served, tmp_path: Path) -> None:
    trainer = _client(served, served.tokens["trainer"], tmp_path)
    trainer.push(make_bundle(tmp_path / "a", seed=1), "team-a")
    trainer.push(make_bundle(tmp_path / "b", seed=2), "team-b")
    trainer.pull("models:/team-a/1", tmp_path / "genuine")  # pins the registry key
    relay = httpx.Client(
        transport=_SwapModels(served.http._transport),  # type: ignore[attr-defined]
        base_url="http://testserver",
    )
    fooled = Client(
        "http://testserver",
        served.tokens["trainer"],
        http=relay,
        known_registries=tmp_path / "known.json",
    )
    with pytest.raises(VerificationError, match="team-b"):
        fooled.pull("models:/team-a/1", tmp_path / "swapped")
    assert not (tmp_path / "swapped").exists() or not any((tmp_path / "swapped").iterdir())


def test_hostile_numbers_and_paths_get_clean_errors_never_500(
    served: Served, tmp_path: Path
) -> None:
    admin = served.headers("admin")
    huge = "9" * 30
    assert served.http.get(f"/api/v1/jobs/{huge}", headers=admin).status_code == 400
    assert served.http.get(f"/api/v1/audit/log?since={huge}", headers=admin).status_code == 400
    assert served.http.get("/api/v1/show?uri=models:/m/²", headers=admin).status_code == 400
    digest = hashlib.sha256(b"x").hexdigest()
    put = served.http.put(f"/api/v1/uploads/{digest}", content=b"x", headers=admin)
    assert put.status_code in (200, 201, 204)
    for files in (
        [{"name": "a", "digest": digest, "size": 1}, {"name": "a/b", "digest": digest, "size": 1}],
        [{"name": "a/b", "digest": digest, "size": 1}, {"name": "a", "digest": digest, "size": 1}],
        [{"name": "x/" + "d/" * 1500 + "f", "digest": digest, "size": 1}],
    ):
        response = served.http.post(
            "/api/v1/models/m/versions", json={"files": files}, headers=admin
        )
        assert response.status_code == 400, response.text


def test_a_model_limited_token_learns_nothing_of_other_models(
    served: Served, tmp_path: Path
) -> None:
    _client(served, served.tokens["trainer"], tmp_path).push(make_bundle(tmp_path / "b"), "team-b")
    token = served.token_for("viewer", model_pattern="team-a-*")
    headers = {"authorization": f"Bearer {token}"}
    answers = {
        served.http.get(f"/api/v1/show?uri={uri}", headers=headers).text
        for uri in ("models:/team-b/1", "models:/team-b/2", "models:/team-b@prod")
    }
    assert len(answers) == 1  # the same refusal whether or not the model or version exists
