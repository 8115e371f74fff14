"""An in-memory OCI distribution registry for httpx's MockTransport: the twin of a real registry
in unit tests. It keeps what a registry must (blob uploads checked against `?digest=`,
monolithic and chunked; manifests by tag and digest; `Docker-Content-Digest`), and optionally the
OCI 1.1 referrers API (`OCI-Subject` on PUT, `GET /v2/<name>/referrers/<digest>`) and Bearer
token authentication, so both referrer paths and the token dance are exercised.

Tests reach behind its back through `blobs`, `manifests` and `tags` to play a hostile registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field

import httpx

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(status: int, code: str, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": message}]})


@dataclass
class OciTwin:
    referrers_api: bool = True
    token: str | None = None  # when set, every /v2 request needs `Bearer <token>`
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> bytes, type
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, tag) -> digest
    uploads: dict[str, bytearray] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    token_requests: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if path == "/token":
            self.token_requests += 1
            return httpx.Response(200, json={"token": self.token})
        if (
            self.token is not None
            and request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="http://twin.test/token",'
                    'service="twin",scope="repository:x:pull"'
                },
                json={"errors": [{"code": "UNAUTHORIZED"}]},
            )
        match = re.fullmatch(r"/v2/(.+)/(blobs/uploads|blobs|manifests|referrers)/?(.*)", path)
        if match is None:
            return httpx.Response(200, json={}) if path == "/v2/" else _error(404, "NOT_FOUND")
        repo, kind, rest = match.groups()
        if kind == "blobs/uploads":
            return self._upload(request, repo, rest)
        if kind == "blobs":
            data = self.blobs.get(rest)
            if data is None:
                return _error(404, "BLOB_UNKNOWN")
            headers = {"Docker-Content-Digest": rest, "Content-Length": str(len(data))}
            return httpx.Response(
                200, headers=headers, content=b"" if request.method == "HEAD" else data
            )
        if kind == "manifests":
            return self._manifest(request, repo, rest)
        if not self.referrers_api:
            return _error(404, "NOT_FOUND", "no referrers API")
        return self._referrers(request, rest)

    def _upload(self, request: httpx.Request, repo: str, upload_id: str) -> httpx.Response:
        if request.method == "POST":
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = bytearray()
            return httpx.Response(
                202,
                headers={"Location": f"/v2/{repo}/blobs/uploads/{upload_id}?_state=s{upload_id}"},
            )
        buffer = self.uploads.get(upload_id)
        if buffer is None or request.url.params.get("_state") != f"s{upload_id}":
            return _error(404, "BLOB_UPLOAD_UNKNOWN")
        body = request.read()
        if request.method == "PATCH":
            start = int(request.headers["content-range"].split("-")[0])
            if start != len(buffer):
                return _error(416, "BLOB_UPLOAD_INVALID", "range")
            buffer.extend(body)
            return httpx.Response(
                202,
                headers={"Location": f"/v2/{repo}/blobs/uploads/{upload_id}?_state=s{upload_id}"},
            )
        buffer.extend(body)
        digest = request.url.params.get("digest", "")
        if _digest(bytes(buffer)) != digest:
            del self.uploads[upload_id]
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        self.blobs[digest] = bytes(buffer)
        del self.uploads[upload_id]
        return httpx.Response(
            201, headers={"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/blobs/{digest}"}
        )

    def _manifest(self, request: httpx.Request, repo: str, reference: str) -> httpx.Response:
        if request.method == "PUT":
            data = request.read()
            digest = _digest(data)
            if _DIGEST.fullmatch(reference) and reference != digest:
                return _error(400, "DIGEST_INVALID")
            document = json.loads(data)
            for descriptor in [document.get("config"), *document.get("layers", [])]:
                if descriptor and descriptor["digest"] not in self.blobs:
                    return _error(400, "MANIFEST_BLOB_UNKNOWN", descriptor["digest"])
            for descriptor in document.get("manifests", []):
                if descriptor["digest"] not in self.manifests:
                    return _error(400, "MANIFEST_UNKNOWN", descriptor["digest"])
            self.manifests[digest] = (data, request.headers.get("content-type", ""))
            if not _DIGEST.fullmatch(reference):
                self.tags[(repo, reference)] = digest
            headers = {"Docker-Content-Digest": digest}
            if self.referrers_api and "subject" in document:
                headers["OCI-Subject"] = document["subject"]["digest"]
            return httpx.Response(201, headers=headers)
        digest = reference if _DIGEST.fullmatch(reference) else self.tags.get((repo, reference))
        if digest is None or digest not in self.manifests:
            return _error(404, "MANIFEST_UNKNOWN")
        data, media_type = self.manifests[digest]
        return httpx.Response(
            200, headers={"Content-Type": media_type, "Docker-Content-Digest": digest}, content=data
        )

    def _referrers(self, request: httpx.Request, subject: str) -> httpx.Response:
        wanted = request.url.params.get("artifactType")
        found = []
        for digest, (data, media_type) in self.manifests.items():
            document = json.loads(data)
            if document.get("subject", {}).get("digest") != subject:
                continue
            artifact = document.get("artifactType") or document["config"]["mediaType"]
            if wanted and artifact != wanted:
                continue
            entry = {
                "mediaType": media_type,
                "digest": digest,
                "size": len(data),
                "artifactType": artifact,
            }
            if document.get("annotations"):
                entry["annotations"] = document["annotations"]
            found.append(entry)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": found,
        }
        return httpx.Response(200, headers={"Content-Type": index["mediaType"]}, json=index)

    def put_manifest_behind_back(self, repo: str, tag: str, document: dict[str, object]) -> str:
        data = json.dumps(document).encode()
        digest = _digest(data)
        self.manifests[digest] = (data, "application/vnd.oci.image.manifest.v1+json")
        self.tags[(repo, tag)] = digest
        return digest
