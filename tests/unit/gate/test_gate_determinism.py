"""Same facts, same decision: byte-identical decision JSON and digests across hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from modelward.core.canonical import canonical_json
from modelward.core.policy import evaluate
from modelward.policy.cel_engine import CelEngine
from modelward.policy.loader import load_default_policy

SCRIPT = r"""
import json, sys
from modelward.core.canonical import canonical_json
from modelward.core.policy import evaluate
from modelward.policy.cel_engine import CelEngine
from modelward.policy.loader import load_default_policy
facts = json.loads(sys.stdin.read())
engine = CelEngine()
decisions = [
    evaluate(load_default_policy(env, engine), facts, engine).to_dict()
    for env in ("staging", "canary", "production")
]
sys.stdout.write(canonical_json(decisions).decode())
"""


def _run(seed: str, facts: dict[str, Any]) -> str:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=json.dumps(facts),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return completed.stdout


def test_same_decision_under_different_hash_seeds(
    make_facts: Callable[..., dict[str, Any]],
) -> None:
    # A denied candidate exercises failures, details and skipped rules as well.
    facts = make_facts(scan_verdict="unsafe", rollback_drill=None, current=None)
    first = _run("1", facts)
    second = _run("4242", facts)
    assert first == second
    decisions = json.loads(first)
    assert [d["allowed"] for d in decisions] == [False, False, False]
    engine = CelEngine()
    here = [
        evaluate(load_default_policy(env, engine), facts, engine).to_dict()
        for env in ("staging", "canary", "production")
    ]
    assert canonical_json(here).decode() == first


def test_repeated_evaluation_is_identical(
    engine: CelEngine, make_facts: Callable[..., dict[str, Any]]
) -> None:
    policy = load_default_policy("production", engine)
    facts = make_facts(approvals=())
    decisions = {evaluate(policy, facts, engine).digest() for _ in range(20)}
    assert len(decisions) == 1
