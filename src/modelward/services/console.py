"""Read views the web console needs beyond those the API already serves: models searched by
name, owner, risk tier and environment; a version's approvals; every environment's current
releases; a page of the ledger; the file diff of two versions.

Every method needs the `view` role of the acting user (checked here, as every service does);
what decides trust is checked before it is shown: a risk tier comes from a decision whose
signature and facts digest verify, approvals are marked by the ledger check
(`state_integrity.trusted_approval_keys`), releases are read through the release service's
checks. Stores nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelward.core.roles import Action
from modelward.errors import InputError
from modelward.services.context import RegistryContext, current_actor
from modelward.services.gate_config import load_gate_config
from modelward.services.registry import resolve_in
from modelward.services.users import require
from modelward.storage.metadata.gate_repository import DecisionRow, GateRepository
from modelward.storage.metadata.ledger_repository import LedgerEvent, LedgerRepository
from modelward.storage.metadata.registry_repository import RegistryRepository

LEDGER_PAGE = 50


@dataclass(frozen=True)
class ModelSummary:
    name: str
    owner: str
    created_at: str
    versions: int
    latest: int | None
    risk_tier: str | None  # from the newest verified decision; None when none or unverified
    environments: dict[str, int] = field(default_factory=dict)  # environment -> version


@dataclass(frozen=True)
class LedgerPage:
    size: int
    events: list[LedgerEvent]
    newer: int | None  # `before` of the next newer page, None on the newest
    older: int | None  # `before` of the next older page, None on the oldest
    checkpoint: str | None  # the newest issued checkpoint (signed note)
    checkpoint_size: int | None


@dataclass(frozen=True)
class FileDiff:
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    unchanged: int


def verified_risk_tier(row: DecisionRow, registry_key: Any) -> str | None:
    """The risk tier in a decision's facts, if the decision's signature and facts digest
    verify; None otherwise (an unverified tier matches no filter)."""
    from modelward.core.dsse import Envelope
    from modelward.core.intoto import Statement
    from modelward.core.policy import facts_digest
    from modelward.errors import ModelwardError
    from modelward.policy.vsa import decision_from_statement

    try:
        envelope = Envelope.from_dict(json.loads(row.envelope))
        if not any(registry_key.is_valid(s.sig, envelope.pae()) for s in envelope.signatures):
            return None
        decision = decision_from_statement(Statement.from_bytes(envelope.payload))
        facts = json.loads(row.facts)
    except (ModelwardError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(facts, dict):
        return None
    if facts_digest(facts) != decision.facts_digest or decision.facts_digest != row.facts_digest:
        return None
    tier = facts.get("risk_tier")
    return tier if isinstance(tier, str) else None


class ConsoleService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def environment_names(self) -> list[str]:
        return list(load_gate_config(self.ctx).path.environments)

    def models(
        self,
        query: str = "",
        owner: str = "",
        risk_tier: str = "",
        environment: str = "",
    ) -> list[ModelSummary]:
        from modelward.signing.keys import Verifier

        if len(query) > 200 or len(owner) > 200 or len(risk_tier) > 20 or len(environment) > 100:
            raise InputError("a search term is too long")
        key = Verifier(self.ctx.signer.public_key)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            rows = RegistryRepository(conn).list_models()
            gate = GateRepository(conn)
            decisions = gate.latest_decision_of_each_model()
            out = []
            for row in rows:
                name = str(row["name"])
                if query and query.lower() not in name.lower():
                    continue
                if owner and owner != row["created_by"]:
                    continue
                current = gate.current_releases_of_model(name)
                if environment and environment not in current:
                    continue
                decision = decisions.get(name)
                tier = verified_risk_tier(decision, key) if decision is not None else None
                if risk_tier and tier != risk_tier:
                    continue
                out.append(
                    ModelSummary(
                        name=name,
                        owner=str(row["created_by"]),
                        created_at=str(row["created_at"]),
                        versions=int(row["versions"]),
                        latest=row["latest"],
                        risk_tier=tier,
                        environments={env: r.version for env, r in sorted(current.items())},
                    )
                )
        return out

    def owners(self) -> list[str]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            rows = RegistryRepository(conn).list_models()
        return sorted({str(r["created_by"]) for r in rows})

    def approvals(self, uri: str) -> list[dict[str, Any]]:
        """Every approval of the version, each marked `trusted` when its ledger check passes
        (an untrusted one counts for no rule)."""
        from modelward.core.names import parse_uri
        from modelward.services.state_integrity import trusted_approval_keys

        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            good, _ = trusted_approval_keys(conn, record.id)
            rows = GateRepository(conn).approvals(record.id)
        return [
            {
                "environment": a.environment,
                "reviewer": a.reviewer,
                "comment": a.comment,
                "sign_off": a.sign_off,
                "at": a.created_at,
                "trusted": str(a.id) in good,
            }
            for a in rows
        ]

    def ledger_page(self, before: int | None = None, page: int = LEDGER_PAGE) -> LedgerPage:
        """Events newest first: those with seq < `before` (default: the newest), `page` of
        them, and the newest issued checkpoint."""
        if before is not None and before < 0:
            raise InputError("before must not be negative")
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = LedgerRepository(conn)
            size = repo.size()
            stop = size if before is None else min(before, size)
            start = max(0, stop - page)
            events = list(repo.events(start, stop, batch_size=page))
            latest = repo.latest_checkpoint()
        events.reverse()
        return LedgerPage(
            size=size,
            events=events,
            newer=None if stop >= size else min(size, stop + page),
            older=start if start > 0 else None,
            checkpoint=latest.note if latest is not None else None,
            checkpoint_size=latest.size if latest is not None else None,
        )

    def file_diff(self, uri_a: str, uri_b: str) -> FileDiff:
        from modelward.core.names import parse_uri

        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = RegistryRepository(conn)
            a = resolve_in(repo, parse_uri(uri_a)).manifest()
            b = resolve_in(repo, parse_uri(uri_b)).manifest()
        files_a = {f.name: f for f in a.files}
        files_b = {f.name: f for f in b.files}
        added = [
            {"name": n, "digest": files_b[n].digest, "size": files_b[n].size}
            for n in sorted(files_b.keys() - files_a.keys())
        ]
        removed = [
            {"name": n, "digest": files_a[n].digest, "size": files_a[n].size}
            for n in sorted(files_a.keys() - files_b.keys())
        ]
        common = sorted(files_a.keys() & files_b.keys())
        changed = [
            {
                "name": n,
                "digest_a": files_a[n].digest,
                "digest_b": files_b[n].digest,
                "size_a": files_a[n].size,
                "size_b": files_b[n].size,
            }
            for n in common
            if files_a[n].digest != files_b[n].digest
        ]
        return FileDiff(added, removed, changed, len(common) - len(changed))
