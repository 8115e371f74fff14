"""Fixtures for the release-gate tests: one CEL engine, and facts a careful team would allow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelward.core.change_class import classify_change
from modelward.forensics.probes import shipped_suite_digests
from modelward.policy.cel_engine import CelEngine
from modelward.policy.facts import (
    Approval,
    CurrentVersion,
    DatasetEligibility,
    DrillOutcome,
    Metric,
    build_facts,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

PREVIOUS_MANIFEST = {
    "model-00001-of-00002.safetensors": "sha256:" + "1" * 64,
    "model-00002-of-00002.safetensors": "sha256:" + "2" * 64,
    "config.json": "sha256:" + "3" * 64,
    "tokenizer.json": "sha256:" + "4" * 64,
    "chat_template.jinja": "sha256:" + "5" * 64,
    "README.md": "sha256:" + "6" * 64,
}
NEW_WEIGHTS_MANIFEST = dict(
    PREVIOUS_MANIFEST, **{"model-00001-of-00002.safetensors": "sha256:" + "7" * 64}
)


def good_inputs() -> dict[str, Any]:
    """Keyword arguments for build_facts that the default production policy allows."""
    return {
        "time": NOW,
        "environment": "production",
        "previous_environment": "canary",
        "model": "support-assistant",
        "version": 7,
        "digest": "sha256:" + "a" * 64,
        "author": "alice",
        "created_at": NOW - timedelta(days=3),
        "deployed_in": ("staging", "canary"),
        "risk_tier": "high",
        "change": classify_change(
            PREVIOUS_MANIFEST, NEW_WEIGHTS_MANIFEST, "weights", "eval-only"
        ).to_fact(),
        "verified_key_ids": ("release-key-1",),
        "registry_signed": True,
        "scan_verdict": "clean",
        "scan_findings": 0,
        "scanned_at": NOW - timedelta(days=3),
        "provenance_present": True,
        "datasets": DatasetEligibility(("datasets:/support-chats/3",), {}),
        "metrics": {
            "accuracy": Metric(0.91, 0.85, True),
            "toxicity_rate": Metric(0.01, 0.02, False),
            "mmlu": Metric(0.7, 0.65, True),
        },
        "current": CurrentVersion(
            model="support-assistant",
            version=6,
            digest="sha256:" + "b" * 64,
            metrics={
                "accuracy": Metric(0.90, 0.85, True),
                "toxicity_rate": Metric(0.011, 0.02, False),
                "mmlu": Metric(0.7, 0.65, True),
            },
        ),
        "approvals": (
            Approval("bob", NOW - timedelta(days=1)),
            Approval("carol", NOW - timedelta(hours=5), sign_off=True),
        ),
        "rollback_drill": DrillOutcome(True, NOW - timedelta(days=10)),
        # a fine-tune of a declared base, with passing forensics and probes against it
        "base_model": BASE_DIGEST,
        "base_released": True,
        "forensics": passing_forensics(),
        "probes": passing_probes(),
    }


BASE_DIGEST = "sha256:" + "c" * 64


def passing_forensics(**overrides: Any) -> dict[str, Any]:
    return {
        "passed": True,
        "base": BASE_DIGEST,
        "claim": None,
        "changed_tensors": 28,
        "added_tensors": 0,
        "removed_tensors": 0,
        "max_relative_change": 0.001,
        "findings": [],
        **overrides,
    }


SHIPPED_SUITE = min(shipped_suite_digests())


def passing_probes(**overrides: Any) -> dict[str, Any]:
    return {
        "passed": True,
        "baseline": BASE_DIGEST,
        "suite": "default",
        "suite_version": 1,
        "suite_digest": SHIPPED_SUITE,
        "suite_accepted": True,
        "accepted_suite_digests": [SHIPPED_SUITE],
        "runs": 1,
        "failed_runs": 0,
        "clean_kl_median": 0.01,
        "trigger_kl_median": 0.02,
        "findings": [],
        **overrides,
    }


@pytest.fixture(scope="session")
def engine() -> CelEngine:
    return CelEngine()


@pytest.fixture
def make_facts() -> Callable[..., dict[str, Any]]:
    """build_facts over the good inputs, with keyword overrides."""

    def make(**overrides: Any) -> dict[str, Any]:
        return build_facts(**{**good_inputs(), **overrides})

    return make
