"""The console's sign-in, sessions, CSRF, escaping and buttons, in-process (TestClient over
https://testserver, so that Secure cookies are sent) with a test OIDC provider on 127.0.0.1.

Each test writes the attack first: a forged, replayed or cross-site request, a stolen copy of
the table, a hostile file name, a revoked token, a session after sign-out.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.console_world import HOSTILE_COMMENT, HOSTILE_DESCRIPTION, HOSTILE_FILE, build_world
from tests.oidc_issuer import AuthorizationServer, TestIssuer, serve_issuer

from modelward.app import ConsoleOidcSettings, ServerRegistry, ServerSettings
from modelward.interfaces.http.server import create_app
from modelward.services.oidc import OidcService
from modelward.services.tokens import TokenService

BASE = "https://testserver"
ORIGIN = {"origin": BASE}
CLIENT_ID = "modelward-console"
SESSION = "__Host-modelward_session"


@dataclass
class Console:
    home: Path
    registry: ServerRegistry
    issuer: TestIssuer
    authorization: AuthorizationServer
    idp: str
    tokens: dict[str, str]

    def client(self) -> TestClient:
        return TestClient(create_app(self.registry), base_url=BASE)

    def sign_in(self, who: str, client: TestClient | None = None) -> TestClient:
        client = client or self.client()
        page = client.get("/ui/login")
        csrf = _csrf(page.text)
        answer = client.post(
            "/ui/login/token",
            data={"csrf_token": csrf, "token": self.tokens[who]},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        return client

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.home / "registry.db")
        try:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    issuer = TestIssuer()
    with pytest.MonkeyPatch.context() as patch, serve_issuer(issuer, CLIENT_ID) as served:
        idp, authorization = served
        for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
            patch.delenv(variable, raising=False)
        patch.setenv("MODELWARD_HOME", str(root / "home"))
        patch.setenv("MODELWARD_ACTOR", "root")
        world = build_world(root)
        oidc = OidcService(world.ctx, actor="root")
        oidc.add_issuer(issuer.url, CLIENT_ID, jwks_url=f"{idp}/.well-known/jwks.json")
        oidc.map_claims(issuer.url, {"sub": "rita@example.org"}, "rita")
        tokens = {
            who: TokenService(world.ctx, actor="root").create(who).token
            for who in ("rita", "rex", "tina", "vic", "alice")
        }
        settings = ServerSettings(
            home=world.home,
            spool_dir=root,
            auth_failures_per_minute=1000,
            console_oidc=ConsoleOidcSettings(
                issuer.url, CLIENT_ID, f"{idp}/authorize", f"{idp}/token"
            ),
        )
        registry = ServerRegistry(settings, world.ctx)
        try:
            yield Console(world.home, registry, issuer, authorization, idp, tokens)
        finally:
            registry.close()


# --------------------------------------------------------------------------- sessions


def test_a_session_cookie_is_host_only_httponly_secure_samesite_and_stored_hashed(
    console: Console,
) -> None:
    client = console.client()
    csrf = _csrf(client.get("/ui/login").text)
    answer = client.post(
        "/ui/login/token",
        data={"csrf_token": csrf, "token": console.tokens["vic"]},
        headers=ORIGIN,
        follow_redirects=False,
    )
    header = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{SESSION}="))
    secret = header.split(";")[0].split("=", 1)[1]
    attributes = {a.strip().lower() for a in header.split(";")[1:]}
    assert {"httponly", "secure", "path=/", "samesite=lax"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    stored = [row[0] for row in console.sql("SELECT id_sha256 FROM web_sessions")]
    assert secret not in stored  # a copy of the table signs nobody in
    raw = urllib.parse.unquote(secret)
    import base64

    digest = hashlib.sha256(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))).hexdigest()
    assert digest in stored
    assert len(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) == 32


def test_without_a_session_every_page_sends_the_browser_to_sign_in(console: Console) -> None:
    client = console.client()
    for path in ("/ui/models", "/ui/ledger", "/ui/models/llama-chat/versions/1", "/ui/runtime"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login", path
    client.cookies.set(SESSION, "A" * 43)
    assert client.get("/ui/models", follow_redirects=False).status_code == 303
    client.cookies.set(SESSION, "not base64 !!")
    assert client.get("/ui/models", follow_redirects=False).status_code == 303


def test_a_session_works_on_every_server_process_and_sign_out_revokes_it(
    console: Console,
) -> None:
    first = console.sign_in("vic")
    secret = first.cookies[SESSION]
    other_process = ServerRegistry(console.registry.settings)  # its own engine, same database
    try:
        second = TestClient(create_app(other_process), base_url=BASE)
        second.cookies.set(SESSION, secret)
        assert second.get("/ui/models", follow_redirects=False).status_code == 200
        csrf = _csrf(first.get("/ui/models").text)
        first.post("/ui/logout", data={"csrf_token": csrf}, headers=ORIGIN)
        assert second.get("/ui/models", follow_redirects=False).status_code == 303
    finally:
        other_process.close()


def test_a_session_opened_with_a_token_ends_when_the_token_is_revoked(console: Console) -> None:
    token = TokenService(console.registry.ctx, actor="root").create("vic")
    console.tokens["short-lived"] = token.token
    client = console.sign_in("short-lived")
    assert client.get("/ui/models", follow_redirects=False).status_code == 200
    TokenService(console.registry.ctx, actor="root").revoke(token.record.id)
    assert client.get("/ui/models", follow_redirects=False).status_code == 303


def test_a_session_row_written_with_database_access_alone_signs_nobody_in(
    console: Console,
) -> None:
    import base64

    client = console.sign_in("vic")
    assert client.get("/ui/models", follow_redirects=False).status_code == 200
    # promote the row to another user: the row's HMAC no longer fits
    console.sql("UPDATE web_sessions SET user_name = 'alice' WHERE user_name = 'vic'")
    assert client.get("/ui/models", follow_redirects=False).status_code == 303
    # insert a row for a secret of one's choosing, copying a genuine row's MAC
    raw = bytes(range(32))
    secret = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    console.sql(
        "INSERT INTO web_sessions SELECT ?, 'alice', principal, csrf_token, created_at, "
        "expires_at, NULL, mac FROM web_sessions LIMIT 1",
        (hashlib.sha256(raw).hexdigest(),),
    )
    forged = console.client()
    forged.cookies.set(SESSION, secret)
    assert forged.get("/ui/models", follow_redirects=False).status_code == 303


def test_an_expired_session_signs_nobody_in(console: Console) -> None:
    client = console.sign_in("vic")
    console.sql("UPDATE web_sessions SET expires_at = '2020-01-01T00:00:00.000000Z'")
    assert client.get("/ui/models", follow_redirects=False).status_code == 303


def test_a_wrong_token_is_refused_and_counted(console: Console) -> None:
    client = console.client()
    csrf = _csrf(client.get("/ui/login").text)
    answer = client.post(
        "/ui/login/token",
        data={"csrf_token": csrf, "token": "mwt_abc_wrong"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 401
    assert "Sign-in refused" in answer.text
    assert SESSION not in client.cookies


# --------------------------------------------------------------------------- CSRF


def _approve(client: TestClient, data: dict[str, str], **headers: str) -> httpx.Response:
    return client.post(
        "/ui/models/mistral-tiny/versions/1/approve",
        data=data,
        headers=headers,
        follow_redirects=False,
    )


def test_every_post_needs_the_sessions_csrf_token_and_this_origin(console: Console) -> None:
    client = console.sign_in("rita")
    csrf = _csrf(client.get("/ui/models/mistral-tiny/versions/1").text)
    form = {"environment": "staging", "comment": "ok"}
    assert _approve(client, form, origin=BASE).status_code == 403  # no token
    assert _approve(client, {**form, "csrf_token": "x" * 43}, origin=BASE).status_code == 403
    other = console.sign_in("rita")  # another session's token is not this one's
    other_csrf = _csrf(other.get("/ui/models").text)
    assert _approve(client, {**form, "csrf_token": other_csrf}, origin=BASE).status_code == 403
    evil = {**form, "csrf_token": csrf}
    assert _approve(client, evil, origin="https://evil.example").status_code == 403
    assert _approve(client, evil).status_code == 403  # neither Origin nor Referer
    assert _approve(client, evil, origin="null").status_code == 403
    assert console.sql("SELECT count(*) FROM gate_approvals WHERE reviewer = 'rita'") == [(0,)]
    assert _approve(client, evil, origin=BASE).status_code == 303
    assert console.sql("SELECT count(*) FROM gate_approvals WHERE reviewer = 'rita'") == [(1,)]
    assert _approve(client, evil, referer=f"{BASE}/ui/models").status_code == 303


def test_the_sign_in_form_is_csrf_protected_too(console: Console) -> None:
    client = console.client()
    client.get("/ui/login")
    answer = client.post(
        "/ui/login/token",
        data={"csrf_token": "forged", "token": console.tokens["alice"]},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert SESSION not in client.cookies


# --------------------------------------------------------------------------- OIDC


def _start_oidc(client: TestClient) -> dict[str, str]:
    answer = client.get("/ui/login/oidc", follow_redirects=False)
    assert answer.status_code == 303
    location = answer.headers["location"]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"{BASE}/ui/auth/callback"
    return query


def _authorize(query: dict[str, str]) -> dict[str, str]:
    """What the provider does when the person signs in: a redirect back with a code."""
    location = httpx.get(
        f"{query['_idp']}/authorize", params=query, follow_redirects=False
    ).headers["location"]
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def test_oidc_authorization_code_with_pkce_signs_a_person_in(console: Console) -> None:
    client = console.client()
    query = _start_oidc(client)
    back = _authorize({**query, "_idp": console.idp})
    answer = client.get("/ui/auth/callback", params=back, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = client.get("/ui/models")
    assert "rita" in page.text and "reviewer" in page.text
    # the code and the state were used once: replaying the redirect signs nobody in
    replay = console.client()
    replay.cookies.set("__Host-modelward_login", back["state"])
    replayed = replay.get("/ui/auth/callback", params=back, follow_redirects=False)
    assert replayed.status_code == 401
    assert "already used" in replayed.text


def test_oidc_callback_refuses_a_state_not_bound_to_this_browser(console: Console) -> None:
    victim = console.client()
    attacker = console.client()
    query = _start_oidc(attacker)
    back = _authorize({**query, "_idp": console.idp})
    _start_oidc(victim)  # the victim has a sign-in of their own in progress
    answer = victim.get("/ui/auth/callback", params=back, follow_redirects=False)
    assert answer.status_code == 401
    assert "state does not match" in answer.text
    assert SESSION not in victim.cookies


def test_oidc_callback_refuses_a_token_minted_for_another_nonce(console: Console) -> None:
    client = console.client()
    query = _start_oidc(client)
    back = _authorize({**query, "_idp": console.idp, "nonce": "someone-elses-nonce"})
    answer = client.get("/ui/auth/callback", params=back, follow_redirects=False)
    assert answer.status_code == 401
    assert "nonce" in answer.text


def test_oidc_callback_fails_when_the_pkce_verifier_does_not_fit_the_challenge(
    console: Console,
) -> None:
    client = console.client()
    query = _start_oidc(client)
    back = _authorize({**query, "_idp": console.idp})
    console.sql("UPDATE web_logins SET code_verifier = ?", ("x" * 43,))
    answer = client.get("/ui/auth/callback", params=back, follow_redirects=False)
    assert answer.status_code == 401
    assert "refused the code" in answer.text


def test_oidc_callback_refuses_an_id_token_for_another_client(console: Console) -> None:
    client = console.client()
    query = _start_oidc(client)
    back = _authorize({**query, "_idp": console.idp})
    original = console.authorization.issuer.mint

    def mint_for_another_audience(**claims: Any) -> str:
        return original(**{**claims, "aud": "another-app"})

    console.authorization.issuer.mint = mint_for_another_audience  # type: ignore[method-assign]
    try:
        answer = client.get("/ui/auth/callback", params=back, follow_redirects=False)
    finally:
        console.authorization.issuer.mint = original  # type: ignore[method-assign]
    assert answer.status_code == 401
    assert SESSION not in client.cookies


# --------------------------------------------------------------------------- pages


def test_hostile_text_is_escaped_everywhere(console: Console) -> None:
    client = console.sign_in("rita")
    csrf = _csrf(client.get("/ui/models/llama-chat/versions/2").text)
    client.post(
        "/ui/models/llama-chat/versions/2/approve",
        data={"csrf_token": csrf, "environment": "canary", "comment": HOSTILE_COMMENT},
        headers=ORIGIN,
    )
    pages = [
        client.get("/ui/models/llama-chat/versions/2").text,
        client.get("/ui/models/llama-chat").text,
        client.get(
            "/ui/diff", params={"a": "models:/llama-chat/1", "b": "models:/llama-chat/2"}
        ).text,
    ]
    for html in pages:
        for hostile in (HOSTILE_FILE, HOSTILE_COMMENT, HOSTILE_DESCRIPTION):
            assert hostile not in html
        assert "<script>alert" not in html and "<img src=x" not in html and "<svg" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.json" in pages[0]
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in pages[0]


def test_console_pages_allow_no_external_source_and_the_api_keeps_its_headers(
    console: Console,
) -> None:
    client = console.sign_in("vic")
    policy = client.get("/ui/models").headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy and "*" not in policy and "unsafe" not in policy
    api = client.get("/api/v1/registry")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert api.headers["referrer-policy"] == "no-referrer"
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui") or p == "/"]


@pytest.mark.parametrize(
    ("who", "approve", "promote"),
    [
        ("vic", False, False),
        ("tina", False, False),  # a trainer, and the version's uploader
        ("rita", True, False),
        ("rex", False, True),
        ("alice", True, True),
    ],
)
def test_nobody_sees_a_button_they_may_not_press(
    console: Console, who: str, approve: bool, promote: bool
) -> None:
    html = console.sign_in(who).get("/ui/models/llama-chat/versions/2").text
    assert ('data-testid="approve-form"' in html) is approve
    assert ('data-testid="promote-form"' in html) is promote


def test_a_forged_promotion_by_a_trainer_is_refused_by_the_service(console: Console) -> None:
    client = console.sign_in("tina")
    csrf = _csrf(client.get("/ui/models").text)
    before = console.sql("SELECT count(*) FROM gate_decisions")
    answer = client.post(
        "/ui/models/llama-chat/versions/2/promote",
        data={"csrf_token": csrf, "environment": "staging"},
        headers=ORIGIN,
    )
    assert answer.status_code == 403
    assert "trainer" in answer.text
    assert console.sql("SELECT count(*) FROM gate_decisions") == before


def test_models_are_found_by_name_owner_risk_tier_and_environment(console: Console) -> None:
    client = console.sign_in("vic")

    def names(**params: str) -> list[str]:
        html = client.get("/ui/models", params=params).text
        return re.findall(r'<td><a href="/ui/models/([^"/]+)">', html)

    assert names() == ["llama-chat", "mistral-tiny"]
    assert names(q="MISTRAL") == ["mistral-tiny"]
    assert names(owner="tina") == ["llama-chat", "mistral-tiny"]
    assert names(owner="nobody") == []
    assert names(environment="staging") == ["llama-chat"]
    assert names(risk_tier="medium") == ["llama-chat"]
    assert names(risk_tier="high") == []
    # a decision row edited behind the registry's back no longer vouches for the tier
    console.sql("UPDATE gate_decisions SET facts = replace(facts, '\"medium\"', '\"high\"')")
    assert names(risk_tier="high") == []
    assert names(risk_tier="medium") == []


def test_a_ledger_proof_downloads_as_a_file(console: Console) -> None:
    client = console.sign_in("vic")
    answer = client.get("/ui/ledger/2/proof")
    assert answer.status_code == 200
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.text.startswith("c2sp.org/tlog-proof@v1")
    assert client.get("/ui/ledger/999999/proof").status_code == 404


# --------------------------------------------------------------- found by a break-it review


def test_behind_a_tls_proxy_the_public_url_is_the_consoles_origin(console: Console) -> None:
    import dataclasses

    public = "https://console.example.org"
    settings = dataclasses.replace(console.registry.settings, public_url=public)
    behind = ServerRegistry(settings, console.registry.ctx)
    # the proxy's upstream address (TLS here only so that the test client sends Secure cookies,
    # which a browser sends the proxy, and the proxy on to the server)
    client = TestClient(create_app(behind), base_url="https://10.0.0.5:8080")
    csrf = _csrf(client.get("/ui/login").text)
    form = {"csrf_token": csrf, "token": console.tokens["vic"]}
    wrong = client.post("/ui/login/token", data=form, headers={"origin": "http://10.0.0.5:8080"})
    assert wrong.status_code == 403  # the browser never sees the proxy's upstream address
    answer = client.post(
        "/ui/login/token", data=form, headers={"origin": public}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    from modelward.app import _public_url
    from modelward.errors import InputError

    for bad in ("console.example.org", "https://x/ui", "ftp://x", "https://u:p@x"):
        with pytest.raises(InputError):
            _public_url(bad)
    assert _public_url("https://Console.Example.org/") == "https://console.example.org"


def test_a_signed_out_session_cannot_be_revived_in_the_database(console: Console) -> None:
    client = console.sign_in("vic")
    secret = client.cookies[SESSION]
    csrf = _csrf(client.get("/ui/models").text)
    client.post("/ui/logout", data={"csrf_token": csrf}, headers=ORIGIN)
    console.sql("UPDATE web_sessions SET revoked_at = NULL")
    revived = console.client()
    revived.cookies.set(SESSION, secret)
    assert revived.get("/ui/models", follow_redirects=False).status_code == 303


def test_signing_in_again_ends_the_browsers_previous_session(console: Console) -> None:
    client = console.sign_in("vic")
    first = client.cookies[SESSION]
    console.sign_in("vic", client)
    stale = console.client()
    stale.cookies.set(SESSION, first)
    assert stale.get("/ui/models", follow_redirects=False).status_code == 303


def test_buttons_follow_roles_granted_on_model_patterns(console: Console) -> None:
    from modelward.services.users import UserService

    users = UserService(console.registry.ctx, actor="root")
    users.add("gus", "viewer")
    console.tokens["gus"] = TokenService(console.registry.ctx, actor="root").create("gus").token
    html = console.sign_in("gus").get("/ui/models/mistral-tiny/versions/1").text
    assert 'data-testid="promote-form"' not in html
    users.grant("gus", "releaser", "mistral-*")
    html = console.sign_in("gus").get("/ui/models/mistral-tiny/versions/1").text
    assert 'data-testid="promote-form"' in html
    other = console.sign_in("gus").get("/ui/models/llama-chat/versions/1").text
    assert 'data-testid="promote-form"' not in other


def test_a_rollback_confirmed_for_another_release_is_refused(console: Console) -> None:
    client = console.sign_in("rex")
    csrf = _csrf(client.get("/ui/models").text)
    before = console.sql("SELECT count(*) FROM gate_releases")
    answer = client.post(
        "/ui/environments/staging/models/llama-chat/rollback",
        data={"csrf_token": csrf, "to": "", "from": "rel-that-was-current-then"},
        headers=ORIGIN,
    )
    assert answer.status_code == 409 and "moved" in answer.text
    missing = client.post(
        "/ui/environments/staging/models/llama-chat/rollback",
        data={"csrf_token": csrf, "to": ""},
        headers=ORIGIN,
    )
    assert missing.status_code == 400
    assert console.sql("SELECT count(*) FROM gate_releases") == before
