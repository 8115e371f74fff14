"""Releases: the full deployed state of one model in one environment, and how to go back.

A `Release` snapshots version, bundle root digest, prompt templates, policy files and feature flags
(by digest), with who made it, when, under which decision and override. `state_digest` covers only
the deployed state, so a rollback release equals its target in state while keeping its own
history. `rollback_target` picks the release to return to, `rollback_release` builds the new one,
`diff_releases` says what changed, and `compare_states` / `DrillReport` check a rollback drill
byte-for-byte by digests (a drill refused before restoring keeps its reasons in `problems`).
`carry_forward` picks what a promotion takes over from the release it promotes from.
`EnvironmentPath` is the ordered promotion path. Nothing here stores
releases or touches deployed files; the caller observes the state and passes it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from modelward.core.canonical import canonical_digest
from modelward.core.policy import Override, format_timestamp, parse_timestamp
from modelward.errors import InputError, NotFoundError

DEFAULT_ENVIRONMENTS = ("staging", "canary", "production")

FlagValue = bool | int | float | str | None


# --------------------------------------------------------------------------- promotion path


@dataclass(frozen=True)
class EnvironmentPath:
    """An ordered promotion path, e.g. staging → canary → production."""

    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS

    def __post_init__(self) -> None:
        if not self.environments:
            raise InputError("a promotion path needs at least one environment")
        for name in self.environments:
            if not isinstance(name, str) or not name or not name.replace("-", "").isalnum():
                raise InputError(f"environment name {name!r} must be letters, digits and '-' only")
        if len(set(self.environments)) != len(self.environments):
            raise InputError("an environment appears twice in the promotion path")

    def index(self, environment: str) -> int:
        try:
            return self.environments.index(environment)
        except ValueError:
            raise NotFoundError(
                f"unknown environment {environment!r}; the promotion path is "
                f"{' → '.join(self.environments)}"
            ) from None

    def previous(self, environment: str) -> str | None:
        """The environment a version must pass before `environment` (None for the first)."""
        position = self.index(environment)
        return self.environments[position - 1] if position else None

    def next(self, environment: str) -> str | None:
        position = self.index(environment)
        following = self.environments[position + 1 : position + 2]
        return following[0] if following else None

    def to_dict(self) -> dict[str, Any]:
        return {"environments": list(self.environments)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvironmentPath:
        environments = data.get("environments")
        if not isinstance(environments, list):
            raise InputError("'environments' must be a list of names")
        return cls(tuple(environments))


# --------------------------------------------------------------------------- state and release


def _frozen_map(value: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{what} must be a mapping")
    for key in value:
        if not isinstance(key, str) or not key:
            raise InputError(f"{what} keys must be non-empty strings")
    return MappingProxyType(dict(sorted(value.items())))


@dataclass(frozen=True)
class DeployedState:
    """What is deployed: compared by digests, so equal states are byte-for-byte equal."""

    environment: str
    model: str
    version: int
    bundle_digest: str
    prompt_templates: Mapping[str, str] = field(default_factory=dict)
    policy_files: Mapping[str, str] = field(default_factory=dict)
    feature_flags: Mapping[str, FlagValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, text in (
            ("environment", self.environment),
            ("model", self.model),
            ("bundle digest", self.bundle_digest),
        ):
            if not isinstance(text, str) or not text:
                raise InputError(f"a release needs a {what}")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise InputError(f"release version must be a positive integer, not {self.version!r}")
        object.__setattr__(
            self, "prompt_templates", _frozen_map(self.prompt_templates, "prompt templates")
        )
        object.__setattr__(self, "policy_files", _frozen_map(self.policy_files, "policy files"))
        object.__setattr__(self, "feature_flags", _frozen_map(self.feature_flags, "feature flags"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "model": self.model,
            "version": self.version,
            "bundle_digest": self.bundle_digest,
            "prompt_templates": dict(self.prompt_templates),
            "policy_files": dict(self.policy_files),
            "feature_flags": dict(self.feature_flags),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeployedState:
        return cls(
            environment=data["environment"],
            model=data["model"],
            version=data["version"],
            bundle_digest=data["bundle_digest"],
            prompt_templates=data.get("prompt_templates", {}),
            policy_files=data.get("policy_files", {}),
            feature_flags=data.get("feature_flags", {}),
        )

    def digest(self) -> str:
        return "sha256:" + canonical_digest(self.to_dict())


@dataclass(frozen=True)
class Release:
    """One release: a deployed state plus who, when, why (decision, override) and what it followed.

    `restores_release_id` is set on a rollback (or roll-forward) release: the release it copies.
    """

    release_id: str
    state: DeployedState
    created_at: datetime
    actor: str
    decision_digest: str | None = None
    override: Override | None = None
    previous_release_id: str | None = None
    restores_release_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.release_id, str) or not self.release_id:
            raise InputError("a release needs an id")
        if not isinstance(self.actor, str) or not self.actor:
            raise InputError("a release needs the acting user")
        if self.created_at.tzinfo is None:
            raise InputError("a release time must carry a time zone")

    @property
    def environment(self) -> str:
        return self.state.environment

    @property
    def model(self) -> str:
        return self.state.model

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def bundle_digest(self) -> str:
        return self.state.bundle_digest

    def state_digest(self) -> str:
        return self.state.digest()

    def override_expired(self, now: datetime) -> bool:
        """Whether this release was made by an override whose expiry has passed. While such a
        release is current, its environment reports "override expired" and nothing is promoted
        from it until a normal promotion or a rollback there replaces it."""
        return self.override is not None and now >= self.override.expires_at

    def digest(self) -> str:
        """Content digest of the whole record (state, metadata and links)."""
        return "sha256:" + canonical_digest(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "state": self.state.to_dict(),
            "state_digest": self.state_digest(),
            "created_at": format_timestamp(self.created_at),
            "actor": self.actor,
            "decision_digest": self.decision_digest,
            "override": self.override.to_dict() if self.override else None,
            "previous_release_id": self.previous_release_id,
            "restores_release_id": self.restores_release_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Release:
        state = DeployedState.from_dict(data["state"])
        recorded = data.get("state_digest")
        if recorded is not None and recorded != state.digest():
            raise InputError(f"release {data.get('release_id')!r}: state digest does not match")
        raw_override = data.get("override")
        return cls(
            release_id=data["release_id"],
            state=state,
            created_at=parse_timestamp(data["created_at"], "release created_at"),
            actor=data["actor"],
            decision_digest=data.get("decision_digest"),
            override=Override.from_dict(raw_override) if raw_override else None,
            previous_release_id=data.get("previous_release_id"),
            restores_release_id=data.get("restores_release_id"),
        )


# --------------------------------------------------------------------------- rollback


def _check_history(history: Sequence[Release]) -> None:
    if not history:
        raise NotFoundError("there is no release to roll back from")
    first = history[0]
    for release in history:
        if (release.environment, release.model) != (first.environment, first.model):
            raise InputError("a release history must be of one model in one environment")
    ids = [release.release_id for release in history]
    if len(set(ids)) != len(ids):
        raise InputError("a release id appears twice in the release history")


def rollback_target(history: Sequence[Release], to_release_id: str | None = None) -> Release:
    """The release to return to. `history` is one model's releases in one environment, oldest first.

    By default: the most recent earlier release whose state differs from the current one. With
    `to_release_id`: that release, which must be earlier and differ from the current state.
    NotFoundError when there is no earlier release (or no such id); InputError when the target is
    already the deployed state.
    """
    _check_history(history)
    current = history[-1]
    where = f"models:/{current.model} in {current.environment}"
    if to_release_id is None:
        for release in reversed(history[:-1]):
            if release.state_digest() != current.state_digest():
                return release
        raise NotFoundError(
            f"no earlier release of {where} to roll back to "
            f"(the current release {current.release_id} is the only deployed state)"
        )
    for release in history[:-1]:
        if release.release_id == to_release_id:
            if release.state_digest() == current.state_digest():
                raise InputError(
                    f"release {to_release_id} has the same state as the current release "
                    f"{current.release_id}; nothing to roll back"
                )
            return release
    if to_release_id == current.release_id:
        raise InputError(f"release {to_release_id} is the current release of {where}")
    raise NotFoundError(f"no earlier release {to_release_id!r} of {where}")


def rollback_release(
    history: Sequence[Release],
    *,
    release_id: str,
    created_at: datetime,
    actor: str,
    to_release_id: str | None = None,
    decision_digest: str | None = None,
) -> Release:
    """A new release whose state equals the rollback target's, linked to the current release."""
    target = rollback_target(history, to_release_id)
    current = history[-1]
    if created_at < current.created_at:
        raise InputError("a rollback cannot be dated before the current release")
    return Release(
        release_id=release_id,
        state=target.state,
        created_at=created_at,
        actor=actor,
        decision_digest=decision_digest,
        previous_release_id=current.release_id,
        restores_release_id=target.release_id,
    )


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class MapChange:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


def diff_maps(before: Mapping[str, Any], after: Mapping[str, Any]) -> MapChange:
    """Keys added, removed and changed (by canonical value) between two maps, sorted."""
    return MapChange(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        changed=tuple(
            sorted(
                key
                for key in set(before) & set(after)
                if canonical_digest(before[key]) != canonical_digest(after[key])
            )
        ),
    )


@dataclass(frozen=True)
class ReleaseDiff:
    """What differs from state `a` to state `b`."""

    version: tuple[int, int] | None
    bundle_digest: tuple[str, str] | None
    prompt_templates: MapChange
    policy_files: MapChange
    feature_flags: MapChange

    @property
    def empty(self) -> bool:
        return (
            self.version is None
            and self.bundle_digest is None
            and self.prompt_templates.empty
            and self.policy_files.empty
            and self.feature_flags.empty
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": list(self.version) if self.version else None,
            "bundle_digest": list(self.bundle_digest) if self.bundle_digest else None,
            "prompt_templates": self.prompt_templates.to_dict(),
            "policy_files": self.policy_files.to_dict(),
            "feature_flags": self.feature_flags.to_dict(),
        }

    def summary(self) -> list[str]:
        """Human lines, one per difference."""
        lines = []
        if self.version:
            lines.append(f"version {self.version[0]} → {self.version[1]}")
        if self.bundle_digest:
            lines.append(f"bundle {self.bundle_digest[0]} → {self.bundle_digest[1]}")
        for label, change in (
            ("prompt template", self.prompt_templates),
            ("policy file", self.policy_files),
            ("feature flag", self.feature_flags),
        ):
            lines += [f"{label} added: {name}" for name in change.added]
            lines += [f"{label} removed: {name}" for name in change.removed]
            lines += [f"{label} changed: {name}" for name in change.changed]
        return lines


def diff_states(a: DeployedState, b: DeployedState) -> ReleaseDiff:
    return ReleaseDiff(
        version=(a.version, b.version) if a.version != b.version else None,
        bundle_digest=(
            (a.bundle_digest, b.bundle_digest) if a.bundle_digest != b.bundle_digest else None
        ),
        prompt_templates=diff_maps(a.prompt_templates, b.prompt_templates),
        policy_files=diff_maps(a.policy_files, b.policy_files),
        feature_flags=diff_maps(a.feature_flags, b.feature_flags),
    )


def diff_releases(a: Release, b: Release) -> ReleaseDiff:
    """What changes when going from release `a` to release `b`."""
    return diff_states(a.state, b.state)


# --------------------------------------------------------------------------- drill


@dataclass(frozen=True)
class DrillStep:
    """One restore in a drill: the state expected and whether the observed one matched it."""

    name: str
    expected_digest: str
    observed_digest: str
    differences: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.expected_digest == self.observed_digest and not self.differences

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DrillStep:
        return cls(
            name=data["name"],
            expected_digest=data["expected_digest"],
            observed_digest=data["observed_digest"],
            differences=tuple(data.get("differences", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "expected_digest": self.expected_digest,
            "observed_digest": self.observed_digest,
            "differences": list(self.differences),
        }


def compare_states(name: str, expected: DeployedState, observed: DeployedState) -> DrillStep:
    """Check an observed (re-hashed) deployed state is exactly the expected one."""
    return DrillStep(
        name=name,
        expected_digest=expected.digest(),
        observed_digest=observed.digest(),
        differences=tuple(diff_states(expected, observed).summary())
        + (("environment differs",) if expected.environment != observed.environment else ()),
    )


@dataclass(frozen=True)
class DrillReport:
    """A rollback drill: roll back to the earlier state, then forward again, checking both."""

    environment: str
    at: datetime
    steps: tuple[DrillStep, ...]
    release_id: str | None = None
    problems: tuple[str, ...] = ()  # why the drill was refused before restoring anything

    @property
    def passed(self) -> bool:
        return bool(self.steps) and not self.problems and all(step.passed for step in self.steps)

    @classmethod
    def refused(
        cls, *, environment: str, at: datetime, problems: Sequence[str], release_id: str | None
    ) -> DrillReport:
        """A drill that did not restore anything because a state failed its checks."""
        if not problems:
            raise InputError("a refused drill needs at least one reason")
        return cls(environment, at, (), release_id, tuple(problems))

    @classmethod
    def run(
        cls,
        *,
        at: datetime,
        before: DeployedState,
        rollback_to: DeployedState,
        observed_after_rollback: DeployedState,
        observed_after_roll_forward: DeployedState,
        release_id: str | None = None,
    ) -> DrillReport:
        """Judge a drill from the states the caller observed after each restore."""
        return cls(
            environment=before.environment,
            at=at,
            steps=(
                compare_states("rollback", rollback_to, observed_after_rollback),
                compare_states("roll-forward", before, observed_after_roll_forward),
            ),
            release_id=release_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "at": format_timestamp(self.at),
            "passed": self.passed,
            "release_id": self.release_id,
            "steps": [step.to_dict() for step in self.steps],
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DrillReport:
        return cls(
            environment=data["environment"],
            at=parse_timestamp(data["at"], "drill time"),
            steps=tuple(DrillStep.from_dict(step) for step in data["steps"]),
            release_id=data.get("release_id"),
            problems=tuple(data.get("problems", ())),
        )


# --------------------------------------------------------------------------- carry forward


@dataclass(frozen=True)
class CarriedState:
    """What a promotion takes over from its source release (the previous environment's current
    release): each part is carried unless the promotion gave its own or carrying is off."""

    source_release_id: str | None
    prompt_templates: Mapping[str, str]
    policy_files: Mapping[str, str]
    feature_flags: Mapping[str, FlagValue]
    carried: tuple[str, ...]  # which parts came from the source: "prompt_templates", …
    note: str | None = None  # why nothing was carried, when there was a source to carry from

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_release_id": self.source_release_id,
            "carried": list(self.carried),
            "prompt_templates": dict(self.prompt_templates),
            "policy_files": dict(self.policy_files),
            "feature_flags": dict(self.feature_flags),
            "note": self.note,
        }


def carry_forward(
    source: Release | None,
    version: int,
    *,
    prompt_templates: Mapping[str, str] | None,
    policy_files: Mapping[str, str] | None,
    feature_flags: Mapping[str, FlagValue] | None,
    carry: bool = True,
) -> CarriedState:
    """The templates, policy files and flags of a promotion. A part given (not None) replaces
    the source's; a part not given is the source's when `carry` is on and the source deploys the
    same version, and empty otherwise."""
    given = {
        "prompt_templates": prompt_templates,
        "policy_files": policy_files,
        "feature_flags": feature_flags,
    }
    note = None
    usable = source is not None and carry and source.version == version
    if source is not None and carry and source.version != version:
        note = (
            f"nothing carried: {source.environment}'s current release {source.release_id} "
            f"deploys version {source.version}, not {version}"
        )
    chosen: dict[str, Mapping[str, Any]] = {}
    carried = []
    for part, value in given.items():
        if value is not None:
            chosen[part] = dict(value)
        elif usable and source is not None:
            chosen[part] = dict(getattr(source.state, part))
            if chosen[part]:
                carried.append(part)
        else:
            chosen[part] = {}
    return CarriedState(
        source_release_id=source.release_id if source is not None and usable else None,
        prompt_templates=chosen["prompt_templates"],
        policy_files=chosen["policy_files"],
        feature_flags=chosen["feature_flags"],
        carried=tuple(carried),
        note=note,
    )
