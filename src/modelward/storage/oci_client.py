"""A small OCI distribution-spec v1.1 client over httpx: blobs (monolithic or chunked uploads
streamed from a reader, bounded memory), manifests, the referrers API, and token (Bearer) or
basic authentication.

It moves bytes and maps HTTP failures to modelward errors; it trusts nothing it reads: callers
hash what they fetch (`core.oci.parse_manifest`, `stream_blob` checks size and digest). A
registry's own digest check on upload (`PUT ...?digest=`) refusing the bytes is reported as a
DigestMismatchError.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelward.core.oci import MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST, Descriptor, parse_index
from modelward.errors import (
    DependencyError,
    DigestMismatchError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    VerificationError,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_CHUNK = 16 << 20  # uploads larger than this go in chunks of this size
_READ_CHUNK = 1 << 20
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Credentials = tuple[str, str]


def docker_config_credentials(registry: str, config_path: Path) -> Credentials | None:
    """The `auths` entry for `registry` in a Docker config.json (`auth` = base64 user:pass)."""
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}"):
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return (user, password) if user else None
    return None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OciClient:
    """One registry host. `plain_http` defaults to True only for loopback hosts (as Docker
    treats 127.0.0.0/8); `transport` lets tests run against an in-memory registry."""

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool | None = None,
        credentials: Credentials | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 120.0,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx is in the client extra
            raise DependencyError(
                "OCI distribution needs httpx: pip install 'modelward[client]'"
            ) from exc
        self._httpx = httpx
        host = "registry-1.docker.io" if registry == "docker.io" else registry
        scheme = "http" if (is_loopback(host) if plain_http is None else plain_http) else "https"
        self.registry = registry
        self.base = f"{scheme}://{host}"
        self.credentials = credentials
        self.chunk_size = chunk_size
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._http = httpx.Client(
            transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=True
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OciClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- HTTP with authentication -------------------------------------------------------------

    def _auth_headers(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.credentials:
            user, password = self.credentials
            raw = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _send(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        replayable: bool = True,
    ) -> httpx.Response:
        """Send one request; on 401, answer the challenge once and resend (only a replayable
        body: a streamed upload is preceded by an authenticated POST, so it never needs it)."""
        for attempt in (0, 1):
            request = self._http.build_request(
                method,
                url,
                headers={**(headers or {}), **self._auth_headers(scope)},
                content=content,
                params=params,
            )
            try:
                response = self._http.send(request, stream=stream)
            except self._httpx.HTTPError as exc:
                raise StorageError(f"cannot reach the OCI registry {self.registry}: {exc}") from exc
            if response.status_code != 401 or attempt or not replayable:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.read()
            response.close()
            if not self._answer(challenge, scope):
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, challenge: str, scope: str) -> bool:
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if not self.credentials or self._basic:
                return False
            self._basic = True
            return True
        if kind != "bearer":
            return False
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm")
        if not realm:
            return False
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        auth = self.credentials
        try:
            response = self._http.get(
                realm, params={k: v for k, v in query.items() if v}, auth=auth
            )
        except self._httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the token service {realm}: {exc}") from exc
        if response.status_code != 200:
            raise PermissionDeniedError(
                f"the OCI registry {self.registry} refused a token for {query['scope']} "
                f"(HTTP {response.status_code}); set MODELWARD_OCI_USERNAME/PASSWORD or log in "
                "with `docker login`"
            )
        try:
            document = response.json()
            token = document.get("token") or document.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise StorageError(f"the token service {realm} sent no token")
        self._tokens[scope] = token
        return True

    def _check(self, response: httpx.Response, what: str, *expected: int) -> httpx.Response:
        if response.status_code in expected:
            return response
        if not response.is_closed:
            response.read()
        detail = _error_text(response)
        status = response.status_code
        response.close()
        if status == 404:
            raise NotFoundError(f"{what}: not found in {self.registry} ({detail})")
        if status in (401, 403):
            raise PermissionDeniedError(
                f"{what}: the OCI registry {self.registry} refused access (HTTP {status}: "
                f"{detail}); set MODELWARD_OCI_USERNAME/PASSWORD or use `docker login`"
            )
        if "DIGEST_INVALID" in detail or "BLOB_UPLOAD_INVALID" in detail:
            raise DigestMismatchError(f"{what}: the registry refused the bytes: {detail}")
        raise StorageError(f"{what}: the OCI registry answered HTTP {status}: {detail}")

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    @staticmethod
    def _scope(repository: str, push: bool) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    # -- blobs --------------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str, push: bool = False) -> bool:
        response = self._send(
            "HEAD", self._url(repository, f"blobs/{digest}"), self._scope(repository, push)
        )
        response.close()
        if response.status_code == 404:
            return False
        self._check(response, f"blob {digest}", 200)
        return True

    def push_blob(self, repository: str, digest: str, size: int, reader: Readable) -> None:
        """Upload `size` bytes read from `reader`, named `digest`; the registry checks the
        digest itself. Memory stays within one chunk."""
        scope = self._scope(repository, True)
        response = self._send("POST", self._url(repository, "blobs/uploads/"), scope)
        self._check(response, f"starting the upload of {digest}", 202)
        location = self._location(response)
        if size <= self.chunk_size:
            response = self._send(
                "PUT",
                self._with_digest(location, digest),
                scope,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                content=_read_exactly(reader, size),
                replayable=False,
            )
            self._finish_upload(response, digest)
            return
        offset = 0
        while offset < size:
            length = min(self.chunk_size, size - offset)
            response = self._send(
                "PATCH",
                location,
                scope,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                content=_read_exactly(reader, length),
                replayable=False,
            )
            self._check(response, f"uploading {digest} at {offset}", 202)
            location = self._location(response)
            offset += length
        response = self._send(
            "PUT", self._with_digest(location, digest), scope, headers={"Content-Length": "0"}
        )
        self._finish_upload(response, digest)

    def push_blob_bytes(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob_exists(repository, digest, push=True):
            import io

            self.push_blob(repository, digest, len(data), io.BytesIO(data))
        return digest

    def _finish_upload(self, response: httpx.Response, digest: str) -> None:
        self._check(response, f"uploading {digest}", 201)
        echoed = response.headers.get("docker-content-digest")
        if echoed is not None and echoed != digest:
            raise DigestMismatchError(f"the registry stored {echoed} for the upload of {digest}")

    def _with_digest(self, location: str, digest: str) -> str:
        # the upload URL may carry its own query (state); keep it and add the digest
        return str(self._httpx.URL(location).copy_merge_params({"digest": digest}))

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise StorageError(f"the OCI registry {self.registry} sent no upload location")
        return str(response.request.url.join(location))

    @contextmanager
    def stream_blob(self, repository: str, digest: str, size: int) -> Iterator[Iterator[bytes]]:
        """The blob's bytes as they arrive; DigestMismatchError after the last chunk when they
        do not hash to `digest`, or as soon as more than `size` bytes arrive."""
        response = self._send(
            "GET",
            self._url(repository, f"blobs/{digest}"),
            self._scope(repository, False),
            stream=True,
        )
        try:
            self._check(response, f"blob {digest}", 200)

            def chunks() -> Iterator[bytes]:
                hasher = hashlib.sha256()
                seen = 0
                for chunk in response.iter_bytes(_READ_CHUNK):
                    seen += len(chunk)
                    if seen > size:
                        raise DigestMismatchError(
                            f"blob {digest}: more than the {size} bytes named"
                        )
                    hasher.update(chunk)
                    yield chunk
                actual = "sha256:" + hasher.hexdigest()
                if seen != size or actual != digest:
                    raise DigestMismatchError(
                        f"blob {digest}: the registry sent {seen} bytes hashing to {actual}"
                    )

            yield chunks()
        except self._httpx.HTTPError as exc:
            raise StorageError(f"reading blob {digest} from {self.registry}: {exc}") from exc
        finally:
            response.close()

    def get_blob_bytes(self, repository: str, digest: str, size: int, limit: int) -> bytes:
        if size > limit:
            raise VerificationError(f"blob {digest} is {size} bytes, more than {limit} allowed")
        with self.stream_blob(repository, digest, size) as chunks:
            return b"".join(chunks)

    # -- manifests and referrers --------------------------------------------------------------

    def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> tuple[str, str | None]:
        """PUT a manifest; returns the registry's digest for it and its OCI-Subject header."""
        response = self._send(
            "PUT",
            self._url(repository, f"manifests/{reference}"),
            self._scope(repository, True),
            headers={"Content-Type": media_type},
            content=data,
        )
        self._check(response, f"manifest {repository}:{reference}", 201)
        expected = "sha256:" + hashlib.sha256(data).hexdigest()
        echoed = response.headers.get("docker-content-digest")
        if echoed is not None and echoed != expected:
            raise DigestMismatchError(f"the registry stored {echoed} for manifest {expected}")
        return expected, response.headers.get("oci-subject")

    def get_manifest(
        self, repository: str, reference: str, accept: str = OCI_MANIFEST
    ) -> tuple[bytes, str]:
        response = self._send(
            "GET",
            self._url(repository, f"manifests/{reference}"),
            self._scope(repository, False),
            headers={"Accept": accept},
            stream=True,
        )
        try:
            self._check(response, f"manifest {repository}:{reference}", 200)
            data = _read_bounded(response, MAX_MANIFEST_BYTES, f"manifest {reference}")
            return data, response.headers.get("content-type", "")
        finally:
            response.close()

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """The referrers API's list, or None when the registry has no referrers API (404)."""
        params = {"artifactType": artifact_type} if artifact_type else None
        response = self._send(
            "GET",
            self._url(repository, f"referrers/{digest}"),
            self._scope(repository, False),
            headers={"Accept": OCI_INDEX},
            params=params,
            stream=True,
        )
        try:
            if response.status_code == 404:
                return None
            self._check(response, f"referrers of {digest}", 200)
            data = _read_bounded(response, MAX_MANIFEST_BYTES, f"referrers of {digest}")
        finally:
            response.close()
        return parse_index(data, f"referrers of {digest}")


def _read_exactly(reader: Readable, size: int) -> Iterator[bytes]:
    remaining = size
    while remaining:
        chunk = reader.read(min(_READ_CHUNK, remaining))
        if not chunk:
            raise StorageError(f"the source ended {remaining} bytes early")
        remaining -= len(chunk)
        yield chunk


def _read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes(_READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise VerificationError(f"{what}: larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _error_text(response: httpx.Response) -> str:
    try:
        document: Any = response.json()
        errors = document.get("errors") if isinstance(document, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{e.get('code', '')} {e.get('message', '')}".strip()
                for e in errors
                if isinstance(e, dict)
            )[:500]
    except ValueError:
        pass
    return (response.text or response.reason_phrase)[:300].strip()


def credentials_from_environment(
    registry: str, environ: dict[str, str] | None = None
) -> Credentials | None:
    """MODELWARD_OCI_USERNAME/PASSWORD, else `docker login`'s config ($DOCKER_CONFIG)."""
    env = os.environ if environ is None else environ
    user, password = env.get("MODELWARD_OCI_USERNAME"), env.get("MODELWARD_OCI_PASSWORD")
    if user and password is not None:
        return (user, password)
    folder = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    return docker_config_credentials(registry, folder / "config.json")
