"""OIDC JWTs at the HTTP boundary: a CI job's token, mapped by its claims to a service user,
pushes and does nothing else; hostile tokens are refused with 401."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.oidc_issuer import AUDIENCE, GOOD_CLAIMS, TestIssuer, serve_jwks
from tests.unit.registry.bundles import make_bundle
from tests.unit.server.conftest import Served

from modelward.client import Client
from modelward.errors import InputError, PermissionDeniedError
from modelward.services.oidc import OidcService, parse_algorithms

ISSUER = TestIssuer()


@pytest.fixture
def oidc(served: Served) -> Served:
    service = OidcService(served.registry.ctx, actor="root")
    service.add_issuer(ISSUER.url, AUDIENCE, jwks_text=json.dumps(ISSUER.jwks()))
    service.map_claims(ISSUER.url, GOOD_CLAIMS, "trainer")
    return served


def _as(served: Served, token: str, tmp_path: Path) -> Client:
    return Client(
        "http://testserver", token, http=served.http, known_registries=tmp_path / "known.json"
    )


@pytest.mark.parametrize("alg,kid", [("RS256", "rsa-1"), ("ES256", "ec-1")])
def test_a_ci_job_token_acts_as_its_mapped_user(
    oidc: Served, tmp_path: Path, alg: str, kid: str
) -> None:
    token = ISSUER.mint(kid=kid, alg=alg)
    job = _as(oidc, token, tmp_path)
    assert job.whoami()["actor"] == "trainer"
    job.push(make_bundle(tmp_path / "b"), "llama")
    (details,) = oidc.sql("SELECT details FROM ledger_events WHERE action = 'version.push'")[0]
    claims = ISSUER.claims()
    assert json.loads(str(details))["auth"]["iss"] == ISSUER.url
    assert json.loads(str(details))["auth"]["sub"] == claims["sub"]
    assert json.loads(str(details))["auth"]["token_id"].startswith("job-")
    with pytest.raises(PermissionDeniedError):
        job.approve("models:/llama/1", "staging")
    with pytest.raises(PermissionDeniedError):
        job.promote("models:/llama/1", "staging")
    with pytest.raises(PermissionDeniedError):
        job.add_user("ci-admin", "admin")


@pytest.mark.parametrize("case", sorted(ISSUER.hostile()))
def test_hostile_tokens_are_refused(oidc: Served, case: str) -> None:
    token = ISSUER.hostile()[case]
    response = oidc.http.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401, (case, response.text)
    assert response.json()["error"]["exit_code"] == 1


def test_keys_come_from_the_jwks_url_when_configured(served: Served) -> None:
    with serve_jwks(ISSUER) as url:
        service = OidcService(served.registry.ctx, actor="root")
        service.add_issuer(ISSUER.url, AUDIENCE, jwks_url=url)
        service.map_claims(ISSUER.url, GOOD_CLAIMS, "trainer")
        ok = served.http.get("/api/v1/whoami", headers={"authorization": f"Bearer {ISSUER.mint()}"})
        assert ok.status_code == 200 and ok.json()["actor"] == "trainer"
        forged = served.http.get(
            "/api/v1/whoami", headers={"authorization": f"Bearer {ISSUER.mint(kid='nope')}"}
        )
        assert forged.status_code == 401


def test_issuers_refuse_hmac_none_and_private_keys() -> None:
    for bad in ("HS256", "none", "RS256,HS512"):
        with pytest.raises(InputError):
            parse_algorithms(bad)


def test_a_jwks_with_private_keys_is_refused(served: Served) -> None:
    from jwt.algorithms import RSAAlgorithm

    private = json.loads(RSAAlgorithm.to_jwk(ISSUER.rsa))
    with pytest.raises(InputError, match="private"):
        OidcService(served.registry.ctx, actor="root").add_issuer(
            ISSUER.url, AUDIENCE, jwks_text=json.dumps({"keys": [private]})
        )


def test_only_admins_configure_issuers(served: Served) -> None:
    with pytest.raises(PermissionDeniedError):
        OidcService(served.registry.ctx, actor="trainer").add_issuer(
            ISSUER.url, AUDIENCE, jwks_text=json.dumps(ISSUER.jwks())
        )


def _bearer(served: Served, jwt: str) -> tuple[int, str]:
    response = served.http.get("/api/v1/whoami", headers={"authorization": f"Bearer {jwt}"})
    return response.status_code, response.text


def test_a_claim_mapping_edited_in_the_database_maps_nobody(oidc: Served) -> None:
    good = ISSUER.mint()
    assert _bearer(oidc, good)[0] == 200
    oidc.sql("UPDATE oidc_mappings SET user_name = 'admin'")
    status, text = _bearer(oidc, good)
    assert status == 401
    assert "no claim mapping" in text


def test_a_claim_mapping_inserted_in_the_database_maps_nobody(oidc: Served) -> None:
    claims = {**GOOD_CLAIMS, "repository": "mallory/evil"}
    oidc.sql(
        "INSERT INTO oidc_mappings (issuer, claims, user_name, created_at, created_by)"
        " VALUES (?, ?, 'admin', '2026-01-01T00:00:00Z', 'root')",
        (ISSUER.url, json.dumps({"repository": "mallory/evil"})),
    )
    status, _ = _bearer(oidc, ISSUER.mint(**claims))
    assert status == 401


def test_an_issuer_edited_in_the_database_is_not_trusted(oidc: Served) -> None:
    oidc.sql("UPDATE oidc_issuers SET algorithms = 'RS256,ES256,PS256'")
    status, text = _bearer(oidc, ISSUER.mint())
    assert status == 401
    assert "OIDC issuer" in text and "not trusted" in text


def test_an_empty_subject_or_a_string_time_is_refused(oidc: Served) -> None:
    assert _bearer(oidc, ISSUER.mint(sub=""))[0] == 401
    now = int(time.time())
    assert _bearer(oidc, ISSUER.mint(exp=str(now + 300)))[0] == 401


def test_a_jwks_url_over_plain_http_is_refused_off_loopback(served: Served) -> None:
    service = OidcService(served.registry.ctx, actor="root")
    with pytest.raises(InputError, match="https"):
        service.add_issuer("https://ci.example", AUDIENCE, jwks_url="http://ci.example/jwks")
    service.add_issuer("https://ci.example", AUDIENCE, jwks_url="http://127.0.0.1:9/jwks")
