"""Releases: the deployed state of a model in an environment, its history, rollback and drills.

A release is written in one transaction together with the environment alias
(`models:/NAME@ENV`) and a ledger event (`release.create` or `release.rollback`, whose details
carry model, alias and version so the audit can replay aliases). A rollback makes a new release
equal to an earlier one, after re-verifying the state it restores (`release_checks`); a refused
rollback is ledgered (`rollback.refused`). A drill rolls back and forward again in the first
environment of the path, re-hashes every blob of each restored state and records whether both
matched byte for byte; a drill refused by the checks is recorded as failed. `show` and
`pull_release` give one release's full state; `check` reports expired overrides.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
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
    rollback_target,
)
from modelward.core.roles import Action
from modelward.errors import (
    ConflictError,
    DeniedError,
    InputError,
    NotFoundError,
    PathError,
    VerificationError,
)
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import GateConfig, load_gate_config
from modelward.services.release_checks import (
    ExpiredOverride,
    note_expired_overrides,
    state_problems,
)
from modelward.services.state_integrity import anchored_append, check_releases, verify_row
from modelward.services.users import require
from modelward.signing.keys import Verifier
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.registry_repository import RegistryRepository

Problems = list[str]
Expired = list[ExpiredOverride]


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


def release_view(
    release: Release, kind: str, current: bool = False, override_expired: bool = False
) -> dict[str, Any]:
    """A release for listings: its record plus kind, and the override marked while current
    (`override_expired`: it is current and its override's expiry has passed)."""
    data = release.to_dict()
    data["kind"] = kind
    data["current"] = current
    data["overridden"] = release.override is not None
    data["override_expired"] = override_expired
    return data


def _attached_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise VerificationError(f"attached file name {name!r} is not a plain file name")
    return name


def write_release(
    conn: Connection,
    release: Release,
    kind: str,
    expected_current: str | None,
) -> None:
    """Insert `release` and move the environment alias, if the environment did not move since
    the caller looked (its current release id is still `expected_current`)."""
    serialize_ledger(conn)  # the compare-and-swap below must see the latest committed release
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

    @property
    def _registry_key(self) -> Verifier:
        return Verifier(self.ctx.signer.public_key)

    def list(self, model: str, environment: str) -> list[dict[str, Any]]:
        self.config.path.index(environment)
        now = utc_now()
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            RegistryRepository(conn).require_model_id(model)
            rows = GateRepository(conn).releases(model, environment)
        last = len(rows) - 1
        return [
            release_view(
                r.release, r.kind, i == last, i == last and r.release.override_expired(now)
            )
            for i, r in enumerate(rows)
        ]

    def show(self, release_id: str) -> dict[str, Any]:
        """One release's full state (version, bundle, prompt templates, policy files, flags),
        whether it is current, and whether it is an override that has expired while current."""
        now = utc_now()
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            gate = GateRepository(conn)
            row = gate.release_by_id(release_id)
            if row is None:
                raise NotFoundError(f"no release {release_id!r}")
            _check_release_row(conn, release_id)
            release = row.release
            current = gate.current_release(release.model, release.environment)
        is_current = current is not None and current.release.release_id == release.release_id
        view = release_view(
            release, row.kind, is_current, is_current and release.override_expired(now)
        )
        return {**view, "uri": f"models:/{release.model}/{release.version}"}

    def check(self, model: str | None = None) -> Sequence[ExpiredOverride]:
        """Report (and ledger, once each) every environment whose current release is an
        override past its expiry; of one model or of all."""
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            repo = RegistryRepository(conn)
            if model is not None:
                repo.require_model_id(model)
                names = [model]
            else:
                names = [str(m["name"]) for m in repo.list_models()]
            found: Expired = []
            for name in names:
                found += note_expired_overrides(conn, name, now, self.actor)
        return found

    def rollback(
        self,
        model: str,
        environment: str,
        to_release_id: str | None = None,
        *,
        also: Callable[[Connection, RollbackResult], None] | None = None,
    ) -> RollbackResult:
        """A new release equal to an earlier one (default: the previous different state), after
        re-verifying that state; DeniedError with the reasons (and a ledgered refusal) if it
        fails any check. `also` runs in the same transaction once the rollback is written (a
        canary records its verdict there): if it raises, nothing is rolled back."""
        self.config.path.index(environment)
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.ROLLBACK, self.config.permissions, model=model)
            now = utc_now()
            note_expired_overrides(conn, model, now, self.actor)
            target, problems = self._checked_target(conn, model, environment, to_release_id)
            if problems:
                self._record_refusal(conn, model, environment, target, problems, now)
            else:
                result = self._rollback_in(conn, model, environment, target.release_id, now)
                if also is not None:
                    also(conn, result)
                return result
        raise DeniedError(
            f"models:/{model} in {environment} was not rolled back to {target.release_id}: "
            "the state it would restore fails verification",
            problems,
        )

    def _checked_target(
        self, conn: Connection, model: str, environment: str, to_release_id: str | None
    ) -> tuple[Release, Problems]:
        RegistryRepository(conn).require_model_id(model)
        check_releases(conn, model, environment)  # never roll back to a row that fails
        history = [row.release for row in GateRepository(conn).releases(model, environment)]
        if not history:
            raise NotFoundError(f"models:/{model} has no release in {environment} to roll back")
        target = rollback_target(history, to_release_id)
        return target, state_problems(conn, self.ctx.blobs, self._registry_key, target.state)

    def _record_refusal(
        self,
        conn: Connection,
        model: str,
        environment: str,
        target: Release,
        problems: Problems,
        now: datetime,
    ) -> None:
        LedgerRepository(conn).append(
            self.actor,
            "rollback.refused",
            f"models:/{model}@{environment}",
            {
                "model": model,
                "environment": environment,
                "target_release_id": target.release_id,
                "version": target.version,
                "problems": problems[:50],
            },
            now,
        )

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
        """Roll back and forward again, checking each restored state byte for byte; recorded.

        Both states are re-verified first (see `state_problems`); if either fails, nothing is
        restored, the failed drill is recorded (and counts as the latest drill), and
        DeniedError carries the reasons."""
        first = self.config.environments[0]
        self.config.path.index(environment)
        if environment != first:
            raise InputError(
                f"rollback drills run in {first} (the first environment of the path), "
                f"not in {environment}"
            )
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.ROLLBACK, self.config.permissions, model=model)
            now = utc_now()
            note_expired_overrides(conn, model, now, self.actor)
            _target, problems = self._checked_target(conn, model, environment, None)
            current = GateRepository(conn).current_release(model, environment)
            assert current is not None  # _checked_target found a history
            problems += state_problems(
                conn, self.ctx.blobs, self._registry_key, current.release.state
            )
            if problems:
                report = DrillReport.refused(
                    environment=environment,
                    at=now,
                    problems=problems,
                    release_id=current.release.release_id,
                )
                self._record_drill(conn, model, environment, report, now)
            else:
                return self._drill_in(conn, model, environment, now)
        raise DeniedError(
            f"rollback drill of models:/{model} in {environment} FAILED (recorded): a state it "
            "would restore fails verification",
            problems,
        )

    def _drill_in(
        self, conn: Connection, model: str, environment: str, now: datetime
    ) -> dict[str, Any]:
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
        data = self._record_drill(conn, model, environment, report, now)
        return {
            **data,
            "rollback_release_id": back.release.release_id,
            "roll_forward_release_id": forward.release.release_id,
        }

    def _record_drill(
        self, conn: Connection, model: str, environment: str, report: DrillReport, now: datetime
    ) -> dict[str, Any]:
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
                "release_id": report.release_id,
                "steps": [s.to_dict() for s in report.steps],
                "problems": list(report.problems[:50]),
            },
            now,
            rows=[("gate_drills", str(drill_id))],
        )
        return data

    def pull_release(
        self,
        out_dir: Path,
        *,
        release_id: str | None = None,
        environment: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Write a release's full state to `out_dir`, verified: `bundle/` (every file re-hashed,
        the registry signature checked) with `bundle.sig` (its OMS signature), `prompt_templates/`,
        `policy_files/`, `flags.json` and `release.json`. Either `release_id`, or `environment`
        and `model` for the environment's current release."""
        out_dir = Path(out_dir)
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise PathError(f"{out_dir}: exists and is not an empty folder; choose a new one")
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            gate = GateRepository(conn)
            if release_id is not None:
                row = gate.release_by_id(release_id)
                if row is None:
                    raise NotFoundError(f"no release {release_id!r}")
                _check_release_row(conn, release_id)
            else:
                if environment is None or model is None:
                    raise InputError("name a release id, or an environment and a model")
                self.config.path.index(environment)
                RegistryRepository(conn).require_model_id(model)
                row = gate.current_release(model, environment)
                if row is None:
                    raise NotFoundError(f"models:/{model} has no release in {environment}")
            release = row.release
            record = RegistryRepository(conn).version(release.model, release.version)
            problems = state_problems(
                conn, self.ctx.blobs, self._registry_key, release.state, eligibility=False
            )
        if problems:
            raise DeniedError(
                f"release {release.release_id} does not verify; nothing was written", problems
            )
        created = not out_dir.exists()
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            from modelward.services.registry import RegistryService

            pulled = RegistryService(self.ctx, self.actor).pull_to(
                record, out_dir / "bundle", signature_path=out_dir / "bundle.sig"
            )
            for folder, digests in (
                ("prompt_templates", release.state.prompt_templates),
                ("policy_files", release.state.policy_files),
            ):
                for name, digest in digests.items():
                    target = out_dir / folder / _attached_name(name)
                    target.parent.mkdir(exist_ok=True)
                    self.ctx.blobs.copy_to(str(digest).removeprefix("sha256:"), target)
            (out_dir / "flags.json").write_text(
                json.dumps(dict(release.state.feature_flags), indent=2, sort_keys=True) + "\n"
            )
            view = release_view(release, row.kind)
            (out_dir / "release.json").write_text(json.dumps(view, indent=2, sort_keys=True) + "\n")
        except BaseException:
            if created:
                shutil.rmtree(out_dir, ignore_errors=True)
            else:
                for child in list(out_dir.iterdir()):
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
            raise
        return {
            **view,
            "uri": record.uri,
            "out": str(out_dir),
            "bundle": str(out_dir / "bundle"),
            "signature": str(pulled.signature),
            "file_name": pulled.file_name,
            "verified": True,
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


def _check_release_row(conn: Connection, release_id: str) -> None:
    """Refuse a release row that does not check out against the ledger event that wrote it."""
    problem = verify_row(conn, "gate_releases", release_id)
    if problem is not None:
        raise VerificationError(f"{problem}; it is not trusted")
