"""Releases: snapshots, promotion path, rollback targets and errors, diffs and drill checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelward.core.policy import Override
from modelward.core.release import (
    DeployedState,
    DrillReport,
    EnvironmentPath,
    Release,
    diff_releases,
    rollback_release,
    rollback_target,
)
from modelward.errors import InputError, NotFoundError

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _state(version: int, **changes: Any) -> DeployedState:
    base: dict[str, Any] = {
        "environment": "production",
        "model": "assistant",
        "version": version,
        "bundle_digest": f"sha256:{version:064x}",
        "prompt_templates": {"system.jinja": "sha256:" + "a" * 64},
        "policy_files": {"guardrails.yaml": "sha256:" + "b" * 64},
        "feature_flags": {"streaming": True, "max_tokens": 512},
    }
    return DeployedState(**{**base, **changes})


def _release(number: int, state: DeployedState, previous: str | None = None) -> Release:
    return Release(
        release_id=f"r{number}",
        state=state,
        created_at=T0 + timedelta(hours=number),
        actor="rita",
        decision_digest="sha256:" + "d" * 64,
        previous_release_id=previous,
    )


def _history() -> list[Release]:
    return [
        _release(1, _state(1)),
        _release(2, _state(2), "r1"),
        _release(3, _state(2, feature_flags={"streaming": False, "max_tokens": 512}), "r2"),
    ]


def test_release_round_trips_and_state_digest_ignores_metadata() -> None:
    override = Override.create("rita", "incident 7", T0 + timedelta(days=1), T0)
    release = replace(_history()[1], override=override)
    assert Release.from_dict(release.to_dict()) == release
    other = replace(release, release_id="r9", actor="sam", created_at=T0 + timedelta(days=3))
    assert other.state_digest() == release.state_digest()
    assert other.digest() != release.digest()
    tampered = release.to_dict()
    tampered["state"]["version"] = 5
    with pytest.raises(InputError, match="state digest does not match"):
        Release.from_dict(tampered)


def test_default_rollback_goes_to_previous_different_state() -> None:
    history = _history()
    assert rollback_target(history).release_id == "r2"
    new = rollback_release(
        history, release_id="r4", created_at=T0 + timedelta(hours=4), actor="rita"
    )
    assert new.state == history[1].state
    assert new.state_digest() == history[1].state_digest()
    assert (new.previous_release_id, new.restores_release_id) == ("r3", "r2")
    # Rolling back again returns to the state before the rollback (r3), not further.
    assert rollback_target([*history, new]).release_id == "r3"


def test_rollback_to_a_named_release() -> None:
    history = _history()
    assert rollback_target(history, "r1").version == 1
    with pytest.raises(NotFoundError, match="no earlier release 'r7'"):
        rollback_target(history, "r7")
    with pytest.raises(InputError, match="is the current release"):
        rollback_target(history, "r3")


def test_rollback_with_no_earlier_release_is_refused() -> None:
    with pytest.raises(NotFoundError, match="no release to roll back from"):
        rollback_target([])
    with pytest.raises(
        NotFoundError, match="no earlier release of models:/assistant in production"
    ):
        rollback_target(_history()[:1])
    same = [_release(1, _state(1)), _release(2, _state(1), "r1")]
    with pytest.raises(NotFoundError, match="no earlier release"):
        rollback_target(same)
    with pytest.raises(InputError, match="same state"):
        rollback_target(same, "r1")


def test_history_must_be_one_model_in_one_environment() -> None:
    mixed = [_release(1, _state(1)), _release(2, _state(2, environment="canary"))]
    with pytest.raises(InputError, match="one model in one environment"):
        rollback_target(mixed)


def test_diff_releases_reports_every_part() -> None:
    a = _release(1, _state(1))
    b = _release(
        2,
        _state(
            2,
            prompt_templates={"system.jinja": "sha256:" + "c" * 64, "tools.jinja": "sha256:1"},
            policy_files={},
            feature_flags={"streaming": True, "max_tokens": 1024},
        ),
    )
    diff = diff_releases(a, b)
    assert not diff.empty
    assert diff.to_dict() == {
        "version": [1, 2],
        "bundle_digest": [a.bundle_digest, b.bundle_digest],
        "prompt_templates": {"added": ["tools.jinja"], "removed": [], "changed": ["system.jinja"]},
        "policy_files": {"added": [], "removed": ["guardrails.yaml"], "changed": []},
        "feature_flags": {"added": [], "removed": [], "changed": ["max_tokens"]},
    }
    assert "feature flag changed: max_tokens" in diff.summary()
    assert diff_releases(a, a).empty


def test_drill_passes_only_when_each_restored_state_is_exact() -> None:
    before, earlier = _state(2), _state(1)
    report = DrillReport.run(
        at=T0,
        before=before,
        rollback_to=earlier,
        observed_after_rollback=earlier,
        observed_after_roll_forward=before,
    )
    assert report.passed
    assert DrillReport.from_dict(report.to_dict()) == report
    drifted = _state(2, prompt_templates={"system.jinja": "sha256:" + "e" * 64})
    failed = DrillReport.run(
        at=T0,
        before=before,
        rollback_to=earlier,
        observed_after_rollback=earlier,
        observed_after_roll_forward=drifted,
    )
    assert not failed.passed
    step = failed.steps[1]
    assert step.name == "roll-forward" and not step.passed
    assert step.differences == ("prompt template changed: system.jinja",)


def test_feature_flag_value_types_matter() -> None:
    assert (
        _state(1, feature_flags={"x": 1}).digest() != _state(1, feature_flags={"x": True}).digest()
    )


def test_environment_path() -> None:
    path = EnvironmentPath()
    assert path.previous("staging") is None
    assert path.previous("production") == "canary"
    assert path.next("canary") == "production" and path.next("production") is None
    with pytest.raises(NotFoundError, match="unknown environment 'qa'"):
        path.index("qa")
    custom = EnvironmentPath.from_dict({"environments": ["dev", "prod"]})
    assert custom.previous("prod") == "dev"
    with pytest.raises(InputError, match="appears twice"):
        EnvironmentPath(("a", "a"))
    with pytest.raises(InputError, match="at least one"):
        EnvironmentPath(())


def test_state_validation() -> None:
    with pytest.raises(InputError, match="positive integer"):
        _state(0)
    with pytest.raises(InputError, match="bundle digest"):
        _state(1, bundle_digest="")
    with pytest.raises(InputError, match="time zone"):
        Release("r1", _state(1), datetime(2025, 1, 1), "rita")
