"""The client's HTTP plumbing: bearer auth, JSON calls, and server errors back to modelward
errors (by the `type` the server sends), so callers and the CLI see the same exceptions as in
embedded mode."""

from __future__ import annotations

from typing import Any

import httpx

from modelward import errors

USER_AGENT = "modelward-client/1"
# When a response carries no error body (HEAD, a proxy's page), its status says what it was.
_BY_STATUS: dict[int, type[errors.ModelwardError]] = {
    400: errors.InputError,
    401: errors.PermissionDeniedError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.InputError,
    422: errors.VerificationError,
}


def raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json().get("error", {})
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or f"the server answered {response.status_code}")
    kind = getattr(errors, str(body.get("type", "")), None)
    reasons = [str(r) for r in body.get("reasons") or []]
    if not (isinstance(kind, type) and issubclass(kind, errors.ModelwardError)):
        kind = _BY_STATUS.get(response.status_code) or (
            errors.StorageError if response.status_code >= 500 else errors.InputError
        )
    if issubclass(kind, errors.DeniedError):
        raise kind(message, reasons)
    error = kind(message)
    if reasons:
        error.reasons = reasons  # type: ignore[attr-defined]
    raise error


class Transport:
    def __init__(
        self, url: str, token: str | None, timeout: float, http: httpx.Client | None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise errors.InputError(f"{url!r} is not an http(s) URL of a modelward server")
        self.base = url.rstrip("/")
        headers = {"user-agent": USER_AGENT}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # sent with each request, never set on the (possibly shared) httpx client
        self.headers = headers
        self.http = http or httpx.Client(timeout=timeout, follow_redirects=False)

    def url(self, path: str) -> str:
        return f"{self.base}/api/v1{path}"

    def with_headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.headers, **(extra or {})}

    def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """The response whatever its status; StorageError when the server cannot be reached."""
        try:
            return self.http.request(
                method, self.url(path), headers=self.with_headers(headers), **kwargs
            )
        except httpx.HTTPError as exc:
            raise errors.StorageError(f"cannot reach the server at {self.base}: {exc}") from exc

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = self.send(method, path, headers, **kwargs)
        raise_for_error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def close(self) -> None:
        self.http.close()
