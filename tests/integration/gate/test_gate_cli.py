"""The release gate end to end through the real `modelward` console script on a temporary
registry: roles and self-approval, unknown actors, staging and production decisions, approvals,
drills, overrides, conflicts, rollback of the whole deployed state, change classes, bad input and
the audit still verifying afterwards."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward

from modelward.provenance.evaluation import (
    TEST_RESULT_V01,
    Evaluation,
    EvaluationCheck,
    EvaluationResults,
)
from modelward.services.context import open_registry
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.services.settings import SettingsService
from modelward.services.state_integrity import anchored_append
from modelward.services.users import UserService
from modelward.storage.metadata.registry_repository import RegistryRepository

Run = Callable[..., subprocess.CompletedProcess[str]]

PRODUCTION_WITHOUT_PROVENANCE = """
rules:
  - id: scan-clean
    expression: facts.scan.verdict == 'clean'
    message: the bundle must scan clean
  - id: signature-verified
    expression: facts.signatures.verified && size(facts.signatures.key_ids) > 0
    message: the bundle must carry a verified signature
  - id: promoted-in-order
    expression: >-
      facts.environment.previous == null ||
      facts.environment.previous in facts.candidate.deployed_in
    message: the version must be deployed in the previous environment first
  - id: metrics-meet-thresholds
    expression: >-
      facts.evaluations.metrics.all(name,
        facts.evaluations.metrics[name].value >= facts.evaluations.metrics[name].threshold)
    message: every evaluation metric must meet its declared threshold
  - id: two-independent-approvals
    expression: size(facts.approvals.filter(a, a.reviewer != facts.candidate.author)) >= 2
    message: at least two reviewers other than the author must approve the version
  - id: rollback-drill-recent
    expression: >-
      facts.rollback_drill.passed &&
      timestamp(facts.time) - timestamp(facts.rollback_drill.at) <= duration('720h')
    message: a rollback drill must have passed within the last 30 days
  - id: change-class-consistent
    expression: facts.change.consistent
    message: the declared change class must match the files that changed
"""


def write_bundle(folder: Path, weights: bytes, config: str = '{"layers": 2}') -> Path:
    folder.mkdir(parents=True)
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [len(weights)], "data_offsets": [0, len(weights)]}}
    ).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + weights)
    (folder / "config.json").write_text(config)
    return folder


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Run, Path]:
    home = tmp_path / "home"
    home.mkdir()

    def run(actor: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_modelward(*args, env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": actor})

    # Set up in process (the CLI paths of init and users are exercised below).
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    initialize_registry(home)
    context = open_registry(home)
    try:
        users = UserService(context, actor="alice")
        for name, role in (
            ("bob", "trainer"),
            ("rita", "releaser"),
            ("rev1", "reviewer"),
            ("rev2", "reviewer"),
        ):
            users.add(name, role)
        SettingsService(context, actor="alice").set("gate.environments", ["staging", "production"])
    finally:
        context.close()
    assert run("alice", "users", "add", "vic", "--role", "viewer").returncode == 0
    # Bob's uploads are signed with a key the admin trusts (the registry's own does not count).
    key = tmp_path / "bob.key"
    assert run("bob", "keys", "generate", "--out", str(key)).returncode == 0
    trusted = run("alice", "keys", "trust", f"{key}.pub", "--name", "bob-laptop")
    assert trusted.returncode == 0, trusted.stderr
    return run, home


def signed(folder: Path) -> list[str]:
    """Sign `folder` with bob's trusted key; the push arguments that carry the signature."""
    key = folder.parent / "bob.key"
    signature = folder.parent / f"{folder.name}.sig"
    result = run_modelward("sign", str(folder), "--key", str(key), "--signature", str(signature))
    assert result.returncode == 0, result.stderr
    return ["--signature", str(signature), "--public-key", f"{key}.pub"]


def attach_evaluation(home: Path, uri_version: int, accuracy: float) -> None:
    context = open_registry(home)
    try:
        service = RegistryService(context, actor="alice")
        evaluation = Evaluation(
            suite="smoke",
            results=EvaluationResults(
                metrics={"accuracy": accuracy},
                tests=(EvaluationCheck("loads", True),),
                configuration={"thresholds": {"accuracy": 0.8}},
            ),
            evaluated_on=datetime.now(UTC),
            evaluator="alice",
        )
        with context.database.transaction() as conn:
            repo = RegistryRepository(conn)
            record = repo.version("llama", uri_version)
            attestation_id = service.add_statement(
                repo,
                record.id,
                "evaluation",
                TEST_RESULT_V01,
                record.manifest(),
                evaluation.to_predicate(),
                record.created_at,
            )
            anchored_append(
                conn,
                "alice",
                "evaluation.attach",
                record.uri,
                {"model": "llama", "version": uri_version},
                datetime.now(UTC),
                rows=[("attestations", str(attestation_id))],
            )
    finally:
        context.close()


def test_release_gate_end_to_end(gate: tuple[Run, Path], tmp_path: Path) -> None:
    run, home = gate
    v1 = write_bundle(tmp_path / "v1", b"\x01" * 8)
    v2 = write_bundle(tmp_path / "v2", b"\x02" * 8)
    v3 = write_bundle(tmp_path / "v3", b"\x03" * 8)
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")

    # Unknown actors and roles.
    assert_clean_error(
        run("mallory", "push", str(v1), "--model", "llama"),
        1,
        "actor 'mallory' is not a user of this registry",
    )
    assert_clean_error(
        run("mallory", "promote", "models:/llama/1", "--to", "staging"),
        1,
        "modelward users add mallory",
    )
    assert "vic (viewer)" in run("vic", "whoami").stdout
    assert_clean_error(run("vic", "push", str(v1), "--model", "llama"), 1, "may not push")
    pushed = run(
        "bob",
        "push",
        str(v1),
        "--model",
        "llama",
        "--change",
        "weights",
        "--compat",
        "breaking",
        *signed(v1),
    )
    assert pushed.returncode == 0, pushed.stderr
    assert_clean_error(
        run("bob", "promote", "models:/llama/1", "--to", "staging"), 1, "may not promote"
    )

    # Staging: a clean scan, the registry's signature and a trusted uploader's are enough.
    first = run(
        "rita",
        "promote",
        "models:/llama/1",
        "--to",
        "staging",
        "--prompt-template",
        str(template),
        "--flag",
        "beta=true",
    )
    assert first.returncode == 0, first.stderr
    assert "allow" in first.stdout and "rel-1" in first.stdout
    assert_clean_error(
        run("alice", "alias", "set", "llama", "staging", "1"), 2, "environment alias"
    )
    assert (
        run(
            "bob",
            "push",
            str(v2),
            "--model",
            "llama",
            "--change",
            "weights",
            "--compat",
            "breaking",
            *signed(v2),
        ).returncode
        == 0
    )
    assert run("rita", "promote", "models:/llama/2", "--to", "staging").returncode == 0

    # Production denies, naming every failed rule.
    assert (
        run(
            "alice",
            "policy",
            "set",
            "production",
            str(_write(tmp_path / "prod.yaml", PRODUCTION_WITHOUT_PROVENANCE)),
        ).returncode
        == 0
    )
    denied = run("rita", "promote", "models:/llama/2", "--to", "production")
    assert denied.returncode == 1
    for rule in ("metrics-meet-thresholds", "two-independent-approvals", "rollback-drill-recent"):
        assert rule in denied.stdout
    assert "promoted-in-order" not in denied.stdout
    assert "change-class-consistent" not in denied.stdout

    # Approvals: never by the author; two reviewers.
    assert_clean_error(
        run("bob", "approve", "models:/llama/2", "--for", "production"), 1, "may not approve"
    )
    assert_clean_error(
        run("rita", "approve", "models:/llama/2", "--for", "production"), 1, "may not approve"
    )
    assert run("alice", "users", "add", "bob", "--role", "admin").returncode == 0
    assert_clean_error(
        run("bob", "approve", "models:/llama/2", "--for", "production"), 1, "author of this version"
    )
    for reviewer in ("rev1", "rev2"):
        assert run(reviewer, "approve", "models:/llama/2", "--for", "production").returncode == 0

    # The drill rolls back and forward in staging, byte for byte.
    drill = run("rita", "rollback", "llama", "--env", "staging", "--drill")
    assert drill.returncode == 0, drill.stderr
    assert "passed" in drill.stdout
    attach_evaluation(home, 2, 0.9)
    # The pass mark is the reviewer's, not the evaluation file's.
    assert_clean_error(
        run("rita", "eval", "thresholds", "set", "smoke", "--metric", "accuracy", "--min", "0.8"),
        1,
        "may not change the setting",
    )
    thresholds = run(
        "rev1", "eval", "thresholds", "set", "smoke", "--metric", "accuracy", "--min", "0.8"
    )
    assert thresholds.returncode == 0, thresholds.stderr
    allowed = run("rita", "promote", "models:/llama/2", "--to", "production", "--json")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert json.loads(allowed.stdout)["release"]["state"]["version"] == 2
    history = run("vic", "decisions", "models:/llama/2", "--json")
    verdicts = [(d["environment"], d["allowed"]) for d in json.loads(history.stdout)]
    assert verdicts == [("staging", True), ("production", False), ("production", True)]
    assert all(d["signature_verified"] for d in json.loads(history.stdout))

    # Conflict: the environment moved; nothing changes.
    before = run("vic", "releases", "staging", "--model", "llama", "--json").stdout
    assert_clean_error(
        run("rita", "promote", "models:/llama/1", "--to", "staging", "--if-current", "rel-1"),
        1,
        "moved",
    )
    assert run("vic", "releases", "staging", "--model", "llama", "--json").stdout == before

    # Rollback restores the whole state and says what changed back.
    back = run("rita", "rollback", "llama", "--env", "staging")
    assert back.returncode == 0, back.stderr
    assert "version 2 → 1" in back.stdout
    assert "prompt template added: chat.jinja" in back.stdout
    assert "feature flag added: beta" in back.stdout
    shown = json.loads(run("vic", "show", "models:/llama@staging", "--json").stdout)
    assert shown["version"] == 1

    # A declared class the diff contradicts is a fact the policy denies; override is visible.
    assert (
        run(
            "bob",
            "push",
            str(v3),
            "--model",
            "llama",
            "--change",
            "prompt",
            "--compat",
            "compatible",
            *signed(v3),
        ).returncode
        == 0
    )
    assert run("rita", "promote", "models:/llama/3", "--to", "staging").returncode == 0
    contradicted = run("rita", "promote", "models:/llama/3", "--to", "production")
    assert contradicted.returncode == 1
    assert "change-class-consistent" in contradicted.stdout
    overridden = run(
        "rita",
        "override",
        "models:/llama/3",
        "--to",
        "production",
        "--justification",
        "hotfix for incident 42",
        "--expires",
        "4h",
    )
    assert overridden.returncode == 0, overridden.stderr
    listing = run("vic", "releases", "production", "--model", "llama").stdout
    assert "OVERRIDE by rita" in listing and "hotfix for incident 42" in listing
    assert "OVERRIDE" in run("vic", "decisions", "models:/llama/3").stdout

    # The audit still agrees with everything above.
    audit = run("vic", "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_input_is_refused_and_changes_nothing(gate: tuple[Run, Path], tmp_path: Path) -> None:
    run, _home = gate
    v1 = write_bundle(tmp_path / "v1", b"\x01" * 4)
    assert run("bob", "push", str(v1), "--model", "llama", *signed(v1)).returncode == 0
    uri = "models:/llama/1"
    assert_clean_error(run("rita", "promote", uri, "--to", "qa"), 2, "unknown environment")
    assert_clean_error(run("rev1", "approve", "models:/llama/9", "--for", "staging"), 2, "llama")
    assert_clean_error(
        run("rita", "override", uri, "--to", "staging", "--justification", " ", "--expires", "4h"),
        2,
        "justification",
    )
    assert_clean_error(
        run(
            "rita",
            "override",
            uri,
            "--to",
            "staging",
            "--justification",
            "x",
            "--expires",
            "2020-01-01T00:00:00Z",
        ),
        2,
        "not in the future",
    )
    assert_clean_error(
        run(
            "rita", "override", uri, "--to", "staging", "--justification", "x", "--expires", "soon"
        ),
        2,
        "duration",
    )
    assert_clean_error(run("rita", "rollback", "llama", "--env", "staging"), 2, "no release")
    assert run("rita", "promote", uri, "--to", "staging").returncode == 0
    assert_clean_error(
        run("rita", "rollback", "llama", "--env", "staging"), 2, "no earlier release"
    )
    assert_clean_error(
        run("rita", "rollback", "llama", "--env", "production", "--drill"),
        2,
        "drills run in staging",
    )

    mapping = _write(tmp_path / "map.yaml", "rules: {id: a}\n")
    assert_clean_error(
        run("alice", "policy", "set", "staging", str(mapping)), 2, "must be a list of rules"
    )
    scalar = _write(tmp_path / "scalar.yaml", "just text\n")
    assert_clean_error(run("alice", "policy", "set", "staging", str(scalar)), 2, "list of rules")
    twice = _write(
        tmp_path / "twice.yaml",
        "- {id: a, expression: 'true', message: m}\n- {id: a, expression: 'true', message: m}\n",
    )
    assert_clean_error(
        run("alice", "policy", "set", "staging", str(twice)), 2, "appears more than once"
    )
    broken = _write(
        tmp_path / "broken.yaml",
        "- {id: bad-rule, expression: 'facts.scan.verdict ==', message: m}\n",
    )
    assert_clean_error(run("alice", "policy", "set", "staging", str(broken)), 2, "bad-rule")
    assert "column" in run("alice", "policy", "set", "staging", str(broken)).stderr
    good = _write(tmp_path / "good.yaml", "- {id: ok, expression: 'true', message: m}\n")
    assert_clean_error(
        run("rita", "policy", "set", "staging", str(good)), 1, "may not set an environment policy"
    )
    shown = run("vic", "policy", "show", "staging", "--json")
    assert json.loads(shown.stdout)["source"] == "default"
    assert run("alice", "policy", "set", "staging", str(good)).returncode == 0
    assert json.loads(run("vic", "policy", "show", "staging", "--json").stdout)["source"] == "set"

    facts = _write(tmp_path / "facts.json", json.dumps({"scan": {"verdict": "unsafe"}}))
    clean = _write(
        tmp_path / "clean.yaml",
        "- {id: scan-clean, expression: \"facts.scan.verdict == 'clean'\", "
        "message: must scan clean}\n",
    )
    tested = run("vic", "policy", "test", str(clean), "--facts", str(facts))
    assert tested.returncode == 1 and "FAIL\tscan-clean" in tested.stdout
    assert run("vic", "policy", "test", str(good), "--facts", str(facts)).returncode == 0
    assert run("vic", "audit", "verify").returncode == 0
