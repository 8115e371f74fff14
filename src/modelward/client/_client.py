"""The `Client` class: one method per registry use case, over `Transport`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from modelward.client._transport import Transport
from modelward.errors import (
    DigestMismatchError,
    InputError,
    PathError,
    SignatureMismatchError,
    StorageError,
    VerificationError,
)

CHUNK = 1024 * 1024
KNOWN_REGISTRIES = "known_registries.json"
ProgressCallback = Callable[[int], None]


def default_known_registries() -> Path:
    home = os.environ.get("MODELWARD_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".modelward"
    return root / KNOWN_REGISTRIES


def _file_chunks(path: Path, progress: ProgressCallback | None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            if progress is not None:
                progress(len(chunk))
            yield chunk


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


class Client:
    """A registry served by `modelward serve` at `url`, acting as the owner of `token`.

    `registry_key`: the registry's public key (PEM bytes, or a path to a PEM file) to verify
    pulls against; without it the key is pinned on first use in `known_registries`
    (default `~/.modelward/known_registries.json`) and any later change is refused.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        registry_key: bytes | str | os.PathLike[str] | None = None,
        known_registries: Path | None = None,
        timeout: float = 300.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._t = Transport(url, token, timeout, http)
        self.url = self._t.base
        self._given_key = registry_key
        self._known = known_registries or default_known_registries()
        self._verifier: Any = None

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self._t.json("GET", "/whoami")
        return result

    def list_models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._t.json("GET", "/models")
        return result

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._t.json("GET", f"/models/{_seg(name)}/versions")
        return result

    def resolve(self, uri: str) -> dict[str, Any]:
        result: dict[str, Any] = self._t.json("GET", "/resolve", params={"uri": uri})
        return result

    def show(self, uri: str) -> dict[str, Any]:
        result: dict[str, Any] = self._t.json("GET", "/show", params={"uri": uri})
        return result

    def decisions(self, uri: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._t.json("GET", "/decisions", params={"uri": uri})
        return result

    def releases(self, model: str, environment: str) -> list[dict[str, Any]]:
        path = f"/models/{_seg(model)}/releases/{_seg(environment)}"
        result: list[dict[str, Any]] = self._t.json("GET", path)
        return result

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._t.json("GET", "/users")
        return result

    def audit_log(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            page = 1000 if limit is None else min(1000, limit - len(events))
            if page <= 0:
                return events
            batch = self._t.json(
                "GET", "/audit/log", params={"since": since + len(events), "limit": page}
            )
            events.extend(batch)
            if len(batch) < page:
                return events

    def audit_checkpoint(self) -> str:
        return str(self._t.json("POST", "/audit/checkpoint")["checkpoint"])

    def audit_proof(self, seq: int) -> str:
        return str(self._t.json("GET", f"/audit/proof/{int(seq)}")["proof"])

    # -- runtime: canaries, drift, alerts ---------------------------------------------------

    def canary_start(
        self,
        model: str,
        environment: str,
        candidate: str,
        baseline: str | None = None,
        metrics: Sequence[str] = (),
        *,
        alpha: float = 0.05,
        min_samples: int = 100,
        warmup_s: float = 0.0,
        watch_s: float | None = None,
    ) -> dict[str, Any]:
        """Start a canary of `candidate` against `environment`'s release (needs `promote`)."""
        body: dict[str, Any] = {
            "candidate": candidate,
            "baseline": baseline,
            "metrics": list(metrics),
            "alpha": alpha,
            "min_samples": min_samples,
            "warmup_s": warmup_s,
        }
        if watch_s is not None:
            body["watch_s"] = watch_s
        result: dict[str, Any] = self._t.json("POST", _canary(model, environment), json=body)
        return result

    def canary_status(self, model: str, environment: str) -> dict[str, Any]:
        result: dict[str, Any] = self._t.json("GET", _canary(model, environment))
        return result

    def canary_judge(self, model: str, environment: str, act: bool = False) -> dict[str, Any]:
        """Judge now, sign and record the verdict; `act` rolls back on a rollback verdict."""
        path = f"{_canary(model, environment)}/verdicts"
        result: dict[str, Any] = self._t.json("POST", path, json={"act": act})
        return result

    def canary_shadow(self, model: str, environment: str) -> dict[str, Any]:
        result: dict[str, Any] = self._t.json("GET", f"{_canary(model, environment)}/shadow")
        return result

    def drift(self, model: str, environment: str, notify: bool = False) -> dict[str, Any]:
        """The drift report of `environment`'s release; `notify` alerts when it drifted."""
        path = f"/drift/{_seg(model)}/{_seg(environment)}"
        if notify:
            result: dict[str, Any] = self._t.json("POST", path, json={"notify": True})
        else:
            result = self._t.json("GET", path)
        return result

    def alert_deliveries(self, limit: int = 50) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._t.json(
            "GET", "/alerts/deliveries", params={"limit": int(limit)}
        )
        return result

    # -- writing ----------------------------------------------------------------------------

    def add_user(self, name: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self._t.json("POST", "/users", json={"name": name, "role": role})
        return result

    def approve(
        self, uri: str, environment: str, comment: str = "", sign_off: bool = False
    ) -> dict[str, Any]:
        body = {"uri": uri, "environment": environment, "comment": comment, "sign_off": sign_off}
        result: dict[str, Any] = self._t.json("POST", "/approvals", json=body)
        return result

    def promote(
        self,
        uri: str,
        environment: str,
        *,
        flags: dict[str, Any] | None = None,
        risk_tier: str | None = None,
        if_current: str | None = None,
        flag_texts: Sequence[str] = (),
        prompt_templates: Sequence[str | os.PathLike[str]] = (),
        policy_files: Sequence[str | os.PathLike[str]] = (),
        carry: bool = True,
    ) -> dict[str, Any]:
        """The gate's decision (`allowed`, `decision`) and, on allow, the new `release`.
        `flag_texts` are `KEY=VALUE` strings read as the CLI reads `--flag`. `prompt_templates`
        and `policy_files` are files sent with the request (under their names, 1 MiB in all),
        scanned and stored by the server; `carry=False` takes nothing from the source release."""
        import base64

        attached: dict[str, list[dict[str, str]]] = {}
        for key, paths, what in (
            ("prompt_templates", prompt_templates, "prompt template"),
            ("policy_files", policy_files, "policy file"),
        ):
            attached[key] = [
                {
                    "name": Path(p).name,
                    "content": base64.b64encode(_read_small(p, what, 700_000)).decode("ascii"),
                }
                for p in paths
            ]
        body = {
            "uri": uri,
            "environment": environment,
            "flags": flags or {},
            "flag_texts": list(flag_texts),
            "risk_tier": risk_tier,
            "if_current": if_current,
            "carry": carry,
            **{k: v for k, v in attached.items() if v},
        }
        result: dict[str, Any] = self._t.json("POST", "/promotions", json=body)
        return result

    def rollback_drill(self, model: str, environment: str) -> dict[str, Any]:
        """Rehearse a rollback in the first environment and check the restored state
        (`passed`, `steps`), as `modelward rollback --drill`."""
        body = {"environment": environment}
        result: dict[str, Any] = self._t.json("POST", f"/models/{_seg(model)}/drills", json=body)
        return result

    def rollback(self, model: str, environment: str, to: str | None = None) -> dict[str, Any]:
        body = {"environment": environment, "to": to}
        result: dict[str, Any] = self._t.json("POST", f"/models/{_seg(model)}/rollbacks", json=body)
        return result

    def push(
        self,
        model_path: str | os.PathLike[str],
        model: str,
        *,
        description: str = "",
        accept_malformed: Sequence[str] = (),
        change: str | None = None,
        compat: str | None = None,
        progress: ProgressCallback | None = None,
        signature: str | os.PathLike[str] | None = None,
        public_key: str | os.PathLike[str] | None = None,
        provenance: str | os.PathLike[str] | None = None,
        provenance_key: str | os.PathLike[str] | None = None,
        background: bool = False,
        wait: float = 6 * 3600.0,
    ) -> dict[str, Any]:
        """Upload the bundle's files (each streamed, skipped when the server has it) and create
        the version; the server scans, signs and records it exactly as an embedded push.
        `signature` (an OMS signature file) goes with the `public_key` (PEM file) it verifies
        with; `provenance` (a DSSE provenance file) may name an extra `provenance_key`. They
        travel in the commit request (1 MiB in all). A large bundle (or any, with `background`)
        is scanned and committed by a server job: this waits up to `wait` seconds for it."""
        from modelward.core.manifest import DEFAULT_IGNORE_PATHS
        from modelward.storage.model_files import list_model_files, refuse_unprintable_names

        path = Path(model_path)
        ignores = set(DEFAULT_IGNORE_PATHS)
        evidence = _push_evidence(signature, public_key, provenance, provenance_key)
        if signature is not None and path.is_dir():
            inside = _relative_inside(path, Path(signature))
            if inside is not None:  # a signature kept in the folder is not part of the bundle
                ignores.add(inside)
        files = list_model_files(path, ignore_paths=sorted(ignores))
        refuse_unprintable_names(files, path.name if files[0].name == "." else None)
        entries = []
        for model_file in files:
            digest = _sha256_file(model_file.path)
            held = self._t.json("GET", f"/uploads/{digest}").get("held") is True
            if not held:
                self._t.request(
                    "PUT",
                    f"/uploads/{digest}",
                    content=_file_chunks(model_file.path, progress),
                    headers={"content-type": "application/octet-stream"},
                )
            elif progress is not None:
                progress(model_file.size)
            entries.append({"name": model_file.name, "digest": digest, "size": model_file.size})
        body: dict[str, Any] = {
            "files": entries,
            "description": description,
            "accept_malformed": list(accept_malformed),
            "change": change,
            "compat": compat,
            **evidence,
        }
        if len(files) == 1 and files[0].name == ".":
            body["single_file_name"] = path.name
        if background:
            body["background"] = True
        response = self._t.request("POST", f"/models/{_seg(model)}/versions", json=body)
        answer: dict[str, Any] = response.json()
        if response.status_code == 202:
            done = self.wait_for_job(int(answer["job"]["id"]), wait)
            stored = self.resolve(str(done.get("uri")))  # the version exists, and is that one
            if stored.get("root_digest") != done.get("root_digest"):
                raise VerificationError(f"push job: {done.get('uri')} holds other files")
            return {**stored, "created": done.get("created") is True}
        return answer

    def job(self, job_id: int) -> dict[str, Any]:
        """A background job's record: kind, state (queued, running, done, failed), result."""
        result: dict[str, Any] = self._t.json("GET", f"/jobs/{int(job_id)}")
        return result

    def wait_for_job(self, job_id: int, wait: float = 6 * 3600.0) -> dict[str, Any]:
        """The result of a job once it is done; the job's own error (same exception as in
        embedded mode) if it failed; StorageError if it has not ended within `wait` seconds."""
        import time

        from modelward import errors

        deadline = time.monotonic() + wait
        pause = 0.1
        while True:
            try:
                job = self.job(job_id)
            except StorageError:  # a server restarting (another one runs the job): ask again
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 1.5, 2.0)
                continue
            if job["state"] == "untrusted":
                raise VerificationError(f"job {job_id}: {job['result']['error']}")
            if job["state"] == "done":
                done: dict[str, Any] = job["result"] or {}
                return done
            if job["state"] == "failed":
                result = job.get("result") or {}
                kind = getattr(errors, str(result.get("type", "")), None)
                if not (isinstance(kind, type) and issubclass(kind, errors.ModelwardError)):
                    kind = errors.StorageError
                message = str(result.get("error") or "the job failed")
                if issubclass(kind, errors.DeniedError):
                    raise kind(f"job {job_id}: {message}", [])
                raise kind(f"job {job_id}: {message}")
            if time.monotonic() + pause > deadline:
                raise StorageError(
                    f"job {job_id} has not finished after {wait:.0f} s (it is {job['state']}); "
                    f"ask again with GET /api/v1/jobs/{job_id}"
                )
            time.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    def pull(self, uri: str, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Write the version into `out_dir` (new or empty) after checking the registry's OMS
        signature over its manifest; every file is re-hashed while written. On any mismatch
        what was written is removed and a VerificationError raised."""
        from modelward.core.manifest import Manifest
        from modelward.signing.oms import SignatureBundle, manifest_from_statement, verify_with_key

        record = self.resolve(uri)
        out = Path(out_dir)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise PathError(f"{out}: exists and is not an empty folder; choose a new one")
        name, number = str(record["model"]), int(record["version"])
        requested = _requested_model(uri)
        if requested is not None and name != requested:
            raise VerificationError(f"{uri}: the server answered with model {name!r}")
        bundle = self._t.json("GET", f"/models/{_seg(name)}/versions/{number}/bundle")
        manifest = Manifest.from_dict(bundle["manifest"])
        signed = manifest_from_statement(
            verify_with_key(SignatureBundle.from_dict(bundle["registry_signature"]), self.key())
        )
        if (
            signed.root_digest != manifest.root_digest
            or signed.digests() != manifest.digests()
            or manifest.root_digest != record["root_digest"]
        ):
            raise VerificationError(f"{uri}: the registry signature covers other files")
        if signed.model_name != name:
            raise VerificationError(
                f"{uri}: the registry signature is for model {signed.model_name!r}, not {name!r}"
            )
        created = not out.exists()
        from modelward.storage.output_folders import check_creatable_folder, make_output_folder

        check_creatable_folder(out)
        make_output_folder(out)
        try:
            for entry in manifest.files:
                if entry.name == ".":
                    raise InputError("single-file versions are pulled into a folder by name")
                target = out / _inside(entry.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(name, number, entry.digest, entry.size, target)
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for child in list(out.iterdir()):
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
            raise
        return record

    def _download(
        self, name: str, number: int, digest: str, size: int | None, target: Path
    ) -> None:
        hasher = hashlib.sha256()
        written = 0
        url = self._t.url(f"/models/{_seg(name)}/versions/{number}/files/{digest}")
        try:
            with (
                self._t.http.stream("GET", url, headers=self._t.with_headers()) as response,
                target.open("xb") as handle,
            ):
                if not response.is_success:
                    response.read()
                    from modelward.client._transport import raise_for_error

                    raise_for_error(response)
                for chunk in response.iter_bytes(CHUNK):
                    written += len(chunk)
                    if size is not None and written > size:
                        break
                    hasher.update(chunk)
                    handle.write(chunk)
        except httpx.HTTPError as exc:
            raise StorageError(f"download of {digest} broke off: {exc}") from exc
        if (size is not None and written != size) or hasher.hexdigest() != digest:
            raise DigestMismatchError(
                f"{target.name}: the bytes received do not match sha256:{digest}"
            )

    # -- the registry's key -----------------------------------------------------------------

    def key(self) -> Any:
        """The registry's verifier: the given key, or the one pinned for this URL (pinned now,
        on first use); SignatureMismatchError when the server presents another key."""
        if self._verifier is not None:
            return self._verifier
        from modelward.signing.keys import Verifier, key_hint, public_key_from_pem

        info = self._t.json("GET", "/registry")
        served = public_key_from_pem(str(info["registry_public_key"]).encode(), "registry key")
        if self._given_key is not None:
            given = self._given_key
            pem = given if isinstance(given, bytes) else Path(given).read_bytes()
            expected = public_key_from_pem(pem, "registry key")
        else:
            expected = self._pinned(info["registry_public_key"], key_hint(served))
        if key_hint(expected) != key_hint(served):
            raise SignatureMismatchError(
                f"the server at {self.url} presents registry key {key_hint(served)[:16]}…, "
                f"not the pinned {key_hint(expected)[:16]}…; refusing to trust it"
            )
        self._verifier = Verifier(expected)
        return self._verifier

    def _pinned(self, served_pem: str, served_id: str) -> Any:
        from modelward.signing.keys import public_key_from_pem

        known: dict[str, Any] = {}
        if self._known.is_file():
            try:
                known = json.loads(self._known.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PathError(f"{self._known}: cannot read the pinned registry keys") from exc
        entry = known.get(self.url)
        if isinstance(entry, dict) and "public_key" in entry:
            return public_key_from_pem(str(entry["public_key"]).encode(), str(self._known))
        known[self.url] = {"public_key": served_pem, "key_id": served_id}
        try:
            self._known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp = self._known.with_suffix(".tmp")
            temp.write_text(json.dumps(known, indent=2, sort_keys=True), encoding="utf-8")
            temp.replace(self._known)
        except OSError as exc:
            raise PathError(f"{self._known}: cannot pin the registry key: {exc}") from exc
        return public_key_from_pem(served_pem.encode(), "registry key")


def _canary(model: str, environment: str) -> str:
    return f"/canaries/{_seg(model)}/{_seg(environment)}"


def _seg(text: str) -> str:
    """One URL path segment; names never contain '/', and anything else is escaped."""
    from urllib.parse import quote

    if not text or "/" in text:
        raise InputError(f"{text!r} is not a valid name")
    return quote(text, safe="")


def _inside(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
        raise VerificationError(f"stored file name {name!r} leaves the output folder")
    return path


def _read_small(path: str | os.PathLike[str], what: str, limit: int = 900_000) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PathError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise InputError(f"{path}: the {what} is larger than {limit} bytes (the server's limit)")
    return data


def _push_evidence(
    signature: str | os.PathLike[str] | None,
    public_key: str | os.PathLike[str] | None,
    provenance: str | os.PathLike[str] | None,
    provenance_key: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    import base64
    import json

    if (signature is None) != (public_key is None):
        raise InputError("--signature and --public-key go together")
    body: dict[str, Any] = {}
    if signature is not None and public_key is not None:
        try:
            body["signature"] = json.loads(_read_small(signature, "signature"))
        except ValueError as exc:
            raise InputError(f"{signature}: the signature is not JSON: {exc}") from exc
        if not isinstance(body["signature"], dict):
            raise InputError(f"{signature}: the signature is not a JSON object")
        body["public_key"] = _read_small(public_key, "public key", 20_000).decode(
            "utf-8", "replace"
        )
    if provenance is not None:
        document = _read_small(provenance, "provenance", 600_000)
        body["provenance"] = base64.b64encode(document).decode("ascii")
    if provenance_key is not None:
        key = _read_small(provenance_key, "provenance key", 20_000)
        body["provenance_key"] = key.decode("utf-8", "replace")
    return body


def _relative_inside(root: Path, target: Path) -> str | None:
    """`target` as a POSIX path relative to `root` when it is inside it, else None."""
    root_real = os.path.realpath(root)
    target_real = os.path.realpath(target)
    if os.path.commonpath([root_real, target_real]) != root_real or target_real == root_real:
        return None
    return Path(os.path.relpath(target_real, root_real)).as_posix()


def _requested_model(uri: str) -> str | None:
    """The model a URI asks for (None for a bare digest), without importing the registry."""
    for prefix in ("models:/",):
        if uri.startswith(prefix):
            rest = uri[len(prefix) :]
            return rest.split("@", 1)[0].split("/", 1)[0] or None
    if uri.startswith("sha256:"):
        return None
    return uri.split("@", 1)[0].split("/", 1)[0] or None
