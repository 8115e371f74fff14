"""The change-class hook for `push`: classify a new version's file diff against the previous
version and the declared `--change` / `--compat`, as the predicate of a "change" attestation.

The classification itself is `modelward.core.change_class.classify_change`; this module only
adapts it to the registry's push hook. Stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelward.core.change_class import classify_change, parse_change_class, parse_compat
from modelward.core.manifest import Manifest

CHANGE_PREDICATE_TYPE = "https://modelward.dev/attestations/change/v1"
CHANGE_KIND = "change"

ChangeHook = Callable[[Manifest | None, Manifest], dict[str, Any]]


def change_hook(change_class: str | None, compat: str | None) -> ChangeHook:
    """A push hook recording the declared class and compatibility and every contradiction."""
    declared_class = parse_change_class(change_class) if change_class else None
    declared_compat = parse_compat(compat) if compat else None

    def classify(previous: Manifest | None, current: Manifest) -> dict[str, Any]:
        report = classify_change(
            previous.digests() if previous is not None else None,
            current.digests(),
            declared_class,
            declared_compat,
        )
        return report.to_fact()

    return classify
