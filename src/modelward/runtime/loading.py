"""Verified loading: `load(uri)` returns a local path to a version's bundle that transformers,
llama.cpp or vLLM can open, and only after checking it.

Cold load: resolve the URI (embedded registry, or the server named by `MODELWARD_URL` with
`MODELWARD_TOKEN`), check the registry's OMS signature over the manifest, the ledger inclusion of
the version's push event (embedded), and with `environment` (or a `models:/NAME@ENV` URI naming an
environment) that the version is that environment's current, verified release; then copy every
file into the cache, hashing while reading (one pass) and discarding the copy on any mismatch.

Cache: one folder per root digest under `cache_dir`, `$MODELWARD_CACHE`, or
`~/.cache/modelward/bundles`, shared between processes (a lock file serialises writers of one
entry), written to a temporary folder and renamed into place, files read-only. A warm hit checks
the cached registry signature and that it covers the entry's digest, that the bundle folder
holds exactly the signed manifest's files (no links, no special files, nothing extra), and each
file's size, mtime and inode as recorded at verification (the record is unsigned and trusted for
those stat values only); `strict=True` re-hashes every file against the signed digests. An entry
failing any check is removed and fetched again. A cache folder another user owns, or (unless
named explicitly) one others can write, is refused. Fail closed: no verified bundle, no path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.errors import (
    InputError,
    ModelwardError,
    NotFoundError,
    PathError,
    VerificationError,
)

META = "modelward-verified.json"
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LoadedBundle:
    path: Path  # the bundle folder, or the file of a single-file version
    uri: str
    root_digest: str
    cached: bool  # a warm hit
    release_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "uri": self.uri,
            "root_digest": self.root_digest,
            "cached": self.cached,
            "release_id": self.release_id,
            "verified": True,
        }


def default_cache_dir() -> Path:
    value = os.environ.get("MODELWARD_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "modelward" / "bundles"


def load(
    uri: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    environment: str | None = None,
    strict: bool = False,
) -> Path:
    """The local path of `uri`'s verified bundle (see the module docstring)."""
    return load_bundle(uri, cache_dir=cache_dir, environment=environment, strict=strict).path


def load_bundle(
    uri: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    environment: str | None = None,
    strict: bool = False,
    client: Any = None,
) -> LoadedBundle:
    """`load`, with what was loaded; `client` (a `modelward.Client`) loads from that server
    instead of the one `MODELWARD_URL` names or the embedded registry."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root.absolute()
    _check_cache_root(root, explicit=cache_dir is not None)
    source: _Source
    if client is not None:
        source = _RemoteSource(client)
    elif os.environ.get("MODELWARD_URL"):
        source = _RemoteSource()
    else:
        source = _EmbeddedSource()
    try:
        resolved = source.resolve(uri, environment)
        entry = root / resolved.root_digest
        hit = _warm(entry, resolved, source, strict)
        if hit is not None:
            return LoadedBundle(hit, resolved.uri, resolved.root_digest, True, resolved.release_id)
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise PathError(f"{root}: cannot create the cache folder ({exc.strerror})") from None
        _check_cache_root(root, explicit=cache_dir is not None)
        with _locked(root / f"{resolved.root_digest}.lock"):
            hit = _warm(entry, resolved, source, strict)  # another process may have finished
            if hit is not None:
                return LoadedBundle(
                    hit, resolved.uri, resolved.root_digest, True, resolved.release_id
                )
            if entry.exists():
                _remove(entry)
            temp = Path(tempfile.mkdtemp(prefix=f".{resolved.root_digest[:16]}-", dir=root))
            try:
                source.fetch(resolved, temp / "bundle")
                _seal(temp, resolved)
                os.rename(temp, entry)
            except BaseException:
                _remove(temp)
                raise
        path = _bundle_path(entry, resolved)
        return LoadedBundle(path, resolved.uri, resolved.root_digest, False, resolved.release_id)
    finally:
        source.close()


# ----------------------------------------------------------------------------------- cache


def _warm(entry: Path, resolved: _Resolved, source: _Source, strict: bool) -> Path | None:
    """The entry's bundle path when it checks out; None (and the entry removed) otherwise.

    The record in the entry is the cache's own and unsigned, so it is trusted for nothing but
    the stat values to compare against: the set of files, their digests and (where the registry
    gave them) their sizes come from the signed manifest."""
    meta_path = entry / META
    try:
        if not stat.S_ISREG(os.lstat(meta_path).st_mode):
            raise VerificationError("the cache record is not a regular file")
    except FileNotFoundError:
        return None
    except (OSError, VerificationError):
        _remove(entry)
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        manifest, signed = source.check_signature(meta["signature"], resolved)
        if signed.digests() != manifest.digests():
            raise VerificationError("the cached signature covers other files")
        expected = _expected_files(resolved)
        present = _files_in(entry / "bundle")
        if present != set(expected):
            raise VerificationError("the cached bundle holds other files than the manifest's")
        records = {record["name"]: record for record in meta["files"]}
        if set(records) != set(expected):
            raise VerificationError("the cache record names other files than the manifest's")
        for name, signed_file in expected.items():
            record = records[name]
            target = entry / "bundle" / name
            info = os.lstat(target)
            if not stat.S_ISREG(info.st_mode):
                raise VerificationError(f"cached file {name} is not a regular file")
            if signed_file.size is not None and info.st_size != signed_file.size:
                raise VerificationError(f"cached file {name} has the wrong size")
            if (info.st_size, info.st_mtime_ns, info.st_ino) != (
                record["size"],
                record["mtime_ns"],
                record["inode"],
            ):
                raise VerificationError(f"cached file {name} changed since it was checked")
            if strict and _sha256(target) != signed_file.digest:
                raise VerificationError(f"cached file {name} does not match its digest")
    except (OSError, ValueError, KeyError, TypeError, ModelwardError):
        _remove(entry)
        return None
    return _bundle_path(entry, resolved)


def _expected_files(resolved: _Resolved) -> dict[str, Any]:
    """Local file name -> the signed manifest's entry for it."""
    expected: dict[str, Any] = {}
    for signed_file in resolved.manifest.files:
        name = resolved.file_name if signed_file.name == "." else signed_file.name
        if name is None:
            raise VerificationError("a single-file version without a file name")
        expected[name] = signed_file
    return expected


def _files_in(bundle: Path) -> set[str]:
    """Every file under `bundle` by its relative POSIX name; a symbolic link or special file
    anywhere (the folder itself included) is a failure."""
    if not stat.S_ISDIR(os.lstat(bundle).st_mode):
        raise VerificationError("the cached bundle is not a folder")
    names: set[str] = set()
    for folder, dirs, files in os.walk(bundle):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise VerificationError(f"cached {name} is a link or special file")
            names.add(Path(path).relative_to(bundle).as_posix())
    return names


def _check_cache_root(root: Path, *, explicit: bool) -> None:
    """Refuse a cache folder another user could have written: one owned by someone else, or
    (unless the caller named it explicitly) one writable by its group or by everybody."""
    try:
        info = os.stat(root)
    except FileNotFoundError:
        return
    except OSError as error:
        raise PathError(f"{root}: the cache folder cannot be read ({error.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise PathError(f"{root}: the cache folder is not a folder")
    if info.st_uid != os.geteuid():
        raise InputError(f"{root}: the cache folder is owned by another user; use a folder you own")
    if not explicit and info.st_mode & 0o022:
        raise InputError(
            f"{root}: the cache folder is writable by other users; make it private "
            "(chmod go-w) or pass a cache folder you own explicitly"
        )


def _seal(temp: Path, resolved: _Resolved) -> None:
    """Record what was verified (the signature, the manifest, each file's stat) and make the
    files read-only."""
    bundle = temp / "bundle"
    files = []
    for entry in resolved.manifest.files:
        name = resolved.file_name if entry.name == "." else entry.name
        assert name is not None
        target = bundle / name
        os.chmod(target, 0o444)
        info = os.stat(target, follow_symlinks=False)
        files.append(
            {
                "name": name,
                "digest": entry.digest,
                "size": info.st_size,
                "mtime_ns": info.st_mtime_ns,
                "inode": info.st_ino,
            }
        )
    meta = {
        "uri": resolved.uri,
        "root_digest": resolved.root_digest,
        "signature": resolved.signature,
        "manifest_files": [f.to_dict() for f in resolved.manifest.files],
        "files": files,
    }
    (temp / META).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
    os.chmod(temp / META, 0o444)


def _bundle_path(entry: Path, resolved: _Resolved) -> Path:
    if resolved.file_name is not None:
        return entry / "bundle" / resolved.file_name
    return entry / "bundle"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if not path.exists():
        return
    for folder, dirs, _files in os.walk(path):
        os.chmod(folder, 0o755)
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


# --------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Resolved:
    uri: str
    model: str
    version: int
    root_digest: str
    manifest: Any  # core.manifest.Manifest, signature-checked
    signature: dict[str, Any]  # the registry's OMS bundle over it
    file_name: str | None  # a single-file version's file name
    release_id: str | None


class _Source:
    def resolve(self, uri: str, environment: str | None) -> _Resolved:
        raise NotImplementedError

    def check_signature(self, signature: dict[str, Any], resolved: _Resolved) -> tuple[Any, Any]:
        raise NotImplementedError

    def fetch(self, resolved: _Resolved, out: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _signed_manifest(
    signature: dict[str, Any], verifier: Any, root_digest: str, model: str | None = None
) -> Any:
    from modelward.signing.oms import SignatureBundle, manifest_from_statement, verify_with_key

    signed = manifest_from_statement(
        verify_with_key(SignatureBundle.from_dict(signature), verifier)
    )
    if signed.root_digest != root_digest:
        raise VerificationError(f"the registry signature covers sha256:{signed.root_digest}")
    if model is not None and signed.model_name != model:
        # the registry signed another model's bundle: a server (or the network in between)
        # answering for one model with another's genuinely signed files
        raise VerificationError(
            f"the registry signature is for model {signed.model_name!r}, not {model!r}"
        )
    return signed


def _no_release(model: str, environment: str) -> str:
    return f"models:/{model} has no release in {environment} ({environment} is an environment)"


class _EmbeddedSource(_Source):
    def __init__(self) -> None:
        from modelward.services.context import open_registry
        from modelward.services.registry import RegistryService

        self.ctx = open_registry()
        self.service = RegistryService(self.ctx)

    def close(self) -> None:
        self.ctx.close()

    def resolve(self, uri: str, environment: str | None) -> _Resolved:
        from modelward.core.names import parse_uri
        from modelward.services.gate_config import gate_config_in
        from modelward.services.pull import _pushed_file_name, _single_file_name
        from modelward.services.state_integrity import verify_row
        from modelward.storage.metadata.gate_repository import GateRepository
        from modelward.storage.metadata.registry_repository import RegistryRepository

        parsed = parse_uri(uri)
        try:
            record = self.service.resolve(uri)
        except NotFoundError:
            if parsed.alias is not None and parsed.name is not None:
                with self.ctx.database.read() as conn:
                    is_environment = parsed.alias in gate_config_in(conn).environments
                    known = RegistryRepository(conn).model_id(parsed.name) is not None
                if is_environment and known:
                    raise VerificationError(_no_release(parsed.name, parsed.alias)) from None
            raise
        manifest, bundle = self.service._checked_signature(record)
        problems = self.service._check_ledger_entry(record)
        if problems:
            raise VerificationError(f"{record.uri}: " + "; ".join(problems))
        release_id = None
        with self.ctx.database.read() as conn:
            environments = gate_config_in(conn).environments
            if environment is None and parsed.alias in environments:
                environment = parsed.alias
            if environment is not None:
                if environment not in environments:
                    raise InputError(
                        f"{environment!r} is not an environment ({', '.join(environments)})"
                    )
                try:
                    row = GateRepository(conn).current_release(record.model, environment)
                except InputError as exc:  # a stored row that does not parse: tampered
                    raise VerificationError(
                        f"models:/{record.model} in {environment}: the release row is "
                        f"malformed ({exc}); it is not trusted"
                    ) from exc
                if row is None:
                    raise VerificationError(
                        f"models:/{record.model} has no release in {environment}"
                    )
                problem = verify_row(conn, "gate_releases", row.release.release_id)
                if problem is not None:
                    raise VerificationError(f"{problem}; it is not trusted")
                release = row.release
                if release.version != record.number or release.bundle_digest != (
                    "sha256:" + record.root_digest
                ):
                    raise VerificationError(
                        f"{record.uri} is not the current release in {environment} "
                        f"(that is {release.release_id}, version {release.version})"
                    )
                release_id = release.release_id
        single = [f.name for f in manifest.files] == ["."]
        file_name = (
            _single_file_name(_pushed_file_name(self.ctx, record) or record.model)
            if single
            else None
        )
        return _Resolved(
            record.uri,
            record.model,
            record.number,
            record.root_digest,
            manifest,
            bundle.to_dict(),
            file_name,
            release_id,
        )

    def check_signature(self, signature: dict[str, Any], resolved: _Resolved) -> tuple[Any, Any]:
        from modelward.signing.keys import Verifier

        signed = _signed_manifest(
            signature, Verifier(self.ctx.signer.public_key), resolved.root_digest, resolved.model
        )
        return resolved.manifest, signed

    def fetch(self, resolved: _Resolved, out: Path) -> None:
        """Copy every file from the blob store, hashing while reading: one pass, this hash
        (the store's own re-hash is skipped, not repeated), and a mismatch discards the copy."""
        out.mkdir(parents=True)
        for entry in resolved.manifest.files:
            name = resolved.file_name if entry.name == "." else entry.name
            assert name is not None
            target = out / name
            inside = out.resolve()
            if os.path.commonpath([inside, target.resolve()]) != str(inside):
                raise VerificationError(f"stored file name {entry.name} leaves the bundle folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            hasher = hashlib.sha256()
            with open(target, "xb") as handle:
                for chunk in self.ctx.blobs.unverified_chunks(entry.digest):
                    hasher.update(chunk)
                    handle.write(chunk)
            if hasher.hexdigest() != entry.digest:
                raise VerificationError(
                    f"{name}: the bytes read do not match sha256:{entry.digest}"
                )


class _RemoteSource(_Source):
    """A registry served by `modelward serve`: the client verifies the signature and every
    byte; the server checks the version row against its sealed ledger event on resolve."""

    def __init__(self, client: Any = None) -> None:
        from modelward.client import Client

        self.owned = client is None
        self.client = client or Client(
            os.environ["MODELWARD_URL"], os.environ.get("MODELWARD_TOKEN")
        )

    def close(self) -> None:
        if self.owned:
            self.client.close()

    def resolve(self, uri: str, environment: str | None) -> _Resolved:
        from modelward.core.manifest import Manifest
        from modelward.core.names import parse_uri

        parsed = parse_uri(uri)
        try:
            record = self.client.resolve(uri)
        except NotFoundError as missing:
            if parsed.alias is not None and parsed.name is not None:
                try:  # the environment exists (and the model): it has no release
                    self.client.releases(parsed.name, parsed.alias)
                except ModelwardError:
                    raise missing from None
                raise VerificationError(_no_release(parsed.name, parsed.alias)) from None
            raise
        name, number = str(record["model"]), int(record["version"])
        from modelward.client._client import _seg

        bundle = self.client._t.json("GET", f"/models/{_seg(name)}/versions/{number}/bundle")
        manifest = Manifest.from_dict(bundle["manifest"])
        root = str(record["root_digest"])
        if parsed.name is not None and name != parsed.name:
            raise VerificationError(f"{uri}: the server answered with model {name!r}")
        signed = _signed_manifest(bundle["registry_signature"], self.client.key(), root, name)
        if manifest.root_digest != root or signed.digests() != manifest.digests():
            raise VerificationError(f"{uri}: the registry signature covers other files")
        if [f.name for f in manifest.files] == ["."]:
            raise InputError("a single-file version cannot be loaded from a server yet")
        release_id = None
        if environment is None and parsed.alias is not None:
            try:  # an environment alias: the environment's releases say what it must be
                if self.client.releases(name, parsed.alias):
                    environment = parsed.alias
            except ModelwardError:
                pass  # not an environment: a plain alias
        if environment is not None:
            releases = self.client.releases(name, environment)
            current = next((r for r in releases if r.get("current")), None)
            if current is None:
                raise VerificationError(f"models:/{name} has no release in {environment}")
            state = current.get("state") or {}
            if int(state.get("version", -1)) != number or state.get("bundle_digest") != (
                "sha256:" + root
            ):
                raise VerificationError(
                    f"models:/{name}/{number} is not the current release in {environment}"
                )
            release_id = str(current.get("release_id"))
        return _Resolved(
            f"models:/{name}/{number}",
            name,
            number,
            root,
            manifest,
            bundle["registry_signature"],
            None,
            release_id,
        )

    def check_signature(self, signature: dict[str, Any], resolved: _Resolved) -> tuple[Any, Any]:
        return resolved.manifest, _signed_manifest(
            signature, self.client.key(), resolved.root_digest, resolved.model
        )

    def fetch(self, resolved: _Resolved, out: Path) -> None:
        for entry in resolved.manifest.files:
            if (
                entry.name in ("", ".")
                or entry.name.startswith("/")
                or ".." in entry.name.split("/")
            ):
                raise VerificationError(f"stored file name {entry.name!r} leaves the bundle folder")
        out.mkdir(parents=True)
        for entry in resolved.manifest.files:
            target = out / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client._download(
                resolved.model, resolved.version, entry.digest, entry.size, target
            )
        if not out.is_dir():
            raise PathError(f"{out}: the download left no folder")
