"""`modelward serve --ssl-keyfile/--ssl-certfile` on loopback with a certificate made here by a
test CA (`cryptography`): the client connects when it trusts that CA and refuses otherwise,
over TLS the responses carry HSTS and the other security headers, and CORS stays off."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.integration.server.harness import MODELWARD, cli, create_token, free_port

from modelward.client import Client
from modelward.errors import StorageError


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_leaf(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) PEM files; the server's is for
    127.0.0.1 and signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("modelward test CA"))
        .issuer_name(_name("modelward test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    root = tmp_path_factory.mktemp("tls")
    env = {"MODELWARD_HOME": str(root / "home"), "MODELWARD_ACTOR": "root"}
    assert cli(env, "init").returncode == 0
    assert cli(env, "users", "add", "vic", "--role", "viewer").returncode == 0
    token = create_token(env, "vic")
    ca, cert, key = make_ca_and_leaf(root)
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [MODELWARD, "serve", "--port", str(port), "--ssl-keyfile", str(key),
             "--ssl-certfile", str(cert)],
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(ca))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/readyz", verify=trusted, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        yield url, ca, token
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def test_the_client_connects_with_the_ca_and_refuses_without_it(
    tls_server: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, ca, token = tls_server
    trusted = httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=30)
    with Client(url, token, known_registries=tmp_path / "k.json", http=trusted) as client:
        assert client.whoami()["actor"] == "vic"
    with (
        Client(url, token, known_registries=tmp_path / "k.json", timeout=30) as stranger,
        pytest.raises(StorageError, match="cannot reach the server") as refused,
    ):
        stranger.whoami()  # the system's CAs do not include the test CA
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    # the CLI trusts what SSL_CERT_FILE names, as httpx does
    env = {"MODELWARD_URL": url, "MODELWARD_TOKEN": token, "MODELWARD_HOME": str(tmp_path)}
    assert cli({**env, "SSL_CERT_FILE": str(ca)}, "whoami").returncode == 0
    result = cli(env, "whoami")
    assert result.returncode == 4 and "cannot reach the server" in result.stderr


def test_over_tls_responses_carry_hsts_and_the_security_headers(
    tls_server: tuple[str, Path, str],
) -> None:
    url, ca, token = tls_server
    verify = ssl.create_default_context(cafile=str(ca))
    response = httpx.get(
        f"{url}/api/v1/whoami",
        headers={"authorization": f"Bearer {token}", "origin": "https://evil.example"},
        verify=verify,
    )
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    preflight = httpx.options(
        f"{url}/api/v1/whoami",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        verify=verify,
    )
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
