"""`show --attestations --out DIR`: write every verified DSSE envelope of a version to a folder,
one file per attestation (`ID-KIND.dsse.json`), for checking offline with the registry's public
key. Attestations that fail verification are not written; they are returned as problems.
Knows nothing of argument parsing or rendering.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import PathError
from modelward.services.attestation_verify import AttestationVerifier, VerifiedAttestation
from modelward.services.context import RegistryContext, current_actor
from modelward.services.registry import resolve_in
from modelward.services.users import require
from modelward.signing.keys import Verifier
from modelward.storage.metadata.registry_repository import RegistryRepository

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ExportResult:
    uri: str
    out_dir: Path
    written: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "out": str(self.out_dir),
            "written": self.written,
            "skipped": self.skipped,
        }


class AttestationExportService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def export(self, uri: str, out_dir: Path) -> ExportResult:
        out_dir = Path(out_dir)
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise PathError(f"{out_dir}: exists and is not an empty folder; choose a new one")
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = RegistryRepository(conn)
            record = resolve_in(repo, parse_uri(uri))
            verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
            checked = verifier.check_all(repo.attestations(record.id), record.root_digest)
        result = ExportResult(record.uri, out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PathError(f"{out_dir}: cannot create the folder: {exc.strerror or exc}") from exc
        for item in checked.verified:
            name = f"{item.record.id:04d}-{_UNSAFE.sub('_', item.kind)}.dsse.json"
            _write(out_dir / name, item)
            result.written.append(
                {
                    "file": name,
                    "id": item.record.id,
                    "kind": item.kind,
                    "key_id": item.key_id,
                    "key_name": item.key_name,
                }
            )
        result.skipped.extend(p.to_dict() for p in checked.problems)
        return result


def _write(path: Path, item: VerifiedAttestation) -> None:
    text = json.dumps(item.envelope.to_dict(), indent=2, sort_keys=True) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PathError(f"{path}: cannot write: {exc.strerror or exc}") from exc
