"""The release gate's use cases: environment policies, approvals, promote, override, decisions.

`promote` gathers the candidate's facts, evaluates the target environment's policy, keeps the
decision as a DSSE-signed SLSA VSA (registry key) with a ledger event, and on allow writes a new
release (version + prompt templates + policy files + feature flags) and moves the environment
alias, in one transaction that fails with ConflictError, changing nothing, if the environment
moved since its facts were read. `override` does the same despite a deny, recording who, why and
until when. A promotion carries the source release's (the previous environment's) prompt
templates, policy files and flags forward unless told otherwise, and is refused while the source
environment's current release is an expired override. Argument parsing and rendering belong to
the CLI.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from modelward.core.canonical import canonical_json
from modelward.core.names import parse_uri
from modelward.core.policy import Decision, Override, Policy, apply_override, evaluate
from modelward.core.principal import bound_principal
from modelward.core.release import CarriedState, DeployedState, FlagValue, Release, carry_forward
from modelward.core.roles import Action, check_approval
from modelward.errors import (
    DeniedError,
    InputError,
    NotFoundError,
    PathError,
    StorageError,
    VerificationError,
)
from modelward.policy.cel_engine import CelEngine
from modelward.policy.loader import default_policy_text, parse_policy
from modelward.policy.vsa import decision_from_statement, decision_statement, sign_statement
from modelward.services.approval_attestation import (
    ATTESTATION_FIELD,
    approval_predicate,
    sign_approval,
)
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import GateConfig, load_gate_config
from modelward.services.gate_facts import gather_facts
from modelward.services.registry import RegistryService, resolve_in
from modelward.services.release_checks import note_expired_overrides
from modelward.services.releases import new_release_id, release_view, write_release
from modelward.services.state_integrity import anchored_append, check_current_policy, verify_row
from modelward.services.users import require
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.registry_repository import RegistryRepository

MAX_ATTACHED_FILE = 16 * 1024 * 1024
MAX_COMMENT = 4096
_UNSET = object()


@dataclass(frozen=True)
class PromoteResult:
    uri: str
    decision: Decision
    release: Release | None
    facts: dict[str, Any]
    decision_digest: str
    carried: CarriedState | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "carried": self.carried.to_dict() if self.carried else None,
            "uri": self.uri,
            "allowed": self.decision.allowed,
            "decision": self.decision.to_dict(),
            "decision_digest": self.decision_digest,
            "release": release_view(
                self.release, "override" if self.release.override else "promote", True
            )
            if self.release
            else None,
            "facts": self.facts,
        }


def policy_from_text(
    text: str | bytes, environment: str, engine: CelEngine | None = None
) -> Policy:
    return parse_policy(text, environment, engine or CelEngine())


def test_policy(text: str | bytes, facts: Any) -> Decision:
    """Evaluate a policy file on a facts document, for policy authors; nothing is stored."""
    if not isinstance(facts, Mapping):
        raise InputError("the facts must be a JSON object")
    engine = CelEngine()
    return evaluate(policy_from_text(text, "test", engine), facts, engine)


def parse_flag(text: str) -> tuple[str, FlagValue]:
    """`KEY=VALUE`; VALUE is read as JSON (true, 3, 0.5, null, "x") and otherwise as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"feature flag {text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, (dict, list)):
        value = raw
    return key.strip(), value


class GateService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.config: GateConfig = load_gate_config(context)
        self.engine = CelEngine()

    # -- policies ---------------------------------------------------------------------------

    def set_policy(self, environment: str, text: bytes) -> dict[str, Any]:
        self.config.path.index(environment)
        policy = policy_from_text(text, environment, self.engine)
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.SET_POLICY, self.config.permissions)
            decoded = text.decode("utf-8")
            policy_id = GateRepository(conn).add_policy(
                environment, policy.digest, decoded, format_time(now), self.actor
            )
            anchored_append(
                conn,
                self.actor,
                "policy.set",
                f"policy:{environment}",
                {"environment": environment, "digest": policy.digest, "rules": len(policy.rules)},
                now,
                rows=[("gate_policies", str(policy_id))],
            )
        return {"environment": environment, "digest": policy.digest, "rules": len(policy.rules)}

    def show_policy(self, environment: str) -> dict[str, Any]:
        self.config.path.index(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            row = GateRepository(conn).current_policy(environment)
            check_current_policy(conn, environment)  # a row that fails refuses: fail closed
        text, source = (row.text, "set") if row else (self._default_text(environment), "default")
        policy = policy_from_text(text, environment, self.engine)
        return {
            "environment": environment,
            "source": source,
            "digest": policy.digest,
            "set_at": row.created_at if row else None,
            "set_by": row.created_by if row else None,
            "text": text,
        }

    def _default_text(self, environment: str) -> str:
        try:
            return default_policy_text(environment).decode("utf-8")
        except InputError:
            # A configured environment without a shipped default gets production's controls.
            return default_policy_text("production").decode("utf-8")

    def _policy(self, environment: str) -> Policy:
        return policy_from_text(self.show_policy(environment)["text"], environment, self.engine)

    # -- approvals --------------------------------------------------------------------------

    def approve(
        self, uri: str, environment: str, comment: str = "", sign_off: bool = False
    ) -> dict[str, Any]:
        self.config.path.index(environment)
        if len(comment) > MAX_COMMENT:
            raise InputError(f"the comment is longer than {MAX_COMMENT} characters")
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.APPROVE, self.config.permissions, model=_model_of(uri))
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            check_approval(self.actor, record.created_by)
            approval_id = GateRepository(conn).add_approval(
                record.id, environment, self.actor, comment, sign_off, format_time(now)
            )
            # the statement names its own event: this transaction holds the ledger's write lock
            predicate = approval_predicate(
                approval_id=approval_id,
                uri=record.uri,
                environment=environment,
                reviewer=self.actor,
                principal=bound_principal(),
                comment=comment,
                sign_off=sign_off,
                at=now,
                origin=self.ctx.origin,
                seq=LedgerRepository(conn).size(),
            )
            envelope = sign_approval(self.ctx.signer, record.model, record.root_digest, predicate)
            event = anchored_append(
                conn,
                self.actor,
                "approval.add",
                record.uri,
                {
                    "model": record.model,
                    "version": record.number,
                    "environment": environment,
                    "reviewer": self.actor,
                    "sign_off": sign_off,
                    "comment": comment,
                    ATTESTATION_FIELD: envelope.to_dict(),
                },
                now,
                rows=[("gate_approvals", str(approval_id))],
            )
            if event.seq != predicate["ledger"]["seq"]:
                raise StorageError("the ledger moved during an approval; nothing was changed")
        return {
            "uri": record.uri,
            "environment": environment,
            "reviewer": self.actor,
            "sign_off": sign_off,
            "comment": comment,
            "at": format_time(now),
            "ledger_seq": event.seq,
            "signed": True,
        }

    # -- promotion --------------------------------------------------------------------------

    def promote(
        self,
        uri: str,
        environment: str,
        *,
        flags: Mapping[str, FlagValue] | None = None,
        prompt_templates: list[Path] | None = None,
        policy_files: list[Path] | None = None,
        risk_tier: str | None = None,
        expected_release_id: object = _UNSET,
        override: tuple[str, datetime] | None = None,
        carry: bool = True,
    ) -> PromoteResult:
        """Decide, record the decision and, on allow, release. `override` is (justification,
        expiry). `expected_release_id` (a release id, or None for "no release yet") makes the
        promotion conditional on the environment's current release.

        The prompt templates, policy files and flags of the source release (the previous
        environment's current release, when it deploys the same version) are carried forward
        unless `carry` is False; each of `prompt_templates`, `policy_files` and `flags` that is
        given (not None, even if empty) replaces the source's. Promotion from an environment whose
        current release is an expired override is refused (DeniedError) until that environment
        is promoted to normally or rolled back."""
        self.config.path.index(environment)
        action = Action.OVERRIDE if override else Action.PROMOTE
        templates = (
            None
            if prompt_templates is None
            else self._store_files(prompt_templates, "prompt template")
        )
        policies = None if policy_files is None else self._store_files(policy_files, "policy file")
        policy = self._policy(environment)
        now = utc_now()
        source_environment = self.config.path.previous(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, action, self.config.permissions, model=_model_of(uri))
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            current_releases = GateRepository(conn).current_releases_of_model(record.model)
            source = current_releases.get(source_environment) if source_environment else None
            blocked = source is not None and source.override_expired(now)
            gathered = (
                None
                if blocked
                else gather_facts(
                    self.ctx,
                    conn,
                    record,
                    environment,
                    self.config.path,
                    risk_tier=risk_tier,
                    now=now,
                )
            )
        if blocked or gathered is None:
            self._refuse_from_expired(record.model, environment, now)
        assert gathered is not None
        carried = carry_forward(
            source,
            record.number,
            prompt_templates=templates,
            policy_files=policies,
            feature_flags=None if flags is None else dict(flags),
            carry=carry,
        )
        self._check_carried(carried)
        seen = gathered.current.release_id if gathered.current else None
        decision = evaluate(policy, gathered.facts, self.engine, environment)
        if override is not None:
            justification, expires_at = override
            granted = Override.create(
                self.actor, justification, expires_at, now, self.config.max_override
            )
            decision = apply_override(decision, granted, now)
        statement = decision_statement(
            decision,
            resource_uri=record.uri,
            subject_digest="sha256:" + record.root_digest,
            time_verified=now,
            input_attestations=gathered.inputs,
        )
        envelope = sign_statement(statement, self.ctx.signer.sign, self.ctx.signer.keyid)
        decision_digest = decision.digest()
        release = None
        if decision.allowed:
            state = DeployedState(
                environment=environment,
                model=record.model,
                version=record.number,
                bundle_digest="sha256:" + record.root_digest,
                prompt_templates=carried.prompt_templates,
                policy_files=carried.policy_files,
                feature_flags=carried.feature_flags,
            )
            release = Release(
                release_id="pending",
                state=state,
                created_at=now,
                actor=self.actor,
                decision_digest=decision_digest,
                override=decision.override,
                previous_release_id=seen,
            )
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, action, self.config.permissions, model=_model_of(uri))
            note_expired_overrides(conn, record.model, now, self.actor)
            decision_id = GateRepository(conn).add_decision(
                version_id=record.id,
                environment=environment,
                allowed=decision.allowed,
                overridden=decision.overridden,
                policy_digest=decision.policy_digest,
                facts_digest=decision.facts_digest,
                decision_digest=decision_digest,
                envelope=json.dumps(envelope.to_dict(), sort_keys=True),
                facts=canonical_json(gathered.facts).decode("utf-8"),
                at=format_time(now),
                by=self.actor,
            )
            anchored_append(
                conn,
                self.actor,
                "gate.override" if decision.overridden else "gate.decision",
                record.uri,
                {
                    "model": record.model,
                    "version": record.number,
                    "environment": environment,
                    "allowed": decision.allowed,
                    "failed": list(decision.failed),
                    "policy_digest": decision.policy_digest,
                    "facts_digest": decision.facts_digest,
                    "decision_digest": decision_digest,
                    "override": decision.override.to_dict() if decision.override else None,
                },
                now,
                rows=[("gate_decisions", str(decision_id))],
            )
            if release is not None:
                expected = seen if expected_release_id is _UNSET else expected_release_id
                if expected is not None and not isinstance(expected, str):
                    raise InputError("the expected release must be a release id or None")
                release = replace(release, release_id=new_release_id(conn))
                kind = "override" if decision.overridden else "promote"
                write_release(conn, release, kind, expected)
        return PromoteResult(
            record.uri, decision, release, gathered.facts, decision_digest, carried
        )

    def _refuse_from_expired(self, model: str, environment: str, now: datetime) -> None:
        """Ledger the expired override (once) and refuse the promotion out of its environment."""
        with self.ctx.database.transaction() as conn:
            expired = note_expired_overrides(conn, model, now, self.actor)
        source = self.config.path.previous(environment)
        reasons = [e.message() for e in expired if e.environment == source]
        raise DeniedError(
            f"models:/{model} cannot be promoted from {source} to {environment}: {source}'s "
            "current release is an override that has expired",
            reasons or [f"override expired in {source}"],
        )

    def _check_carried(self, carried: CarriedState) -> None:
        """Re-hash the templates and policy files taken over from the source release."""
        problems = []
        for what, part in (
            ("prompt template", "prompt_templates"),
            ("policy file", "policy_files"),
        ):
            if part not in carried.carried:
                continue
            for name, digest in getattr(carried, part).items():
                hex_digest = str(digest).removeprefix("sha256:")
                try:
                    for _ in self.ctx.blobs.read_chunks(hex_digest):
                        pass
                except (VerificationError, NotFoundError) as exc:
                    problems.append(f"carried {what} {name}: {exc}")
        if problems:
            raise DeniedError(
                f"release {carried.source_release_id}'s files cannot be carried forward", problems
            )

    def facts(self, uri: str, environment: str, risk_tier: str | None = None) -> dict[str, Any]:
        """The facts a promotion of `uri` to `environment` would see now; nothing is stored."""
        self.config.path.index(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW, self.config.permissions)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            gathered = gather_facts(
                self.ctx,
                conn,
                record,
                environment,
                self.config.path,
                risk_tier=risk_tier,
                now=utc_now(),
            )
        return gathered.facts

    def _store_files(self, paths: list[Path], what: str) -> dict[str, str]:
        stored: dict[str, str] = {}
        for path in paths:
            path = Path(path)
            if not path.is_file():
                raise PathError(f"{path}: the {what} is not a readable file")
            if path.stat().st_size > MAX_ATTACHED_FILE:
                raise InputError(f"{path}: the {what} is larger than 16 MiB")
            if path.name in stored:
                raise InputError(f"two {what}s are named {path.name!r}")
            # scanned like a bundle (a template is rendered by the serving stack): what is stored
            # is the staged copy that was scanned
            stored[path.name] = RegistryService(self.ctx, self.actor).store_scanned_file(path)
        return stored

    # -- decisions --------------------------------------------------------------------------

    def decisions(self, uri: str) -> list[dict[str, Any]]:
        from cryptography.hazmat.primitives import serialization

        key = self.ctx.signer.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            rows = GateRepository(conn).decisions(record.id)
            problems = {row.id: verify_row(conn, "gate_decisions", str(row.id)) for row in rows}
        out = []
        for row in rows:
            signed, read = _read_decision(row.envelope, key)
            decoded = json.loads(read)
            out.append(
                {
                    "uri": record.uri,
                    "environment": row.environment,
                    "allowed": row.allowed,
                    "overridden": row.overridden,
                    "failed": decoded["failed"],
                    "override": decoded["override"],
                    "policy_digest": row.policy_digest,
                    "facts_digest": row.facts_digest,
                    "decision_digest": row.decision_digest,
                    "signature_verified": signed,
                    # a row inserted or edited in the database is listed, never trusted
                    "trusted": signed and problems[row.id] is None,
                    "problem": problems[row.id],
                    "at": row.created_at,
                    "by": row.created_by,
                }
            )
        return out


def _model_of(uri: str) -> str | None:
    """The model a URI names (None for a bare digest: then only registry-wide roles count)."""
    return parse_uri(uri).name


@functools.lru_cache(maxsize=4096)
def _read_decision(envelope_text: str, registry_key_der: bytes) -> tuple[bool, str]:
    """(whether the registry key signed the envelope, the decision's failed rules and override
    as JSON). A pure function of the envelope's bytes and the key, so a listing that shows the
    same stored decisions again does not parse and verify them again."""
    from cryptography.hazmat.primitives import serialization

    from modelward.core.dsse import Envelope
    from modelward.core.intoto import Statement
    from modelward.signing.keys import Verifier

    public_key = serialization.load_der_public_key(registry_key_der)
    verifier = Verifier(public_key)  # type: ignore[arg-type]
    envelope = Envelope.from_dict(json.loads(envelope_text))
    signed = any(verifier.is_valid(s.sig, envelope.pae()) for s in envelope.signatures)
    decision = decision_from_statement(Statement.from_bytes(envelope.payload))
    read = {
        "failed": [
            {
                "rule_id": r.rule_id,
                "severity": r.severity,
                "message": r.message,
                "detail": r.detail,
            }
            for r in decision.failed_results()
        ],
        "override": decision.override.to_dict() if decision.override else None,
    }
    return signed, json.dumps(read)
