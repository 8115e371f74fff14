"""Shadow comparison (runtime.shadow): pairing by trace, length, refusal and agreement."""

from __future__ import annotations

import random

from modelward.core.observations import Observation
from modelward.runtime.shadow import pair_requests, shadow_report


def pairs(n: int, *, longer: float = 1.0, flip: float = 0.0, seed: int = 2) -> list[Observation]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tokens = rng.randint(50, 150)
        refused = rng.random() < 0.05
        for arm, version, k, t, r in (
            ("baseline", 1, "b", tokens, refused),
            ("shadow", 2, "s", int(tokens * longer), refused != (rng.random() < flip)),
        ):
            out.append(
                Observation(
                    "m",
                    version,
                    "rel-1",
                    "prod",
                    i,
                    f"{i:032x}",
                    f"{k}{i:015x}",
                    False,
                    output_tokens=t,
                    refusal=r,
                    finish_reason="stop",
                    arm=arm,
                )
            )
    return out


def test_same_answers_agree() -> None:
    report = shadow_report(pairs(300), "m", 2, 1)
    assert report.status == "ok" and report.pairs == 300
    assert report.agreement == 1.0 and report.refusal_disagreement == 0.0
    assert abs(report.length_relative_change or 0) < 0.01


def test_longer_answers_and_refusal_disagreement_differ() -> None:
    longer = shadow_report(pairs(300, longer=1.6), "m", 2, 1)
    assert longer.status == "differs" and "longer" in longer.reasons[0]
    flipped = shadow_report(pairs(300, flip=0.3), "m", 2, 1)
    assert flipped.status == "differs" and (flipped.agreement or 1) < 0.8


def test_unpaired_duplicated_and_ambiguous_traces() -> None:
    obs = pairs(40)
    lonely = [o for o in pairs(10, seed=9) if o.arm == "shadow"]
    lonely = [Observation(**{**o.to_dict(), "trace_id": "f" * 32}) for o in lonely]
    found, unpaired = pair_requests(obs + obs[:20] + lonely, "m", 2, 1)
    assert len(found) == 40  # duplicates once; ten shadows on one trace are ambiguous
    assert unpaired == 10
    assert shadow_report(obs[:20], "m", 2, 1).status == "insufficient"
