"""A push whose files are already in the blob store, as a server receives it: the order (file
names, digests and sizes, and what goes with them), its checks, and carrying it out, in the
request or, for a large bundle, as a `push` job that any server process may run.

Carrying out lays the stored blobs out in a private folder (the store verifies each on read)
and calls the registry's one push, which scans, signs and commits the version in one
transaction; so a version is never half-visible, and a push job that dies mid-way and runs
again creates the version once (a second push of the same files to the same model creates
nothing).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import InputError, NotFoundError, PermissionDeniedError
from modelward.services.access import authorise
from modelward.services.context import RegistryContext

PUSH_FOLDER_PREFIX = "mw-push-"
MAX_FILES = 100_000
MAX_PATH_DEPTH = 64  # folders within a bundle
# a push job's payload keys that a job's readers are not shown (services.jobs hides "_" keys)
PUSH_ORDER, PUSH_PRINCIPAL = "_order", "_principal"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_digest(text: str) -> str:
    if not _DIGEST.match(text):
        raise InputError(f"{text[:80]!r} is not a SHA-256 digest (64 lowercase hex characters)")
    return text


def safe_relative_path(name: str) -> PurePosixPath:
    """A bundle file name as a relative path that stays inside the bundle; InputError else."""
    if "\\" in name or "\x00" in name or any(ord(c) < 32 for c in name):
        raise InputError(f"file name {name[:200]!r} has a backslash or a control character")
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts:
        raise InputError(f"file name {name[:200]!r} must be a relative path")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InputError(f"file name {name[:200]!r} has an empty, '.' or '..' part")
    return path


@dataclass(frozen=True)
class OrderedFile:
    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class PushOrder:
    """What a client asked to push; `check()` refuses what could not be laid out safely."""

    model: str
    files: tuple[OrderedFile, ...]
    description: str = ""
    accept_malformed: tuple[str, ...] = ()
    change: str | None = None
    compat: str | None = None
    single_file_name: str | None = None
    # the uploader's OMS signature (Sigstore bundle JSON) with the PEM key it verifies with;
    # a training-provenance document (base64 of the file) with an extra key to check it with
    signature: dict[str, Any] | None = None
    public_key: str | None = None
    provenance: str | None = None
    provenance_key: str | None = None

    @property
    def single(self) -> bool:
        return len(self.files) == 1 and self.files[0].name == "."

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def check(self) -> None:
        from modelward.core.names import validate_name

        validate_name(self.model, "model name")
        if not self.files or len(self.files) > MAX_FILES:
            raise InputError(f"a push names 1 to {MAX_FILES} files, not {len(self.files)}")
        names: set[str] = set()
        for entry in self.files:
            check_digest(entry.digest)
            if entry.size < 0:
                raise InputError(f"file {entry.name[:80]!r}: a size is 0 or more bytes")
            if self.single:
                continue
            key = str(safe_relative_path(entry.name))
            if key in names:
                raise InputError(f"file {key!r} is named twice")
            parts = key.split("/")
            if len(parts) > MAX_PATH_DEPTH or any(len(p) > 255 for p in parts):
                raise InputError(
                    f"file {key[:80]!r}: at most {MAX_PATH_DEPTH} folders deep and 255 "
                    "characters a name"
                )
            names.add(key)
        folders = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
        clash = sorted(names & folders)
        if clash:
            raise InputError(f"{clash[0]!r} is named as a file and as a folder")
        if self.single and self.single_file_name:
            name = str(safe_relative_path(self.single_file_name))
            if "/" in name:
                raise InputError("single_file_name must be a file name, not a path")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "files": [[f.name, f.digest, f.size] for f in self.files],
            "description": self.description,
            "accept_malformed": list(self.accept_malformed),
            "change": self.change,
            "compat": self.compat,
            "single_file_name": self.single_file_name,
            "signature": self.signature,
            "public_key": self.public_key,
            "provenance": self.provenance,
            "provenance_key": self.provenance_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PushOrder:
        try:
            files = tuple(
                OrderedFile(str(name), str(digest), int(size))
                for name, digest, size in data["files"]
            )
            order = cls(
                model=str(data["model"]),
                files=files,
                description=str(data.get("description") or ""),
                accept_malformed=tuple(str(r) for r in data.get("accept_malformed") or ()),
                change=_text_or_none(data.get("change")),
                compat=_text_or_none(data.get("compat")),
                single_file_name=_text_or_none(data.get("single_file_name")),
                signature=data.get("signature"),
                public_key=_text_or_none(data.get("public_key")),
                provenance=_text_or_none(data.get("provenance")),
                provenance_key=_text_or_none(data.get("provenance_key")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"a push order is malformed: {exc}") from exc
        if order.signature is not None and not isinstance(order.signature, dict):
            raise InputError("a push order's signature is a JSON object")
        return order


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def principal_record(principal: Principal) -> dict[str, Any]:
    return {**principal.to_dict(), "claims": principal.claims}


def principal_from_record(data: Any) -> Principal:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise InputError("a push job names no principal")
    return Principal(
        name=data["name"],
        issuer=str(data.get("issuer") or ""),
        token_id=data.get("token_id"),
        scopes=tuple(data.get("scopes") or ()),
        model_pattern=data.get("model_pattern"),
        subject=str(data.get("subject") or data["name"]),
        claims=dict(data.get("claims") or {}),
    )


def require_held(context: RegistryContext, principal: Principal, order: PushOrder) -> None:
    """Refuse an order naming a blob that is not stored or that the caller may not name (the
    same answer for both, so it tells nothing of other models' files)."""
    from modelward.services.uploads import UploadService

    missing = set(UploadService(context, principal).not_held([f.digest for f in order.files]))
    if missing:
        named = next(f.name for f in order.files if f.digest in missing)
        raise NotFoundError(
            f"{len(missing)} file(s) were not uploaded first, e.g. {named!r}: "
            "PUT /api/v1/uploads/{sha256} each file, then commit"
        )


def carry_out(
    context: RegistryContext, principal: Principal, order: PushOrder, spool_dir: Path
) -> dict[str, Any]:
    """Check the order and the caller's right to it, then push: the version's record with
    `created` (False when the same files were already that model's version)."""
    from modelward.services.change import change_hook
    from modelward.services.registry import RegistryService

    order.check()
    authorise(context, principal, Action.PUSH, model=order.model)
    require_held(context, principal, order)
    single_name = "model"
    if order.single and order.single_file_name:
        single_name = order.single_file_name
    blobs = context.blobs
    workdir = Path(tempfile.mkdtemp(prefix=PUSH_FOLDER_PREFIX, dir=spool_dir))
    try:
        root = workdir / "bundle"
        root.mkdir()
        # the evidence sent with the push lives beside the bundle, never where a file of it
        # (a single file may be named `provenance.json`) could be
        evidence = workdir / "evidence"
        evidence.mkdir()
        if order.single:
            (workdir / "single").mkdir()
        for entry in order.files:
            target = workdir / "single" / single_name if order.single else root / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            info = blobs.copy_to(entry.digest, target)
            if info.size != entry.size:
                raise InputError(f"{entry.name}: declared {entry.size} bytes, stored {info.size}")
        model_path = workdir / "single" / single_name if order.single else root
        change = change_hook(order.change, order.compat) if order.change or order.compat else None
        signature_path, verifier, provenance_path, provenance_keys = _evidence(order, evidence)
        with bind_principal(principal):
            service = RegistryService(context, actor=principal.name)
            provenance = None
            if provenance_path is not None:
                from modelward.services.provenance import ProvenanceService

                provenance = ProvenanceService(service.ctx, service.actor).push_hook(
                    provenance_path, provenance_keys
                )
            result = service.push(
                model_path,
                order.model,
                description=order.description,
                signature_path=signature_path,
                public_key=verifier,
                accept_malformed=list(order.accept_malformed),
                change=change,
                provenance=provenance,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {**result.version.to_dict(), "created": result.created}


def _evidence(order: PushOrder, folder: Path) -> tuple[Path | None, Any, Path | None, list[Any]]:
    """The uploader's signature and provenance of a push, written beside (never inside) the
    bundle's private folder, with the keys sent to check them: what the embedded CLI reads
    from `--signature/--public-key` and `--provenance/--provenance-key`."""
    from modelward.signing.keys import Verifier, public_key_from_pem

    verifier = None
    if order.public_key is not None:
        verifier = Verifier(public_key_from_pem(order.public_key.encode("utf-8"), "public_key"))
    signature_path = None
    if order.signature is not None:
        signature_path = folder / "uploader.sig"
        signature_path.write_text(json.dumps(order.signature))
    keys = [verifier] if verifier is not None else []
    if order.provenance_key is not None:
        key = public_key_from_pem(order.provenance_key.encode("utf-8"), "provenance_key")
        keys.append(Verifier(key))
    provenance_path = None
    if order.provenance is not None:
        try:
            document = base64.b64decode(order.provenance, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"provenance must be base64: {exc}") from exc
        provenance_path = folder / "provenance.json"
        provenance_path.write_bytes(document)
    return signature_path, verifier, provenance_path, keys


def push_job_handler(
    spool_dir: Path,
) -> Callable[[RegistryContext, dict[str, Any], str], dict[str, Any]]:
    """The `push` job: a large push carried out by whichever server process claims it, for the
    principal who queued it. An API token revoked (or expired) since is refused."""

    def run(context: RegistryContext, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        principal = principal_from_record(payload.get(PUSH_PRINCIPAL))
        if principal.name != actor:
            raise PermissionDeniedError("a push job's principal is not the user who queued it")
        _still_valid(context, principal)
        order = PushOrder.from_dict(payload.get(PUSH_ORDER) or {})
        return carry_out(context, principal, order, spool_dir)

    return run


def _still_valid(context: RegistryContext, principal: Principal) -> None:
    from modelward.services.tokens import TOKEN_ISSUER, token_problem

    if principal.issuer == TOKEN_ISSUER and principal.token_id is not None:
        problem = token_problem(context, principal.token_id)
        if problem is not None:
            raise PermissionDeniedError(f"the push was queued with a token that {problem}")
