"""Evidence about a version beyond its bytes: evaluations (attach, run in a sandbox, compare),
reproduction checks, the CycloneDX ML-BOM, and the summary `show` prints.

Evaluation and reproduction attestations are in-toto statements about the version's root digest,
DSSE-signed with the registry key, stored with the ledger event in one transaction and verified
again whenever they are read. Knows nothing of argument parsing or rendering.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import DeniedError, InputError, ModelwardError, NotFoundError, PathError
from modelward.provenance.evaluation import (
    MAX_RESULTS_BYTES,
    TEST_RESULT_V01,
    Evaluation,
    EvaluationResults,
    compare,
    parse_results,
    validate_suite,
)
from modelward.provenance.reproduce import (
    REPRODUCTION_V1,
    Reproduction,
    ReproductionResult,
    compare_file_digests,
)
from modelward.services.attestation_verify import AttestationVerifier, VerifiedAttestation
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.datasets import effective_manifest, parse_dataset_uri
from modelward.services.provenance import (
    PROVENANCE_KIND,
    provenance_facts_in,
    training_run_in,
)
from modelward.services.registry import RegistryService, resolve_in
from modelward.services.state_integrity import anchored_append
from modelward.services.users import require
from modelward.signing.keys import Verifier
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.provenance_repository import ProvenanceRepository
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord
from modelward.storage.model_files import hash_model

EVALUATION_KIND = "evaluation"
REPRODUCTION_KIND = "reproduction"
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


def evaluations_in(
    conn: Connection, record: VersionRecord, registry_key: Verifier
) -> list[dict[str, Any]]:
    """Every evaluation of the version, each checked by the attestation verifier (registry key,
    predicate type, subject = the version's root digest); a bad one is listed unverified."""
    verifier = AttestationVerifier.for_registry(conn, registry_key)
    found = []
    for att in RegistryRepository(conn).attestations(record.id, EVALUATION_KIND):
        entry: dict[str, Any] = {"digest": att.digest, "attached_by": att.created_by}
        checked = verifier.check(att, record.root_digest)
        if not isinstance(checked, VerifiedAttestation):
            found.append({**entry, "verified": False, "error": checked.reason})
            continue
        try:
            evaluation = Evaluation.from_predicate(checked.predicate)
        except ModelwardError as exc:
            found.append({**entry, "verified": False, "error": str(exc)})
            continue
        found.append(
            {
                **entry,
                "verified": True,
                "suite": evaluation.suite,
                "result": evaluation.result,
                "metrics": dict(evaluation.results.metrics),
                "tests": [t.to_dict() for t in evaluation.results.tests],
                "dataset": evaluation.results.dataset,
                "evaluator": evaluation.evaluator,
                "evaluated_on": format_time(evaluation.evaluated_on),
            }
        )
    return found


def evidence_in(conn: Connection, record: VersionRecord, registry_key: Verifier) -> dict[str, Any]:
    """What `show` adds to a version: verified provenance facts and verified evaluations."""
    verifier = AttestationVerifier.for_registry(conn, registry_key)
    return {
        "provenance": provenance_facts_in(conn, record, verifier),
        "evaluations": evaluations_in(conn, record, registry_key),
    }


@dataclass(frozen=True)
class MetricComparison:
    a: str
    b: str
    deltas: list[dict[str, Any]]


class EvidenceService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.registry = RegistryService(context, self.actor)
        self.key = Verifier(context.signer.public_key)

    # -- evaluations ------------------------------------------------------------------------

    def attach_evaluation(
        self, uri: str, suite: str, results: EvaluationResults, url: str | None = None
    ) -> dict[str, Any]:
        validate_suite(suite)
        evaluation = Evaluation(
            suite=suite, results=results, evaluated_on=utc_now(), evaluator=self.actor, url=url
        )
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ATTACH_PROVENANCE, model=parse_uri(uri).name)
            repo = RegistryRepository(conn)
            record = resolve_in(repo, parse_uri(uri))
            if results.dataset is not None:
                name, number = parse_dataset_uri(results.dataset)
                ProvenanceRepository(conn).dataset_version(name, number)
            manifest = record.manifest()
            now = format_time(utc_now())
            attestation_id = self.registry.add_statement(
                repo,
                record.id,
                EVALUATION_KIND,
                TEST_RESULT_V01,
                manifest,
                evaluation.to_predicate(),
                now,
            )
            anchored_append(
                conn,
                self.actor,
                "evaluation.attach",
                record.uri,
                {
                    "model": record.model,
                    "version": record.number,
                    "root_digest": record.root_digest,
                    "suite": suite,
                    "result": evaluation.result,
                    "metrics": dict(results.metrics),
                },
                utc_now(),
                rows=[("attestations", str(attestation_id))],
            )
        return {
            "uri": record.uri,
            "suite": suite,
            "result": evaluation.result,
            "metrics": dict(results.metrics),
        }

    def attach_results_file(self, uri: str, suite: str, path: Path) -> dict[str, Any]:
        return self.attach_evaluation(uri, suite, parse_results(_read_results(path)))

    def run_evaluation(
        self, uri: str, suite: str, command: Sequence[str], timeout: float
    ) -> dict[str, Any]:
        """Pull and verify the bundle into a temporary folder, run `command` there without
        network (see `isolation_prefix`) and a time limit, and attach the results it wrote."""
        if not command:
            raise InputError("give the evaluation command after --")
        if not timeout > 0:
            raise InputError("the timeout must be a positive number of seconds")
        validate_suite(suite)
        with tempfile.TemporaryDirectory(prefix="modelward-eval-") as work:
            bundle = Path(work) / "bundle"
            results_path = Path(work) / "results.json"
            record = self.registry.pull(uri, bundle)
            prefix, network = isolation_prefix()
            env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
            env.update(
                MODELWARD_BUNDLE=str(bundle), MODELWARD_RESULTS=str(results_path), no_proxy="*"
            )
            exit_code = _run_limited([*prefix, *command], env, Path.cwd(), timeout)
            if not results_path.is_file():
                raise DeniedError(
                    f"the evaluation exited with {exit_code} and wrote no results to "
                    "$MODELWARD_RESULTS; nothing was attached"
                )
            results = parse_results(_read_results(results_path))
        configuration = {
            **results.configuration,
            "modelwardRun": {
                "command": list(command),
                "exitCode": exit_code,
                "network": network,
                "timeoutSeconds": timeout,
            },
        }
        results = dataclasses.replace(results, configuration=configuration)
        attached = self.attach_evaluation(record.uri, suite, results)
        return {**attached, "exit_code": exit_code, "network": network}

    def evaluations(self, uri: str) -> tuple[VersionRecord, list[dict[str, Any]]]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            return record, evaluations_in(conn, record, self.key)

    def compare(self, uri_a: str, uri_b: str, suite: str | None = None) -> MetricComparison:
        """Metric deltas from A to B over the latest verified evaluation of each suite."""
        record_a, evals_a = self.evaluations(uri_a)
        record_b, evals_b = self.evaluations(uri_b)
        metrics_a = _latest_metrics(evals_a, suite)
        metrics_b = _latest_metrics(evals_b, suite)
        if not metrics_a and not metrics_b:
            which = f" of suite {suite!r}" if suite else ""
            raise NotFoundError(f"neither version has evaluation metrics{which}")
        deltas = [d.to_dict() for d in compare(metrics_a, metrics_b)]
        return MetricComparison(record_a.uri, record_b.uri, deltas)

    # -- reproduction -----------------------------------------------------------------------

    def reproduce_check(self, uri: str, rebuilt: Path) -> ReproductionResult:
        """Compare a rebuilt bundle with the version file by file and attest the result."""
        record = self.registry.resolve(uri)
        manifest = record.manifest()
        if not Path(rebuilt).exists():
            raise PathError(f"{rebuilt}: no such file or folder")
        actual = hash_model(Path(rebuilt), manifest.serialization)
        result = compare_file_digests(
            manifest.digests(),
            actual.digests(),
            expected_root=manifest.root_digest,
            rebuilt_root=actual.root_digest,
        )
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ATTACH_PROVENANCE)
            repo = RegistryRepository(conn)
            provenance = (
                AttestationVerifier.for_registry(conn, self.key)
                .check_all(repo.attestations(record.id, PROVENANCE_KIND), record.root_digest)
                .of_kind(PROVENANCE_KIND)
            )
            reproduction = Reproduction(
                result=result,
                checked_on=utc_now(),
                checker=self.actor,
                provenance_digest=provenance[0].record.digest if provenance else None,
            )
            attestation_id = self.registry.add_statement(
                repo,
                record.id,
                REPRODUCTION_KIND,
                REPRODUCTION_V1,
                manifest,
                reproduction.to_predicate(),
                format_time(utc_now()),
            )
            anchored_append(
                conn,
                self.actor,
                "reproduction.check",
                record.uri,
                {
                    "model": record.model,
                    "version": record.number,
                    "root_digest": record.root_digest,
                    "rebuilt_root": result.rebuilt_root,
                    "identical": result.identical,
                    "differences": result.describe()[:100],
                },
                utc_now(),
                rows=[("attestations", str(attestation_id))],
            )
        return result

    # -- ML-BOM -----------------------------------------------------------------------------

    def bom(self, uri: str) -> str:
        """The version's CycloneDX 1.6 ML-BOM, validated with the strict schema validator."""
        from modelward.provenance.bom import (
            BomDataset,
            BomMetric,
            ModelCardFields,
            build_ml_bom,
            validate_ml_bom,
        )

        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            record = resolve_in(RegistryRepository(conn), parse_uri(uri))
            manifest = self.registry._checked_manifest(record)
            repo = ProvenanceRepository(conn)
            verifier = AttestationVerifier.for_registry(conn, self.key)
            # Only verified provenance names the datasets and base model in the BOM.
            run = training_run_in(conn, record.id, verifier)
            datasets = []
            for use in run.datasets if run else ():
                name, number = parse_dataset_uri(use.uri)
                stored = repo.dataset_version(name, number)
                datasets.append(BomDataset(use.uri, effective_manifest(conn, stored)))
            evaluations = evaluations_in(conn, record, self.key)
        metrics = [
            BomMetric(name=name, value=value, suite=e["suite"])
            for e in evaluations
            if e["verified"]
            for name, value in sorted(e["metrics"].items())
        ]
        text = build_ml_bom(
            model_name=record.model,
            version=str(record.number),
            root_digest=record.root_digest,
            files={f.name: f.digest for f in manifest.files},
            timestamp=utc_now(),
            model_uri=record.uri,
            model_card=self._model_card(manifest, ModelCardFields),
            datasets=datasets,
            metrics=metrics,
            base_model=run.base_model if run else None,
        )
        validate_ml_bom(text)
        return text

    def _model_card(self, manifest: Any, fields: Any) -> Any:
        """Architecture facts from the bundle's config.json (`architectures`, `model_type`)."""
        digests = manifest.digests()
        if "config.json" not in digests:
            return fields()
        try:
            config = json.loads(self.ctx.blobs.get_bytes(digests["config.json"]))
        except (ValueError, UnicodeDecodeError):
            return fields()
        if not isinstance(config, dict):
            return fields()
        architectures = config.get("architectures")
        name = architectures[0] if isinstance(architectures, list) and architectures else None
        model_type = config.get("model_type")
        task = config.get("pipeline_tag") or config.get("task")
        return fields(
            task=task if isinstance(task, str) else None,
            architecture_family=model_type if isinstance(model_type, str) else None,
            architecture_name=name if isinstance(name, str) else None,
        )


def _latest_metrics(evaluations: list[dict[str, Any]], suite: str | None) -> dict[str, Any]:
    latest: dict[str, dict[str, Any]] = {}
    for entry in evaluations:
        if entry["verified"] and (suite is None or entry["suite"] == suite):
            latest[entry["suite"]] = entry["metrics"]
    if suite is not None:
        return dict(latest.get(suite, {}))
    single = len(latest) == 1
    return {
        (name if single else f"{suite_name}:{name}"): value
        for suite_name, metrics in sorted(latest.items())
        for name, value in metrics.items()
    }


def _read_results(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            raise InputError(f"{path}: the results file is larger than 16 MiB")
        return path.read_bytes()
    except OSError as exc:
        raise PathError(f"{path}: cannot read results: {exc.strerror or exc}") from exc


_ISOLATION: tuple[list[str], str] | None = None


def isolation_prefix() -> tuple[list[str], str]:
    """How evaluations are cut off from the network: `unshare --net --map-root-user` (a new,
    empty network namespace) when it works here, else nothing but disabled proxies."""
    global _ISOLATION
    if _ISOLATION is None:
        unshare = shutil.which("unshare")
        prefix = [unshare, "--net", "--map-root-user", "--"] if unshare else []
        works = False
        if prefix:
            try:
                works = (
                    subprocess.run(
                        [*prefix, "true"], capture_output=True, timeout=10, check=False
                    ).returncode
                    == 0
                )
            except (OSError, subprocess.SubprocessError):
                works = False
        _ISOLATION = (prefix, "isolated") if works else ([], "proxies-disabled")
    return _ISOLATION


def _run_limited(command: list[str], env: dict[str, str], cwd: Path, timeout: float) -> int:
    try:
        process = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)
    except OSError as exc:
        raise InputError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from exc
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise DeniedError(
            f"the evaluation ran longer than {timeout:g} seconds and was stopped; "
            "nothing was attached"
        ) from exc
