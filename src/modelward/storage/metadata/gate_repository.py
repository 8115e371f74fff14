"""All SQL of the release gate: environment policies, approvals, decisions, releases, drills,
and changes to users' roles.

Bound to one connection (one transaction, owned by the calling service). Never commits. Rows are
only ever inserted, except a user's role, which an admin may change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from modelward.core.canonical import canonical_json
from modelward.core.release import Release
from modelward.storage.metadata.gate_tables import (
    gate_approvals,
    gate_decisions,
    gate_drills,
    gate_policies,
    gate_releases,
)
from modelward.storage.metadata.ledger_tables import ledger_events
from modelward.storage.metadata.registry_tables import users


@dataclass(frozen=True)
class PolicyRow:
    environment: str
    digest: str
    text: str
    created_at: str
    created_by: str


@dataclass(frozen=True)
class ApprovalRow:
    version_id: int
    environment: str
    reviewer: str
    comment: str
    sign_off: bool
    created_at: str
    id: int = 0


@dataclass(frozen=True)
class DecisionRow:
    id: int
    version_id: int
    environment: str
    allowed: bool
    overridden: bool
    policy_digest: str
    facts_digest: str
    decision_digest: str
    envelope: str
    facts: str
    created_at: str
    created_by: str


@dataclass(frozen=True)
class ReleaseRow:
    seq: int
    kind: str
    release: Release


@dataclass(frozen=True)
class DrillRow:
    model: str
    environment: str
    passed: bool
    report: dict[str, Any]
    created_at: str
    created_by: str


class GateRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- users ------------------------------------------------------------------------------

    def set_user_role(self, name: str, role: str) -> None:
        self._conn.execute(update(users).where(users.c.name == name).values(role=role))

    # -- policies ---------------------------------------------------------------------------

    def add_policy(self, environment: str, digest: str, text: str, at: str, by: str) -> int:
        result = self._conn.execute(
            insert(gate_policies).values(
                environment=environment, digest=digest, text=text, created_at=at, created_by=by
            )
        )
        return _inserted_id(result.inserted_primary_key)

    def current_policy(self, environment: str) -> PolicyRow | None:
        row = self._conn.execute(
            select(
                gate_policies.c.environment,
                gate_policies.c.digest,
                gate_policies.c.text,
                gate_policies.c.created_at,
                gate_policies.c.created_by,
            )
            .where(gate_policies.c.environment == environment)
            .order_by(gate_policies.c.id.desc())
            .limit(1)
        ).first()
        return PolicyRow(*row) if row is not None else None

    # -- approvals --------------------------------------------------------------------------

    def add_approval(
        self,
        version_id: int,
        environment: str,
        reviewer: str,
        comment: str,
        sign_off: bool,
        at: str,
    ) -> int:
        result = self._conn.execute(
            insert(gate_approvals).values(
                version_id=version_id,
                environment=environment,
                reviewer=reviewer,
                comment=comment,
                sign_off=sign_off,
                created_at=at,
            )
        )
        return _inserted_id(result.inserted_primary_key)

    def approvals(self, version_id: int, environment: str | None = None) -> list[ApprovalRow]:
        query = select(
            gate_approvals.c.version_id,
            gate_approvals.c.environment,
            gate_approvals.c.reviewer,
            gate_approvals.c.comment,
            gate_approvals.c.sign_off,
            gate_approvals.c.created_at,
            gate_approvals.c.id,
        ).where(gate_approvals.c.version_id == version_id)
        if environment is not None:
            query = query.where(gate_approvals.c.environment == environment)
        rows = self._conn.execute(query.order_by(gate_approvals.c.id))
        return [ApprovalRow(v, e, r, c, bool(s), a, int(i)) for v, e, r, c, s, a, i in rows]

    # -- decisions --------------------------------------------------------------------------

    def add_decision(
        self,
        *,
        version_id: int,
        environment: str,
        allowed: bool,
        overridden: bool,
        policy_digest: str,
        facts_digest: str,
        decision_digest: str,
        envelope: str,
        facts: str,
        at: str,
        by: str,
    ) -> int:
        result = self._conn.execute(
            insert(gate_decisions).values(
                version_id=version_id,
                environment=environment,
                allowed=allowed,
                overridden=overridden,
                policy_digest=policy_digest,
                facts_digest=facts_digest,
                decision_digest=decision_digest,
                envelope=envelope,
                facts=facts,
                created_at=at,
                created_by=by,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def decisions(self, version_id: int) -> list[DecisionRow]:
        rows = self._conn.execute(
            select(*gate_decisions.c)
            .where(gate_decisions.c.version_id == version_id)
            .order_by(gate_decisions.c.id)
        )
        return [
            DecisionRow(
                id=row.id,
                version_id=row.version_id,
                environment=row.environment,
                allowed=bool(row.allowed),
                overridden=bool(row.overridden),
                policy_digest=row.policy_digest,
                facts_digest=row.facts_digest,
                decision_digest=row.decision_digest,
                envelope=row.envelope,
                facts=row.facts,
                created_at=row.created_at,
                created_by=row.created_by,
            )
            for row in rows
        ]

    def latest_decision_of_each_model(self) -> dict[str, DecisionRow]:
        """The newest decision about any version of each model, by model name."""
        from modelward.storage.metadata.registry_tables import models, versions

        newest = (
            select(func.max(gate_decisions.c.id))
            .select_from(
                gate_decisions.join(versions, versions.c.id == gate_decisions.c.version_id)
            )
            .group_by(versions.c.model_id)
        )
        rows = self._conn.execute(
            select(models.c.name, *gate_decisions.c)
            .select_from(
                gate_decisions.join(versions, versions.c.id == gate_decisions.c.version_id).join(
                    models, models.c.id == versions.c.model_id
                )
            )
            .where(gate_decisions.c.id.in_(newest))
        )
        return {
            row.name: DecisionRow(
                id=row.id,
                version_id=row.version_id,
                environment=row.environment,
                allowed=bool(row.allowed),
                overridden=bool(row.overridden),
                policy_digest=row.policy_digest,
                facts_digest=row.facts_digest,
                decision_digest=row.decision_digest,
                envelope=row.envelope,
                facts=row.facts,
                created_at=row.created_at,
                created_by=row.created_by,
            )
            for row in rows
        }

    # -- releases ---------------------------------------------------------------------------

    def next_release_number(self) -> int:
        top = self._conn.execute(select(func.max(gate_releases.c.seq))).scalar()
        return int(top or 0) + 1

    def add_release(self, release: Release, version_id: int, kind: str) -> None:
        self._conn.execute(
            insert(gate_releases).values(
                release_id=release.release_id,
                model=release.model,
                environment=release.environment,
                version_id=version_id,
                kind=kind,
                record=canonical_json(release.to_dict()).decode("utf-8"),
                state_digest=release.state_digest(),
                created_at=release.to_dict()["created_at"],
                created_by=release.actor,
            )
        )

    def releases(self, model: str, environment: str) -> list[ReleaseRow]:
        rows = self._conn.execute(
            select(gate_releases.c.seq, gate_releases.c.kind, gate_releases.c.record)
            .where(gate_releases.c.model == model, gate_releases.c.environment == environment)
            .order_by(gate_releases.c.seq)
        )
        return [
            ReleaseRow(seq, kind, Release.from_dict(json.loads(rec))) for seq, kind, rec in rows
        ]

    def release_environments(self) -> list[tuple[str, str]]:
        """Every (model, environment) that has a release, sorted."""
        rows = self._conn.execute(
            select(gate_releases.c.model, gate_releases.c.environment)
            .distinct()
            .order_by(gate_releases.c.model, gate_releases.c.environment)
        )
        return [(model, environment) for model, environment in rows]

    def current_release(self, model: str, environment: str) -> ReleaseRow | None:
        row = self._conn.execute(
            select(gate_releases.c.seq, gate_releases.c.kind, gate_releases.c.record)
            .where(gate_releases.c.model == model, gate_releases.c.environment == environment)
            .order_by(gate_releases.c.seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return ReleaseRow(row[0], row[1], Release.from_dict(json.loads(row[2])))

    def current_releases_of_model(self, model: str) -> dict[str, Release]:
        """The current release of `model` in every environment that has one."""
        latest: dict[str, Release] = {}
        rows = self._conn.execute(
            select(gate_releases.c.environment, gate_releases.c.record)
            .where(gate_releases.c.model == model)
            .order_by(gate_releases.c.seq)
        )
        for environment, record in rows:
            latest[environment] = Release.from_dict(json.loads(record))
        return latest

    def release_by_id(self, release_id: str) -> ReleaseRow | None:
        row = self._conn.execute(
            select(gate_releases.c.seq, gate_releases.c.kind, gate_releases.c.record).where(
                gate_releases.c.release_id == release_id
            )
        ).first()
        if row is None:
            return None
        return ReleaseRow(row[0], row[1], Release.from_dict(json.loads(row[2])))

    def noted_release_events(self, action: str, subject: str) -> set[str]:
        """The release ids named by ledger events `action` about `subject` (e.g. an expired
        override already reported), so a note is written once."""
        rows = self._conn.execute(
            select(ledger_events.c.details).where(
                ledger_events.c.action == action, ledger_events.c.subject == subject
            )
        )
        found = set()
        for (details,) in rows:
            value = json.loads(details)
            if isinstance(value, dict) and isinstance(value.get("release_id"), str):
                found.add(value["release_id"])
        return found

    def referenced_digests(self) -> set[str]:
        """Blob digests (hex) that releases refer to: prompt templates and policy files."""
        found: set[str] = set()
        for (record,) in self._conn.execute(select(gate_releases.c.record)):
            state = json.loads(record)["state"]
            for mapping in (state.get("prompt_templates", {}), state.get("policy_files", {})):
                found.update(str(d).removeprefix("sha256:") for d in mapping.values())
        return found

    # -- drills -----------------------------------------------------------------------------

    def add_drill(
        self, model: str, environment: str, passed: bool, report: dict[str, Any], at: str, by: str
    ) -> int:
        result = self._conn.execute(
            insert(gate_drills).values(
                model=model,
                environment=environment,
                passed=passed,
                report=json.dumps(report, sort_keys=True),
                created_at=at,
                created_by=by,
            )
        )
        return _inserted_id(result.inserted_primary_key)

    def latest_drill(self, model: str, environment: str) -> DrillRow | None:
        row = self._conn.execute(
            select(
                gate_drills.c.model,
                gate_drills.c.environment,
                gate_drills.c.passed,
                gate_drills.c.report,
                gate_drills.c.created_at,
                gate_drills.c.created_by,
            )
            .where(gate_drills.c.model == model, gate_drills.c.environment == environment)
            .order_by(gate_drills.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return DrillRow(row[0], row[1], bool(row[2]), json.loads(row[3]), row[4], row[5])


def _inserted_id(key: Any) -> int:
    assert key is not None
    return int(key[0])
