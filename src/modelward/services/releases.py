"""Releases: the deployed state of a model in an environment, its history, rollback and drills.

A release is written in one transaction together with the environment alias
(`models:/NAME@ENV`) and a ledger event (`release.create` or `release.rollback`, whose details
carry model, alias and version so the audit can replay aliases). A rollback makes a new release
equal to an earlier one; a drill rolls back and forward again in the first environment of the
path, re-hashes every blob of each restored state and records whether both matched byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.manifest import FileDigest, Manifest
from modelward.core.release import (
    DeployedState,
    DrillReport,
    Release,
    ReleaseDiff,
    diff_releases,
    rollback_release,
)
from modelward.core.roles import Action
from modelward.errors import ConflictError, InputError, NotFoundError
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import GateConfig, load_gate_config
from modelward.services.state_integrity import anchored_append, check_releases
from modelward.services.users import require
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository


@dataclass(frozen=True)
class RollbackResult:
    release: Release
    replaced: Release
    diff: ReleaseDiff

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": release_view(self.release, "rollback"),
            "replaced_release_id": self.replaced.release_id,
            "changed": self.diff.to_dict(),
            "summary": self.diff.summary(),
        }


def release_view(release: Release, kind: str, current: bool = False) -> dict[str, Any]:
    """A release for listings: its record plus kind, and the override marked while current."""
    data = release.to_dict()
    data["kind"] = kind
    data["current"] = current
    data["overridden"] = release.override is not None
    return data


def write_release(
    conn: Connection,
    release: Release,
    kind: str,
    expected_current: str | None,
) -> None:
    """Insert `release` and move the environment alias, if the environment did not move since
    the caller looked (its current release id is still `expected_current`)."""
    gate = GateRepository(conn)
    # every release row of this model and environment must check out against the ledger
    check_releases(conn, release.model, release.environment)
    current = gate.current_release(release.model, release.environment)
    current_id = current.release.release_id if current else None
    if current_id != expected_current:
        raise ConflictError(
            f"models:/{release.model} in {release.environment} moved while this ran "
            f"(its release is now {current_id or 'none'}, expected {expected_current or 'none'}); "
            "nothing was changed: run the command again"
        )
    repo = RegistryRepository(conn)
    record = repo.version(release.model, release.version)
    model_id = repo.require_model_id(release.model)
    gate.add_release(release, record.id, kind)
    repo.set_alias(
        model_id, release.environment, record.id, format_time(release.created_at), release.actor
    )
    anchored_append(
        conn,
        release.actor,
        "release.rollback" if kind == "rollback" else "release.create",
        f"models:/{release.model}@{release.environment}",
        {
            "model": release.model,
            "alias": release.environment,
            "version": release.version,
            "release_id": release.release_id,
            "kind": kind,
            "state_digest": release.state_digest(),
            "decision_digest": release.decision_digest,
            "restores_release_id": release.restores_release_id,
            "override": release.override.to_dict() if release.override else None,
        },
        release.created_at,
        rows=[
            ("gate_releases", release.release_id),
            ("aliases", f"{release.model}@{release.environment}"),
        ],
    )


def new_release_id(conn: Connection) -> str:
    return f"rel-{GateRepository(conn).next_release_number()}"


class ReleaseService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.config: GateConfig = load_gate_config(context)

    def list(self, model: str, environment: str) -> list[dict[str, Any]]:
        self.config.path.index(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            RegistryRepository(conn).require_model_id(model)
            rows = GateRepository(conn).releases(model, environment)
        last = len(rows) - 1
        return [release_view(r.release, r.kind, i == last) for i, r in enumerate(rows)]

    def rollback(
        self, model: str, environment: str, to_release_id: str | None = None
    ) -> RollbackResult:
        """A new release equal to an earlier one (default: the previous different state)."""
        self.config.path.index(environment)
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ROLLBACK, self.config.permissions)
            return self._rollback_in(conn, model, environment, to_release_id, utc_now())

    def _rollback_in(
        self,
        conn: Connection,
        model: str,
        environment: str,
        to_release_id: str | None,
        now: datetime,
    ) -> RollbackResult:
        RegistryRepository(conn).require_model_id(model)
        check_releases(conn, model, environment)  # never roll back to a row that fails
        history = [row.release for row in GateRepository(conn).releases(model, environment)]
        if not history:
            raise NotFoundError(f"models:/{model} has no release in {environment} to roll back")
        current = history[-1]
        release = rollback_release(
            history,
            release_id=new_release_id(conn),
            created_at=max(now, current.created_at),
            actor=self.actor,
            to_release_id=to_release_id,
        )
        write_release(conn, release, "rollback", current.release_id)
        return RollbackResult(release, current, diff_releases(current, release))

    def drill(self, model: str, environment: str) -> dict[str, Any]:
        """Roll back and forward again, checking each restored state byte for byte; recorded."""
        first = self.config.environments[0]
        self.config.path.index(environment)
        if environment != first:
            raise InputError(
                f"rollback drills run in {first} (the first environment of the path), "
                f"not in {environment}"
            )
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ROLLBACK, self.config.permissions)
            now = utc_now()
            back = self._rollback_in(conn, model, environment, None, now)
            observed_back = self.observe(conn, back.release.state)
            forward = self._rollback_in(
                conn, model, environment, back.replaced.release_id, back.release.created_at
            )
            observed_forward = self.observe(conn, forward.release.state)
            report = DrillReport.run(
                at=now,
                before=back.replaced.state,
                rollback_to=back.release.state,
                observed_after_rollback=observed_back,
                observed_after_roll_forward=observed_forward,
                release_id=back.replaced.release_id,
            )
            data = report.to_dict()
            drill_id = GateRepository(conn).add_drill(
                model, environment, report.passed, data, format_time(now), self.actor
            )
            anchored_append(
                conn,
                self.actor,
                "drill.record",
                f"models:/{model}@{environment}",
                {
                    "model": model,
                    "environment": environment,
                    "passed": report.passed,
                    "release_id": back.replaced.release_id,
                    "steps": [s.to_dict() for s in report.steps],
                },
                now,
                rows=[("gate_drills", str(drill_id))],
            )
        return {
            **data,
            "rollback_release_id": back.release.release_id,
            "roll_forward_release_id": forward.release.release_id,
        }

    def observe(self, conn: Connection, state: DeployedState) -> DeployedState:
        """The state as stored now: every blob re-hashed (reads verify their digest too)."""
        record = RegistryRepository(conn).version(state.model, state.version)
        manifest = record.manifest()
        files = tuple(
            FileDigest(f.name, "sha256", self._hash(f.digest), f.size) for f in manifest.files
        )
        observed = Manifest(manifest.model_name, files, manifest.serialization)
        return DeployedState(
            environment=state.environment,
            model=state.model,
            version=record.number,
            bundle_digest="sha256:" + observed.root_digest,
            prompt_templates=self._rehash_map(state.prompt_templates),
            policy_files=self._rehash_map(state.policy_files),
            feature_flags=dict(state.feature_flags),
        )

    def _rehash_map(self, digests: Mapping[str, str]) -> dict[str, str]:
        return {
            name: "sha256:" + self._hash(d.removeprefix("sha256:")) for name, d in digests.items()
        }

    def _hash(self, digest: str) -> str:
        hasher = hashlib.sha256()
        for chunk in self.ctx.blobs.read_chunks(digest):
            hasher.update(chunk)
        return hasher.hexdigest()
