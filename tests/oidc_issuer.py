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
