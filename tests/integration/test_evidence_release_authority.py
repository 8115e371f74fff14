"""A release verifies only if what it names allowed it: `evidence verify` and `audit verify`
fail a release whose decision denied, was for another environment or is missing, and a rollback
whose restored release's own decision does not hold; a real promote-promote-rollback history
verifies.

The forged releases are written with the registry's own keys through `write_release` (what an
insider with the home folder, or a bug, could do): every row and event checks out against the
ledger, only the release's authority is wrong."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.integration.evidence_registry import BuiltRelease, build_release

from modelward.core.release import Release
from modelward.services.audit import AuditService
from modelward.services.context import RegistryContext, open_registry
from modelward.services.evidence_bundle import export_bundle
from modelward.services.evidence_verify import EvidenceTrust, verify_evidence_bundle
from modelward.services.gate import GateService
from modelward.services.release_checks import release_authority_check
from modelward.services.releases import ReleaseService, new_release_id, write_release
from modelward.signing.keys import Verifier, load_public_key
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.registry_repository import RegistryRepository


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    return build_release(tmp_path_factory.mktemp("authority"), evaluations=1)


@dataclass
class Copy:
    built: BuiltRelease
    context: RegistryContext

    def trust(self) -> EvidenceTrust:
        keys = self.context.home / "keys"
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        ledger = load_public_key(keys / "ledger.key.pub")
        assert isinstance(ledger, Ed25519PublicKey)
        return EvidenceTrust(
            registry=Verifier(load_public_key(keys / "registry.key.pub")),
            ledger=ledger,
            uploaders=(("bob", Verifier(load_public_key(self.built.uploader_public))),),
        )

    def failures(self) -> dict[str, str]:
        data = export_bundle(self.context, "models:/llama/1", actor="alice")
        report = verify_evidence_bundle(data, self.trust())
        return {c.link: c.detail for c in report.failures}

    def decision(self, environment: str, allowed: bool) -> str:
        with self.context.database.read() as conn:
            record = RegistryRepository(conn).version("llama", 1)
            for row in GateRepository(conn).decisions(record.id):
                if row.environment == environment and row.allowed == allowed:
                    return row.decision_digest
        raise AssertionError(f"no {allowed} decision for {environment}")

    def current(self, environment: str) -> Release:
        with self.context.database.read() as conn:
            row = GateRepository(conn).current_release("llama", environment)
        assert row is not None
        return row.release

    def forge(
        self,
        environment: str,
        *,
        decision: str | None,
        restores: str | None = None,
        flags: dict[str, bool] | None = None,
        kind: str = "promote",
    ) -> str:
        """A release of llama/1 in `environment`, written with the registry's own keys."""
        current = self.current(environment)
        state = current.state
        if flags is not None:
            from dataclasses import replace

            state = replace(state, feature_flags=flags)
        with self.context.database.transaction() as conn:
            release = Release(
                release_id=new_release_id(conn),
                state=state,
                created_at=datetime.now(UTC),
                actor="rita",
                decision_digest=decision,
                previous_release_id=current.release_id,
                restores_release_id=restores,
            )
            write_release(conn, release, kind, current.release_id)
        return release.release_id

    def audit_problems(self) -> list[str]:
        with self.context.database.read() as conn:
            return release_authority_check(conn)

    def audit_report_problems(self) -> list[str]:
        report = AuditService.for_registry(self.context).verify(
            state_checks=[release_authority_check]
        )
        return list(report.problems)


@pytest.fixture
def copy(built: BuiltRelease, tmp_path: Path) -> Iterator[Copy]:
    home = tmp_path / "home"
    shutil.copytree(built.home, home)
    context = open_registry(home)
    try:
        yield Copy(built, context)
    finally:
        context.close()


def test_the_real_history_with_a_rollback_verifies(copy: Copy) -> None:
    GateService(copy.context, actor="rita").promote(
        "models:/llama/1", "production", flags={"fast": True}
    )
    back = ReleaseService(copy.context, actor="rita").rollback("llama", "production")
    assert back.release.decision_digest is None and back.release.restores_release_id
    assert copy.failures() == {}
    assert copy.audit_problems() == []


def test_a_release_naming_a_deny_decision_fails(copy: Copy) -> None:
    forged = copy.forge("production", decision=copy.decision("production", False), flags={})
    failures = copy.failures()
    assert list(failures) == [f"release {forged}"], failures
    assert "denied" in failures[f"release {forged}"]
    problems = copy.audit_problems()
    assert len(problems) == 1 and forged in problems[0] and "denied" in problems[0]
    assert any(forged in p and "denied" in p for p in copy.audit_report_problems())


def test_a_staging_allow_used_for_production_fails(copy: Copy) -> None:
    forged = copy.forge("production", decision=copy.decision("staging", True), flags={"x": True})
    failures = copy.failures()
    assert list(failures) == [f"release {forged}"], failures
    assert "for staging, not production" in failures[f"release {forged}"]
    problems = copy.audit_problems()
    assert len(problems) == 1 and "for staging, not production" in problems[0]


def test_a_release_with_no_decision_that_restores_nothing_fails(copy: Copy) -> None:
    forged = copy.forge("production", decision=None, flags={"y": True})
    failures = copy.failures()
    assert "names no gate decision" in failures[f"release {forged}"], failures
    assert any("names no gate decision" in p for p in copy.audit_problems())


def test_a_rollback_to_a_release_whose_decision_fails_fails(copy: Copy) -> None:
    denied = copy.forge("production", decision=copy.decision("production", False), flags={})
    GateService(copy.context, actor="rita").promote(
        "models:/llama/1", "production", flags={"z": True}
    )
    back = copy.forge("production", decision=None, restores=denied, flags={}, kind="rollback")
    failures = copy.failures()
    assert set(failures) == {f"release {denied}", f"release {back}"}, failures
    assert f"restores release {denied}" in failures[f"release {back}"]
    assert "denied" in failures[f"release {back}"]
    assert sum(back in p for p in copy.audit_problems()) == 1


def test_a_rollback_to_another_state_or_environment_fails(copy: Copy) -> None:
    staging = copy.current("staging").release_id
    back = copy.forge("production", decision=None, restores=staging, flags={"w": True})
    failures = copy.failures()
    assert list(failures) == [f"release {back}"], failures
    assert f"restores release {staging} of staging" in failures[f"release {back}"]
    assert any(back in p and "of staging" in p for p in copy.audit_problems())
