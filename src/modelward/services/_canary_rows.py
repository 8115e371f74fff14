"""The canary service's reading of its own rows: a stored plan back into a `CanaryPlan`
(VerificationError when malformed), a recorded verdict's envelope checked against the registry
key and its recorded digest, and the digest of the requests and metric points a verdict judged.
Private to `services.canary`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from modelward.core.dsse import Envelope
from modelward.errors import InputError, SignatureFormatError, VerificationError
from modelward.runtime.canary import CanaryPlan, MetricSpec, PointArms
from modelward.signing.keys import Verifier
from modelward.storage.metadata.canary_repository import CanaryRow, VerdictRow


def plan_of(row: CanaryRow) -> CanaryPlan:
    try:
        data = json.loads(row.plan)
        return CanaryPlan(
            model=str(data["model"]),
            environment=str(data["environment"]),
            candidate_version=int(data["candidate_version"]),
            baseline_version=int(data["baseline_version"]),
            baseline_release_id=str(data["baseline_release_id"]),
            started_ns=int(data["started_ns"]),
            metrics=tuple(MetricSpec.from_dict(m) for m in data["metrics"]),
            alpha=float(data["alpha"]),
            min_samples=int(data["min_samples"]),
            warmup_s=float(data["warmup_s"]),
            watch_s=None if data.get("watch_s") is None else float(data["watch_s"]),
        )
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise VerificationError(f"canary {row.id}: its plan is malformed ({exc})") from exc


def envelope_problem(row: VerdictRow, verifier: Verifier) -> str | None:
    try:
        envelope = Envelope.from_dict(json.loads(row.envelope))
    except (ValueError, SignatureFormatError) as exc:
        return f"canary verdict {row.id}: its envelope is malformed ({exc})"
    if not any(verifier.is_valid(s.sig, envelope.pae()) for s in envelope.signatures):
        return f"canary verdict {row.id}: its signature is not the registry key's"
    if "sha256:" + hashlib.sha256(envelope.payload).hexdigest() != row.statement_digest:
        return f"canary verdict {row.id}: its statement is not the one recorded"
    return None


def observations_digest(observations: Sequence[Any], points: PointArms | None = None) -> str:
    """The digest of the requests (and metric points, by series and interval) judged."""
    keys = sorted(f"{o.trace_id}:{o.span_id}" for o in observations)
    if points is not None:
        keys += sorted(
            f"{p.series}:{p.start_unix_nano}:{p.time_unix_nano}"
            for p in points.canary + points.baseline
        )
    return "sha256:" + hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
