"""Weight forensics of a version against its base, attested.

`ForensicsService.compare` materialises both versions verified, compares their weights tensor by
tensor and their tokenizer, vocabulary, special tokens, configuration and chat template
(`modelward.forensics`), checks a quantisation claim when one is made, and stores the result as a
`https://modelward.dev/forensics/v1` in-toto statement about the candidate, DSSE-signed with the
registry key, with its ledger event in one transaction. A flagged result is attested too: it
is evidence. `forensics_fact` turns the verified attestations of a version into the gate's
`forensics` fact. Knows nothing of argument parsing or rendering.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import InputError
from modelward.services.attestation_verify import VerifiedAttestation
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.registry import RegistryService, resolve_in
from modelward.services.state_integrity import anchored_append
from modelward.services.users import require
from modelward.services.verified_bundle import materialise_verified
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord

FORENSICS_KIND = "forensics"
FORENSICS_V1 = "https://modelward.dev/forensics/v1"


@dataclass(frozen=True)
class ForensicsReport:
    candidate: VersionRecord
    base: VersionRecord
    predicate: dict[str, Any]
    seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.predicate["passed"])

    def to_dict(self) -> dict[str, Any]:
        return {**self.predicate, "seconds": round(self.seconds, 3)}


class ForensicsService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.registry = RegistryService(context, self.actor)

    def compare(
        self, uri: str, base_uri: str, *, claim: str | None = None, top_k: int = 8
    ) -> ForensicsReport:
        from modelward.forensics.bundle_meta import bundle_meta, meta_differences
        from modelward.forensics.compare import compare_weights
        from modelward.forensics.weights import open_weights

        started = time.perf_counter()
        claim = claim.upper() if claim else None
        with tempfile.TemporaryDirectory(prefix="modelward-forensics-") as work:
            cand_dir, base_dir = Path(work) / "candidate", Path(work) / "base"
            record = materialise_verified(self.registry, uri, cand_dir)
            base = materialise_verified(self.registry, base_uri, base_dir)
            if record.root_digest == base.root_digest:
                raise InputError(f"{record.uri} and {base.uri} are the same bundle")
            cand_w, base_w = open_weights(cand_dir), open_weights(base_dir)
            weights = compare_weights(cand_w, base_w, claim=claim, top_k=top_k)
            meta = meta_differences(bundle_meta(cand_dir, cand_w), bundle_meta(base_dir, base_w))
        findings = [*weights.findings, *meta["findings"]]
        predicate = {
            "candidate": {"uri": record.uri, "digest": "sha256:" + record.root_digest},
            "base": {"uri": base.uri, "digest": "sha256:" + base.root_digest},
            "claim": claim,
            "formats": {"candidate": weights.candidate_format, "base": weights.base_format},
            "passed": not findings,
            "findings": findings,
            "summary": weights.summary(),
            "metadata": {k: v for k, v in meta.items() if k != "findings"},
            "tensors": [t.to_dict() for t in weights.tensors],
            "comparedOn": format_time(utc_now()),
            "comparedBy": self.actor,
        }
        self._attest(record, predicate)
        return ForensicsReport(record, base, predicate, time.perf_counter() - started)

    def _attest(self, record: VersionRecord, predicate: dict[str, Any]) -> None:
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ATTACH_PROVENANCE)
            repo = RegistryRepository(conn)
            current = resolve_in(repo, parse_uri(record.uri))
            if current.root_digest != record.root_digest:
                raise InputError(f"{record.uri} changed while it was compared")
            attestation_id = self.registry.add_statement(
                repo,
                current.id,
                FORENSICS_KIND,
                FORENSICS_V1,
                current.manifest(),
                predicate,
                format_time(utc_now()),
            )
            anchored_append(
                conn,
                self.actor,
                "forensics.compare",
                current.uri,
                {
                    "root_digest": current.root_digest,
                    "base": predicate["base"]["digest"],
                    "claim": predicate["claim"],
                    "passed": predicate["passed"],
                    "findings": len(predicate["findings"]),
                },
                utc_now(),
                rows=[("attestations", str(attestation_id))],
            )


def forensics_fact(
    attestations: list[VerifiedAttestation], base_digest: str | None
) -> tuple[dict[str, Any] | None, VerifiedAttestation | None]:
    """The gate's `forensics` fact from a version's verified forensics attestations: the latest
    against the declared base when one is declared, else the latest; malformed predicates count
    as absent."""
    chosen = None
    for att in attestations:
        base = att.predicate.get("base")
        digest = base.get("digest") if isinstance(base, dict) else None
        if not isinstance(digest, str):
            continue
        if base_digest is None or digest == base_digest:
            chosen = (att, digest)
    if chosen is None:
        return None, None
    att, digest = chosen
    p = att.predicate
    raw_summary = p.get("summary")
    summary: dict[str, Any] = raw_summary if isinstance(raw_summary, dict) else {}
    findings = p.get("findings")
    passed = p.get("passed")
    if not isinstance(findings, list) or not isinstance(passed, bool):
        return None, None

    def count(key: str) -> int:
        value = summary.get(key)
        if isinstance(value, list):
            return len(value)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    max_rel = summary.get("max_relative_change")
    claim = p.get("claim")
    return {
        "passed": passed and not findings,
        "base": digest,
        "claim": claim if isinstance(claim, str) else None,
        "changed_tensors": count("changed"),
        "added_tensors": count("added"),
        "removed_tensors": count("removed"),
        "max_relative_change": max_rel if isinstance(max_rel, (int, float)) else None,
        "findings": [str(f) for f in findings],
    }, att
