"""A test OIDC issuer: an RSA and an EC key, their JWKS (served on 127.0.0.1 by a tiny
http.server thread, or written to a file), and JWTs minted good or hostile on demand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "modelward"
GOOD_CLAIMS = {"repository": "org/repo", "ref": "refs/heads/main"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TestIssuer:
    __test__ = False  # not a pytest class

    def __init__(self, url: str = "https://issuer.test") -> None:
        self.url = url
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
            ]
        }

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "repo:org/repo:ref:refs/heads/main",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
            "jti": f"job-{now}",
            **GOOD_CLAIMS,
        }
        for key, value in overrides.items():
            if value is None:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def mint(self, kid: str = "rsa-1", alg: str = "RS256", **overrides: Any) -> str:
        key = self.ec if alg.startswith("ES") else self.rsa
        return jwt.encode(self.claims(**overrides), key, algorithm=alg, headers={"kid": kid})

    def mint_with_stranger_key(self, kid: str = "rsa-1") -> str:
        return jwt.encode(self.claims(), self.stranger, algorithm="RS256", headers={"kid": kid})

    def mint_alg_none(self) -> str:
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = _b64(json.dumps(self.claims()).encode())
        return f"{header}.{payload}."

    def mint_hs256_with_public_key(self) -> str:
        """The classic key-confusion forgery: HMAC keyed with the issuer's public key."""
        pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = _b64(json.dumps(self.claims()).encode())
        signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def hostile(self) -> dict[str, str]:
        now = int(time.time())
        return {
            "expired": self.mint(exp=now - 3600, iat=now - 7200, nbf=now - 7200),
            "wrong audience": self.mint(aud="someone-else"),
            "wrong issuer": self.mint(iss="https://evil.test"),
            "alg none": self.mint_alg_none(),
            "HS256 with the public key": self.mint_hs256_with_public_key(),
            "unknown kid": self.mint(kid="rotated-away"),
            "signed by another key": self.mint_with_stranger_key(),
            "not yet valid": self.mint(nbf=now + 3600),
            "issued in the future": self.mint(iat=now + 3600),
            "no expiry": self.mint(exp=None),
            "claims of another branch": self.mint(ref="refs/heads/attacker"),
            "claims of another repository": self.mint(repository="org/fork"),
            "garbage": "not.a.jwt",
        }


@contextmanager
def serve_jwks(issuer: TestIssuer) -> Iterator[str]:
    """Serve the issuer's JWKS on 127.0.0.1; yields its URL."""
    body = json.dumps(issuer.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class AuthorizationServer:
    """The issuer's /authorize and /token endpoints (OIDC authorization code flow with PKCE
    S256, as a provider implements it): /authorize signs in `subject` at once (there is no
    password page) and redirects with a one-time code; /token redeems the code only with the
    verifier whose S256 is the challenge, the same client and redirect URI, once."""

    def __init__(self, issuer: TestIssuer, client_id: str) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.subject = "rita@example.org"
        self.codes: dict[str, dict[str, str]] = {}
        self.redeemed: list[str] = []
        self.lock = threading.Lock()

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """(status, Location or error) for an authorization request."""
        import secrets
        import urllib.parse

        required = ("response_type", "client_id", "redirect_uri", "state", "nonce")
        if any(not query.get(k) for k in required) or query["response_type"] != "code":
            return 400, "invalid_request"
        if query["client_id"] != self.client_id:
            return 400, "unauthorized_client"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, "PKCE S256 required"
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {
                "client_id": query["client_id"],
                "redirect_uri": query["redirect_uri"],
                "nonce": query["nonce"],
                "challenge": query["code_challenge"],
                "sub": self.subject,
            }
        params = urllib.parse.urlencode({"code": code, "state": query["state"]})
        return 302, f"{query['redirect_uri']}?{params}"

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode("ascii")).digest()) != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        if form.get("client_id") != grant["client_id"]:
            return 400, {"error": "invalid_client"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        self.redeemed.append(grant["sub"])
        id_token = self.issuer.mint(
            sub=grant["sub"], aud=grant["client_id"], nonce=grant["nonce"], azp=grant["client_id"]
        )
        return 200, {"id_token": id_token, "token_type": "Bearer", "expires_in": 300}


@contextmanager
def serve_issuer(issuer: TestIssuer, client_id: str) -> Iterator[tuple[str, AuthorizationServer]]:
    """Serve the issuer's JWKS, /authorize and /token on 127.0.0.1; yields (base URL, server)."""
    import urllib.parse

    server_state = AuthorizationServer(issuer, client_id)
    jwks_body = json.dumps(issuer.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, kind: str, location: str = "") -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            if location:
                self.send_header("location", location)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/.well-known/jwks.json":
                self._send(200, jwks_body, "application/json")
            elif parts.path == "/authorize":
                query = dict(urllib.parse.parse_qsl(parts.query))
                status, where = server_state.authorize(query)
                if status == 302:
                    self._send(302, b"", "text/plain", location=where)
                else:
                    self._send(status, where.encode(), "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(min(length, 65536)).decode()))
            if urllib.parse.urlsplit(self.path).path != "/token":
                self._send(404, b"not found", "text/plain")
                return
            status, body = server_state.token(form)
            self._send(status, json.dumps(body).encode(), "application/json")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
