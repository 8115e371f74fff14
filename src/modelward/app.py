"""The composition root: builds the services from settings, for the embedded CLI or a server.

Only this module (and `services.context`, which it calls) reads settings. A `ServerRegistry` holds
the one registry context a server process shares between requests (database engine, blob store,
keys) and makes per-request services acting for an authenticated `Principal`; it keeps no other
state, so any number of server processes can share one database and one blob store.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from modelward.errors import InputError
from modelward.services.context import RegistryContext, home_dir, open_registry, utc_now
from modelward.services.push_orders import PUSH_FOLDER_PREFIX

if TYPE_CHECKING:
    from modelward.core.principal import Principal
    from modelward.services.audit import AuditService
    from modelward.services.gate import GateService
    from modelward.services.jobs import JobService
    from modelward.services.oidc import JwksCache
    from modelward.services.registry import RegistryService
    from modelward.services.releases import ReleaseService
    from modelward.services.telemetry import TelemetryService
    from modelward.services.users import UserService

DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024**3  # one file of a bundle
DEFAULT_MAX_JSON_BYTES = 1024 * 1024
DEFAULT_PUSH_JOB_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class ConsoleOidcSettings:
    """The OIDC provider people sign in to the web console with (authorization code + PKCE).
    The issuer must also be configured for bearer JWTs (`modelward oidc add ISSUER --audience
    CLIENT_ID ...`, with claim mappings to users): the id_token is verified the same way."""

    issuer: str
    client_id: str
    authorize_url: str
    token_url: str

    @classmethod
    def from_environment(cls) -> ConsoleOidcSettings | None:
        names = ("ISSUER", "CLIENT_ID", "AUTHORIZE_URL", "TOKEN_URL")
        values = [os.environ.get(f"MODELWARD_CONSOLE_OIDC_{n}", "").strip() for n in names]
        if not any(values):
            return None
        missing = [
            f"MODELWARD_CONSOLE_OIDC_{n}" for n, v in zip(names, values, strict=True) if not v
        ]
        if missing:
            raise InputError(f"console sign-in with OIDC needs {', '.join(missing)} too")
        for name, value in zip(names, values, strict=True):
            if name.endswith("URL") and not value.startswith(("https://", "http://")):
                raise InputError(f"MODELWARD_CONSOLE_OIDC_{name}={value!r} is not an http(s) URL")
        return cls(*values)


@dataclass(frozen=True)
class ServerSettings:
    home: Path
    spool_dir: Path
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    auth_failures_per_minute: int = 30
    job_lease_seconds: int = 300
    # a push of at least this many bytes is carried out as a job (202 + the job to poll)
    push_job_bytes: int = DEFAULT_PUSH_JOB_BYTES
    console_oidc: ConsoleOidcSettings | None = None
    # the origin browsers reach the server at, when a reverse proxy terminates TLS in front of
    # it (`https://console.example.org`): the console's CSRF origin check and OIDC redirect
    # URI use it instead of what the proxy's plain-HTTP request says
    public_url: str | None = None

    @classmethod
    def from_environment(cls, home: Path | None = None) -> ServerSettings:
        home = home or home_dir()
        spool = os.environ.get("MODELWARD_SPOOL_DIR") or tempfile.gettempdir()
        return cls(
            home=home,
            spool_dir=Path(spool),
            max_upload_bytes=_int_env("MODELWARD_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            auth_failures_per_minute=_int_env("MODELWARD_AUTH_FAILURES_PER_MINUTE", 30),
            job_lease_seconds=_int_env("MODELWARD_JOB_LEASE_SECONDS", 300),
            push_job_bytes=_int_env("MODELWARD_PUSH_JOB_BYTES", DEFAULT_PUSH_JOB_BYTES),
            console_oidc=ConsoleOidcSettings.from_environment(),
            public_url=_public_url(os.environ.get("MODELWARD_PUBLIC_URL", "").strip() or None),
        )


def _public_url(text: str | None) -> str | None:
    """`scheme://host[:port]` of MODELWARD_PUBLIC_URL; InputError for anything else."""
    import urllib.parse

    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    if (
        parts.scheme not in ("https", "http")
        or not parts.netloc
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise InputError(
            f"MODELWARD_PUBLIC_URL={text!r} must be an origin such as https://console.example.org"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{name}={text!r} must be a positive whole number")
    return int(text)


class ServerRegistry:
    """The registry a server process serves: one context, services made per principal."""

    def __init__(self, settings: ServerSettings, context: RegistryContext | None = None) -> None:
        from modelward.services.oidc import JwksCache

        self.settings = settings
        self.ctx = context or open_registry(settings.home)
        self.jwks: JwksCache = JwksCache(_fetch_jwks)
        remove_stale_push_folders(settings.spool_dir)

    def now(self) -> datetime:
        return utc_now()

    def registry(self, principal: Principal) -> RegistryService:
        from modelward.services.registry import RegistryService

        return RegistryService(self.ctx, actor=principal.name)

    def gate(self, principal: Principal) -> GateService:
        from modelward.services.gate import GateService

        return GateService(self.ctx, actor=principal.name)

    def releases(self, principal: Principal) -> ReleaseService:
        from modelward.services.releases import ReleaseService

        return ReleaseService(self.ctx, actor=principal.name)

    def users(self, principal: Principal) -> UserService:
        from modelward.services.users import UserService

        return UserService(self.ctx, actor=principal.name)

    def telemetry(self, principal: Principal) -> TelemetryService:
        from modelward.services.telemetry import TelemetryService

        return TelemetryService(self.ctx, actor=principal.name)

    def audit(self) -> AuditService:
        from modelward.services.audit import AuditService

        return AuditService(self.ctx.database, self.ctx.ledger_key, self.ctx.origin)

    def authenticate(self, bearer: str) -> Principal:
        """The principal a bearer credential stands for (API token or OIDC JWT)."""
        from modelward.services.oidc import authenticate_jwt
        from modelward.services.tokens import TOKEN_PREFIX, authenticate_token

        if bearer.startswith(TOKEN_PREFIX):
            return authenticate_token(self.ctx, bearer, self.now())
        return authenticate_jwt(self.ctx, bearer, self.now(), self.jwks)

    def jobs(self) -> JobService:
        """The jobs queue with every kind a server runs: the services' and `push`."""
        from datetime import timedelta

        from modelward.services.jobs import HANDLERS, JobService
        from modelward.services.push_orders import push_job_handler

        handlers = {**HANDLERS, "push": push_job_handler(self.settings.spool_dir)}
        lease = timedelta(seconds=self.settings.job_lease_seconds)
        return JobService(self.ctx, handlers, lease=lease)

    def start_job_worker(self, idle_seconds: float = 1.0) -> JobWorker:
        worker = JobWorker(self.jobs(), idle_seconds)
        worker.start()
        return worker

    def close(self) -> None:
        self.ctx.close()


class JobWorker:
    """One thread per server process claiming and running jobs until stopped. A job it was
    running when the process died is claimed again by another worker once its lease ends.
    Every `schedule_seconds` it also queues the judgements of watched canaries that are due
    (once per canary and interval slot, whichever server's worker gets there first)."""

    def __init__(
        self, service: JobService, idle_seconds: float, schedule_seconds: float = 1.0
    ) -> None:
        import threading

        from modelward.services.jobs import worker_name

        self.ctx = service.ctx
        self.service = service
        self.name = worker_name()
        self.idle_seconds = idle_seconds
        self.schedule_seconds = schedule_seconds
        self._scheduled_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelward-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import logging
        import time

        from modelward.services.jobs import schedule_canary_judgements

        log = logging.getLogger("modelward.jobs")
        while not self._stop.is_set():
            if time.monotonic() - self._scheduled_at >= self.schedule_seconds:
                self._scheduled_at = time.monotonic()
                try:
                    schedule_canary_judgements(self.ctx)
                except Exception:  # as below: the next tick tries again
                    log.exception("canary scheduler")
            try:
                job = self.service.run_one(self.name)
            except Exception:  # a broken database must not kill the worker; retry later
                log.exception("job worker")
                job = None
            if job is None:
                self._stop.wait(self.idle_seconds)


STALE_PUSH_SECONDS = 3600.0


def remove_stale_push_folders(
    spool_dir: Path, older_than: float = STALE_PUSH_SECONDS
) -> list[Path]:
    """Remove the private folders of pushes that a killed server left behind (older than an
    hour, so a push in progress in another process on this machine is left alone)."""
    import shutil
    import time

    removed = []
    try:
        candidates = list(spool_dir.glob(f"{PUSH_FOLDER_PREFIX}*"))
    except OSError:
        return []
    for folder in candidates:
        try:
            stale = time.time() - folder.stat().st_mtime > older_than
        except OSError:
            continue
        if stale and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _fetch_jwks(url: str) -> dict[str, object]:
    """GET a JWKS (1 MiB at most, 5 s timeout); StorageError when unreachable."""
    import json
    import urllib.request

    from modelward.errors import StorageError

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read(1024 * 1024 + 1)
    except OSError as exc:
        raise StorageError(f"cannot fetch the JWKS at {url}: {exc}") from exc
    if len(body) > 1024 * 1024:
        raise StorageError(f"the JWKS at {url} is larger than 1 MiB")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise StorageError(f"the JWKS at {url} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StorageError(f"the JWKS at {url} is not a JSON object")
    return data
