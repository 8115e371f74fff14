"""Whether a release was authorised: by a gate decision that allowed this version in this
environment, or, for a rollback, by restoring an earlier release of the same environment whose
own authority holds.

A promotion (or override) release names the decision that let it through; that decision must be
an allow (an override is a recorded, visible allow) about the same model, version and
environment, and an override release must carry the decision's override. A rollback names no
decision: it restores an earlier release (`restores_release_id`) of the same model and
environment with the same deployed state, and that release must in turn be authorised (a chain of
rollbacks is followed to the promotion at its start). Anything else, a release with neither, is
unauthorised.

Pure: the caller gives the decisions and releases it has verified (from the database after
the state checks, or from an evidence bundle) and reports the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelward.core.release import Release


@dataclass(frozen=True)
class DecisionSummary:
    """What a release's authority is checked against: one verified gate decision."""

    model: str
    version: int
    environment: str
    allowed: bool
    override: Mapping[str, object] | None = None


def release_authority_problem(
    release: Release,
    decisions: Mapping[str, DecisionSummary],
    releases: Mapping[str, Release],
    absent: str = "is not on record",
) -> str | None:
    """Why `release` was not authorised, or None. `decisions` maps decision digests to the
    verified decisions, `releases` release ids to the verified releases (for rollbacks);
    `absent` says what it means that one is not among them."""
    seen: set[str] = set()
    current = release
    chain = ""
    while True:
        problem, restored = _step(current, decisions, releases, absent)
        if problem is not None:
            return chain + problem
        if restored is None:
            return None
        seen.add(current.release_id)
        if restored.release_id in seen:
            return chain + f"restores release {restored.release_id}, which is part of a loop"
        chain += f"restores release {restored.release_id}, which "
        current = restored


def _step(
    release: Release,
    decisions: Mapping[str, DecisionSummary],
    releases: Mapping[str, Release],
    absent: str,
) -> tuple[str | None, Release | None]:
    """(the problem with `release` itself, or the release it restores whose authority counts)."""
    if release.decision_digest is not None:
        return _decision_problem(release, release.decision_digest, decisions, absent), None
    restores = release.restores_release_id
    if restores is None:
        return "names no gate decision and restores no earlier release (not a rollback)", None
    target = releases.get(restores)
    if target is None:
        return f"restores release {restores}, which {absent}", None
    if (target.model, target.environment) != (release.model, release.environment):
        return (
            f"restores release {restores} of {target.environment} (models:/{target.model}), "
            f"not of {release.environment}"
        ), None
    if target.state_digest() != release.state_digest():
        return f"restores release {restores} but deploys another state than it", None
    if target.created_at > release.created_at:
        return f"restores release {restores}, which was made after it", None
    return None, target


def _decision_problem(
    release: Release, digest: str, decisions: Mapping[str, DecisionSummary], absent: str
) -> str | None:
    decided = decisions.get(digest)
    short = digest[:19] + "…"
    if decided is None:
        return f"names decision {short}, which {absent}"
    if not decided.allowed:
        return f"names decision {short}, which denied the promotion"
    if decided.environment != release.environment:
        return (
            f"names decision {short}, which was for {decided.environment}, "
            f"not {release.environment}"
        )
    if (decided.model, decided.version) != (release.model, release.version):
        return (
            f"names decision {short}, which was about models:/{decided.model}/{decided.version}, "
            f"not models:/{release.model}/{release.version}"
        )
    carried = None if release.override is None else release.override.to_dict()
    if carried is not None and dict(carried) != (
        None if decided.override is None else dict(decided.override)
    ):
        return f"carries an override that its decision {short} does not record"
    return None
