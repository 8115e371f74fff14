"""Behavioural probes of a version against a baseline, run in a sandbox, attested.

`ProbeService.run` materialises the candidate and the baseline (by default the base model its
verified provenance declares) verified into a temporary folder, runs the probe worker on them in
a sandbox (`modelward.forensics.sandbox`: no network, read-only files, the registry's home and
the user's home hidden, memory, CPU and wall-clock limits, a scrubbed environment), judges the
measurements against the suite's thresholds and stores a `https://modelward.dev/probe/v1`
statement about the candidate, DSSE-signed with the registry key, with its ledger event. A run
that fails (the worker crashed, timed out or was killed by a limit) attests nothing and raises.
`probes_fact` makes the gate's `probes` fact, counting only runs with a suite modelward ships
or an admin pinned (`probe.suites`), and failing when any counted run failed. Knows nothing of
argument parsing or rendering.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import DeniedError, InputError
from modelward.forensics.probes import (
    ProbeSuite,
    default_suite_path,
    judge,
    load_suite,
    shipped_suite_digests,
)
from modelward.forensics.sandbox import SandboxLimits, run_sandboxed
from modelward.services.attestation_verify import AttestationVerifier, VerifiedAttestation
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.provenance import provenance_facts_in
from modelward.services.registry import RegistryService, resolve_in
from modelward.services.state_integrity import anchored_append
from modelward.services.users import require
from modelward.services.verified_bundle import materialise_verified
from modelward.signing.keys import Verifier
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord

PROBE_KIND = "probe"
PROBE_V1 = "https://modelward.dev/probe/v1"
_MAX_OUTPUT = 16 * 1024 * 1024


@dataclass(frozen=True)
class ProbeReport:
    candidate: VersionRecord
    baseline: VersionRecord
    predicate: dict[str, Any]
    seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.predicate["passed"])

    def to_dict(self) -> dict[str, Any]:
        return {**self.predicate, "seconds": round(self.seconds, 3)}


def resolve_suite(suite: str) -> ProbeSuite:
    """A suite file, or `default` for the suite modelward ships."""
    return load_suite(default_suite_path() if suite == "default" else Path(suite))


class ProbeService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.registry = RegistryService(context, self.actor)

    def declared_base(self, uri: str) -> str | None:
        """The `sha256:` digest of the base model the version's verified provenance names."""
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
            facts = provenance_facts_in(conn, record, verifier)
        base = facts.get("base_model_digest")
        return base if isinstance(base, str) else None

    def run(
        self,
        uri: str,
        suite: ProbeSuite,
        *,
        baseline: str | None = None,
        limits: SandboxLimits | None = None,
    ) -> ProbeReport:
        limits = limits or SandboxLimits()
        started = time.perf_counter()
        baseline = baseline or self.declared_base(uri)
        if baseline is None:
            raise InputError(
                f"{uri} declares no base model in verified provenance; give --baseline URI"
            )
        with tempfile.TemporaryDirectory(prefix="modelward-probe-") as work:
            cand_dir, base_dir = Path(work) / "candidate", Path(work) / "baseline"
            record = materialise_verified(self.registry, uri, cand_dir)
            base = materialise_verified(self.registry, baseline, base_dir)
            if record.root_digest == base.root_digest:
                raise InputError(f"{record.uri} and {base.uri} are the same bundle")
            prompts = Path(work) / "prompts.json"
            prompts.write_text(json.dumps(suite.to_worker()), encoding="utf-8")
            package_root = str(Path(__file__).resolve().parents[2])
            command = [
                sys.executable,
                "-I",
                "-c",
                f"import sys; sys.path.insert(0, {package_root!r}); "
                "from modelward.forensics._probe_worker import main; sys.exit(main())",
                str(cand_dir),
                str(base_dir),
                str(prompts),
            ]
            env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            result = run_sandboxed(
                command, env=env, hide=[self.ctx.home, Path.home()], limits=limits
            )
        if result.timed_out:
            raise DeniedError(
                f"the probe ran longer than {limits.wall_seconds:g} seconds and was stopped; "
                "nothing was attached"
            )
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-3:]
            raise DeniedError(
                f"the probe failed (exit {result.returncode}); nothing was attached: "
                + " | ".join(tail)
            )
        if len(result.stdout) > _MAX_OUTPUT:
            raise DeniedError("the probe wrote more output than allowed; nothing was attached")
        try:
            measured = json.loads(result.stdout)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DeniedError(
                f"the probe's output is not JSON; nothing was attached: {exc}"
            ) from exc
        verdict = judge(suite, measured)
        predicate = {
            "candidate": {"uri": record.uri, "digest": "sha256:" + record.root_digest},
            "baseline": {"uri": base.uri, "digest": "sha256:" + base.root_digest},
            "suite": suite.reference(),
            **verdict,
            "sandbox": {"network": "none", "filesystem": "read-only", **limits.to_dict()},
            "probedOn": format_time(utc_now()),
            "probedBy": self.actor,
        }
        self.attest(record, predicate)
        return ProbeReport(record, base, predicate, time.perf_counter() - started)

    def attest(self, record: VersionRecord, predicate: dict[str, Any]) -> None:
        """Store a judged probe result about `record` (signed, ledgered)."""
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ATTACH_PROVENANCE)
            repo = RegistryRepository(conn)
            current = resolve_in(repo, parse_uri(record.uri))
            if current.root_digest != record.root_digest:
                raise InputError(f"{record.uri} changed while it was probed")
            attestation_id = self.registry.add_statement(
                repo,
                current.id,
                PROBE_KIND,
                PROBE_V1,
                current.manifest(),
                predicate,
                format_time(utc_now()),
            )
            anchored_append(
                conn,
                self.actor,
                "probe.run",
                current.uri,
                {
                    "root_digest": current.root_digest,
                    "baseline": predicate["baseline"]["digest"],
                    "suite": predicate["suite"],
                    "passed": predicate["passed"],
                    "findings": len(predicate["findings"]),
                },
                utc_now(),
                rows=[("attestations", str(attestation_id))],
            )


def accepted_suite_digests(pinned: list[str]) -> frozenset[str]:
    """The probe suites whose results the gate counts: those modelward ships, and those an
    admin pinned in the `probe.suites` setting."""
    return shipped_suite_digests() | frozenset(pinned)


def probes_fact(
    attestations: list[VerifiedAttestation],
    base_digest: str | None,
    accepted_suites: frozenset[str],
) -> tuple[dict[str, Any] | None, list[VerifiedAttestation]]:
    """The gate's `probes` fact and the attestations it came from.

    It counts the verified probe runs against the declared base (any baseline when none is
    declared), oldest first; malformed predicates count as absent. Whoever runs a probe
    chooses its suite, so only runs with an accepted suite (`accepted_suite_digests`) count,
    and `passed` holds only when there is at least one and EVERY one of them passed: a failing
    run is never erased by a later passing one (with another suite or the same). The other
    figures are the newest counted run's. With no accepted run but some other, the fact names
    that run's suite and does not pass."""
    runs: list[tuple[VerifiedAttestation, dict[str, Any]]] = []
    for att in attestations:
        summary = _probe_run(att.predicate, base_digest)
        if summary is not None:
            runs.append((att, summary))
    if not runs:
        return None, []
    counted = [(att, run) for att, run in runs if run["suite_digest"] in accepted_suites]
    accepted = sorted(accepted_suites)
    if not counted:
        att, newest = runs[-1]
        reason = (
            f"probe suite {newest['suite']!r} ({newest['suite_digest']}) is neither shipped "
            "with modelward nor pinned in the probe.suites setting"
        )
        return {
            **_fact_fields(newest),
            "passed": False,
            "suite_accepted": False,
            "accepted_suite_digests": accepted,
            "runs": 0,
            "failed_runs": 0,
            "findings": [reason],
        }, [att]
    failing = [run for _, run in counted if not run["passed"]]
    findings = [
        f"{run['suite']} ({run['probedOn'] or 'undated'}): {finding}"
        for run in failing
        for finding in run["findings"] or ["the probe did not pass"]
    ]
    newest = counted[-1][1]
    return {
        **_fact_fields(newest),
        "passed": not failing,
        "suite_accepted": True,
        "accepted_suite_digests": accepted,
        "runs": len(counted),
        "failed_runs": len(failing),
        "findings": findings,
    }, [att for att, _ in counted]


def _fact_fields(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "probedOn"}


def _probe_run(p: dict[str, Any], base_digest: str | None) -> dict[str, Any] | None:
    """One probe predicate's figures, or None when it is malformed or about another base."""
    baseline = p.get("baseline")
    digest = baseline.get("digest") if isinstance(baseline, dict) else None
    if not isinstance(digest, str) or (base_digest is not None and digest != base_digest):
        return None
    suite, kl, findings, passed = p.get("suite"), p.get("kl"), p.get("findings"), p.get("passed")
    if not (
        isinstance(suite, dict)
        and isinstance(suite.get("digest"), str)
        and isinstance(kl, dict)
        and isinstance(findings, list)
        and isinstance(passed, bool)
    ):
        return None
    version = suite.get("version")

    def number(value: Any) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None

    probed_on = p.get("probedOn")
    return {
        "passed": passed and not findings,
        "baseline": digest,
        "suite": str(suite.get("name")),
        "suite_version": version if isinstance(version, int) else 0,
        "suite_digest": str(suite["digest"]),
        "clean_kl_median": number(kl.get("clean_median")),
        "trigger_kl_median": number(kl.get("trigger_median")),
        "findings": [str(f) for f in findings],
        "probedOn": probed_on if isinstance(probed_on, str) else None,
    }
