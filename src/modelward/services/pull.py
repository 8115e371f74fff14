"""Pulling a version's bundle to a folder: every byte verified on the way out, and the registry's
OMS signature written next to it for `model_signing verify key OUT --signature SIG`.

A single-file version (manifest entry ".") is written as `OUT/NAME`. NAME is the `file_name`
asked for, else the name the file had when it was pushed (recorded as `file_name` in the push's
ledger event), else the model name. Its stored registry signature names the file "." (it
verifies `OUT/NAME` itself); the signature written is a registry signature made now over the same
root digest with the file under NAME, which is what `model_signing` expects of the folder OUT.
The caller (RegistryService) has checked the stored signature against the manifest.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core.manifest import FileDigest, Manifest
from modelward.errors import InputError, NotFoundError, PathError, VerificationError
from modelward.services.context import RegistryContext
from modelward.signing.oms import SignatureBundle, sign_manifest
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.metadata.registry_repository import VersionRecord
from modelward.storage.output_folders import check_creatable_folder, make_output_folder


@dataclass(frozen=True)
class PullResult:
    version: VersionRecord
    out: Path
    signature: Path | None
    file_name: str | None  # the name a single-file version was written under

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.version.to_dict(),
            "out": str(self.out),
            "signature": str(self.signature) if self.signature else None,
            "file_name": self.file_name,
            "verified": True,
        }


def pull_bundle(
    ctx: RegistryContext,
    record: VersionRecord,
    manifest: Manifest,
    bundle: SignatureBundle,
    out_dir: Path,
    *,
    signature_path: Path | None = None,
    file_name: str | None = None,
) -> PullResult:
    """Write the bundle to `out_dir`, verifying every byte and the registry signature first;
    on any mismatch remove what was written.

    A single-file version is written as `out_dir/NAME`: NAME is `file_name` if given, else
    the file name recorded when it was pushed, else the model name. With `signature_path`,
    the registry's OMS signature is written there too, in the form `model_signing verify key
    OUT_DIR --signature SIG` accepts (for a single-file version: a registry signature over
    the same root digest with the file under its name, made now).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PathError(f"{out_dir}: exists and is not an empty folder; choose a new one")
    check_creatable_folder(out_dir)
    if signature_path is not None:
        signature_path = Path(signature_path)
        if signature_path.exists() or signature_path.is_symlink():
            raise PathError(f"{signature_path}: exists; choose a new signature file")
        if not signature_path.parent.is_dir() and not _is_inside(signature_path.parent, out_dir):
            raise PathError(f"{signature_path.parent}: no such folder for the signature")
        if _is_inside(out_dir, signature_path):
            raise PathError(f"{signature_path}: the signature cannot be written inside {out_dir}")
    single = [entry.name for entry in manifest.files] == ["."]
    name = None
    if single:
        name = _single_file_name(file_name or _pushed_file_name(ctx, record) or record.model)
    elif file_name is not None:
        raise InputError(f"{record.uri} is a folder of files; --file-name is for single files")
    created = not out_dir.exists()
    wrote_signature = False
    make_output_folder(out_dir)
    try:
        for entry in manifest.files:
            target = out_dir / (name if entry.name == "." and name else entry.name)
            _check_inside(out_dir, target)
            target.parent.mkdir(parents=True, exist_ok=True)
            ctx.blobs.copy_to(entry.digest, target)
        if signature_path is not None:
            if single and name:
                bundle = sign_manifest(_folder_form(manifest, name), ctx.signer)
            with open(signature_path, "xb") as handle:
                wrote_signature = True
                handle.write(bundle.to_json())
    except BaseException:
        if wrote_signature and signature_path is not None:
            signature_path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            for child in list(out_dir.iterdir()):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return PullResult(record, out_dir, signature_path, name)


def _pushed_file_name(ctx: RegistryContext, record: VersionRecord) -> str | None:
    """The single file's name as recorded in the version's push event, if it was."""
    with ctx.database.read() as conn:
        try:
            details = LedgerRepository(conn).event(record.ledger_seq).details
        except NotFoundError:
            return None
    recorded = details.get("file_name")
    return recorded if isinstance(recorded, str) and recorded else None


def _single_file_name(name: str) -> str:
    """A safe name for a single-file version's file inside the output folder."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or len(name) > 255
        or any(ord(c) < 32 for c in name)
    ):
        raise InputError(f"{name!r} cannot be the name of the pulled file (one plain file name)")
    return name


def _folder_form(manifest: Manifest, name: str) -> Manifest:
    """A single-file manifest as a folder holding the file under `name` (same root digest)."""
    (entry,) = manifest.files
    return Manifest(
        manifest.model_name,
        (FileDigest(name, entry.algorithm, entry.digest, entry.size),),
        manifest.serialization,
    )


def _is_inside(root: Path, target: Path) -> bool:
    root_real = os.path.realpath(root)
    return os.path.commonpath([root_real, os.path.realpath(target)]) == root_real


def _check_inside(root: Path, target: Path) -> None:
    if not _is_inside(root, target):
        raise VerificationError(f"stored file name {target} leaves the output folder")
