"""Datasets, training provenance, evaluations, lineage, ML-BOM and reproduction end to end through
the real `modelward` console script on a temporary registry: good paths, every bad input's exit
code and message with nothing stored, ledger events, and the audit still verifying."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import assert_clean_error, run_modelward

from modelward.provenance.records import json_record_hash
from modelward.provenance.slsa import (
    DatasetUse,
    TrainingRun,
    provenance_statement,
    sign_provenance,
)
from modelward.signing.keys import Signer, load_private_key

Run = Callable[..., subprocess.CompletedProcess[str]]
ZERO = "0" * 64


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Run, Path]:
    home = tmp_path / "home"

    def run(*args: str, actor: str = "alice") -> subprocess.CompletedProcess[str]:
        return run_modelward(
            *args, env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": actor}, cwd=tmp_path
        )

    assert run("init").returncode == 0
    return run, home


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> object:
    return json.loads(ok(result).stdout)


def ledger_actions(run: Run) -> list[str]:
    events = as_json(run("audit", "log", "--json"))
    assert isinstance(events, list)
    return [e["action"] for e in events]


def write_bundle(folder: Path, weights: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}'
    )
    (folder / "weights.bin").write_text(weights)
    return folder


def make_dataset(folder: Path) -> Path:
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n\n{"text": "c"}\n')
    (folder / "labels.csv").write_text("id,label\n1,pos\n2,neg\n")
    pq.write_table(pa.table({"x": [1, 2, 3]}), folder / "extra.parquet")
    (folder / "README").write_text("notes\n")
    return folder


def test_datasets_add_list_show_prove_and_bad_input(
    registry: tuple[Run, Path], tmp_path: Path
) -> None:
    run, _ = registry
    data = make_dataset(tmp_path / "reviews")
    qa = tmp_path / "qa.txt"
    qa.write_text("labelling QA: 98% agreement\n")
    added = as_json(
        run(
            "datasets",
            "add",
            str(data),
            "--name",
            "reviews",
            "--license",
            "cc-by-4.0",
            "--source",
            "https://example.org/reviews",
            "--consent",
            "granted",
            "--retention-until",
            "2999-12-31",
            "--owner",
            "Data Team",
            "--labeling-qa",
            str(qa),
            "--json",
        )
    )
    assert isinstance(added, dict)
    assert added["uri"] == "datasets:/reviews/1" and added["created"] is True
    files = {f["path"]: f for f in added["manifest"]["files"]}
    assert set(files) == {"README", "extra.parquet", "labels.csv", "train.jsonl"}
    assert files["train.jsonl"]["records"]["count"] == 3
    assert files["labels.csv"]["records"]["count"] == 2
    assert files["extra.parquet"]["records"]["count"] == 3
    assert "records" not in files["README"]
    assert added["manifest"]["license"] == "CC-BY-4.0"

    again = as_json(
        run(
            "datasets",
            "add",
            str(data),
            "--name",
            "reviews",
            "--license",
            "CC-BY-4.0",
            "--source",
            "https://example.org/reviews",
            "--consent",
            "granted",
            "--retention-until",
            "2999-12-31",
            "--owner",
            "Data Team",
            "--labeling-qa",
            str(qa),
            "--json",
        )
    )
    assert isinstance(again, dict) and again["created"] is False

    listed = as_json(run("datasets", "list", "--json"))
    assert isinstance(listed, list) and [r["uri"] for r in listed] == ["datasets:/reviews/1"]
    assert listed[0]["eligibility"]["eligible"] is True

    # inclusion: line 4 of train.jsonl is the third record (line 3 is blank)
    proof = as_json(
        run("datasets", "prove", "datasets:/reviews/1", "--record", "train.jsonl:4", "--json")
    )
    assert isinstance(proof, dict)
    assert proof["proof"]["index"] == 2 and proof["proof"]["record"] == '{"text":"c"}'
    assert_clean_error(
        run("datasets", "prove", "datasets:/reviews/1", "--record", "train.jsonl:3"),
        2,
        "line/row 3",
    )
    # absence: a record that is not there, then one that is
    absent = as_json(run("datasets", "prove", "datasets:/reviews/1", "--absent", ZERO, "--json"))
    assert isinstance(absent, dict) and len(absent["proofs"]) == 3
    present = json_record_hash({"text": "b"})
    assert_clean_error(
        run("datasets", "prove", "datasets:/reviews/1", "--absent", present), 1, "is present"
    )
    assert_clean_error(run("datasets", "show", "datasets:/reviews/9"), 2, "no version 9")

    # bad input: a clear error, exit 2, nothing stored
    before = ledger_actions(run)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2,3\n")
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"a": 1}\n{"a": \n')
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 not really parquet")
    common = ["--name", "bad", "--source", "somewhere"]
    cases = [
        ([str(data), "--license", "NOT-A-LICENCE"], "not an SPDX licence"),
        ([str(data), "--license", "MIT", "--retention-until", "31/12/2030"], "YYYY-MM-DD"),
        ([str(bad_csv), "--license", "MIT"], "has 3 fields"),
        ([str(bad_jsonl), "--license", "MIT"], "bad.jsonl:2: malformed JSON"),
        ([str(bad_parquet), "--license", "MIT"], "not a readable Parquet file"),
        ([str(tmp_path / "missing"), "--license", "MIT"], "no such file"),
    ]
    for args, message in cases:
        assert_clean_error(run("datasets", "add", *args, *common), 2, message)
    assert ledger_actions(run) == before
    assert_clean_error(run("datasets", "list", "bad"), 2, "no dataset named 'bad'")
    assert "dataset.add" in before


def record_provenance(
    run: Run, output: Path, key: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run("provenance", "record", "--output", str(output), "--key", str(key), *extra)


def foreign_statement(
    bundle_digest: str, key: Path, datasets: tuple[DatasetUse, ...] = ()
) -> dict[str, object]:
    now = datetime.now(UTC)
    training = TrainingRun(
        builder_id="https://example.org/builder",
        invocation_id="run-1",
        started_on=now,
        finished_on=now,
        datasets=datasets,
    )
    statement = provenance_statement(training, bundle_digest, "bundle")
    return sign_provenance(statement, Signer(load_private_key(key))).to_dict()


def test_push_with_provenance_lineage_and_consent_withdrawal(
    registry: tuple[Run, Path], tmp_path: Path
) -> None:
    run, home = registry
    ok(run("keys", "generate", "--out", str(tmp_path / "trainer.key")))
    ok(run("keys", "generate", "--out", str(tmp_path / "stranger.key")))
    trainer_key, trainer_pub = tmp_path / "trainer.key", tmp_path / "trainer.key.pub"
    ok(run("push", str(write_bundle(tmp_path / "base", "w0")), "--model", "base"))
    ok(
        run(
            "datasets",
            "add",
            str(make_dataset(tmp_path / "data")),
            "--name",
            "reviews",
            "--license",
            "MIT",
            "--source",
            "crawl",
            "--consent",
            "granted",
        )
    )
    script = tmp_path / "train.py"
    script.write_text(
        "import pathlib, sys\n"
        "out = pathlib.Path(sys.argv[1]); out.mkdir()\n"
        "(out / 'config.json').write_text('{\"model_type\": \"llama\"}')\n"
        "(out / 'weights.bin').write_text('w1')\n"
    )
    hyper = tmp_path / "hp.json"
    hyper.write_text('{"lr": 0.001, "epochs": 3}')
    out = tmp_path / "ft"
    recorded = as_json(
        record_provenance(
            run,
            out,
            trainer_key,
            "--dataset",
            "datasets:/reviews/1",
            "--base-model",
            "models:/base/1",
            "--hyperparameters",
            str(hyper),
            "--seed",
            "42",
            "--seed",
            "data=7",
            "--json",
            "--",
            sys.executable,
            str(script),
            str(out),
        )
    )
    assert isinstance(recorded, dict)
    statement_path = Path(recorded["path"])
    assert statement_path == tmp_path / "ft.provenance.dsse.json"
    assert recorded["completeness"]["datasets"] and recorded["completeness"]["seeds"]
    assert recorded["completeness"]["base_model"] and recorded["completeness"]["command"]

    # bad provenance: nothing stored, the right exit code and message
    before = ledger_actions(run)
    assert_clean_error(
        run("push", str(out), "--model", "ft", "--provenance", str(statement_path)),
        1,
        "no trusted keys",
    )
    assert_clean_error(
        run(
            "push",
            str(out),
            "--model",
            "ft",
            "--provenance",
            str(statement_path),
            "--provenance-key",
            str(tmp_path / "stranger.key.pub"),
        ),
        1,
        "unknown key",
    )
    other = tmp_path / "other.json"
    other.write_text(json.dumps(foreign_statement("ab" * 32, trainer_key)))
    assert_clean_error(
        run(
            "push",
            str(out),
            "--model",
            "ft",
            "--provenance",
            str(other),
            "--provenance-key",
            str(trainer_pub),
        ),
        2,
        "not sha256:",
    )
    digest = recorded["subject"].removeprefix("sha256:")
    ghost = tmp_path / "ghost.json"
    ghost.write_text(
        json.dumps(foreign_statement(digest, trainer_key, (DatasetUse("datasets:/ghost/1", ZERO),)))
    )
    assert_clean_error(
        run(
            "push",
            str(out),
            "--model",
            "ft",
            "--provenance",
            str(ghost),
            "--provenance-key",
            str(trainer_pub),
        ),
        2,
        "datasets:/ghost/1",
    )
    unsigned = tmp_path / "unsigned.json"
    envelope = json.loads(statement_path.read_text())
    unsigned.write_text(json.dumps({**envelope, "signatures": []}))
    assert_clean_error(
        run(
            "push",
            str(out),
            "--model",
            "ft",
            "--provenance",
            str(unsigned),
            "--provenance-key",
            str(trainer_pub),
        ),
        2,
        "signature",
    )
    malformed = tmp_path / "malformed.json"
    malformed.write_text("{not json")
    assert_clean_error(
        run("push", str(out), "--model", "ft", "--provenance", str(malformed)), 2, "not JSON"
    )
    assert ledger_actions(run) == before
    assert_clean_error(run("versions", "list", "ft"), 2, "no model named 'ft'")

    # the good push, with the trainer's key given on the command line
    ok(
        run(
            "push",
            str(out),
            "--model",
            "ft",
            "--provenance",
            str(statement_path),
            "--provenance-key",
            str(trainer_pub),
        )
    )
    shown = as_json(run("show", "models:/ft/1", "--json"))
    assert isinstance(shown, dict)
    facts = shown["provenance"]
    assert facts["present"] is True and facts["datasets"] == ["datasets:/reviews/1"]
    assert facts["base_model"] == "models:/base/1" and facts["datasets_eligible"] is True
    assert facts["fields"]["hyperparameters"] is True and facts["fields"]["gpu"] is False
    assert "gpu" not in facts["missing"] and "gpu" not in facts["required"]  # CPU runs count
    assert "provenance" in [a["kind"] for a in shown["attestations"]]

    # a second fine-tune built on ft/1, its signer trusted through $MODELWARD_HOME/trusted_keys
    (home / "trusted_keys").mkdir()
    (home / "trusted_keys" / "trainer.pub").write_bytes(trainer_pub.read_bytes())
    out2 = write_bundle(tmp_path / "ft2", "w2")
    ok(record_provenance(run, out2, trainer_key, "--base-model", "models:/ft/1"))
    ok(
        run(
            "push",
            str(out2),
            "--model",
            "ft2",
            "--provenance",
            str(tmp_path / "ft2.provenance.dsse.json"),
        )
    )
    ok(run("alias", "set", "ft2", "champion", "1"))
    tree = ok(run("lineage", "models:/ft2@champion")).stdout
    assert tree.index("version: models:/ft2/1") < tree.index("alias: models:/ft2@champion")
    assert tree.index("training-run:") < tree.index("version: models:/ft/1")
    assert tree.index("version: models:/ft/1") < tree.index("dataset: datasets:/reviews/1")
    assert "version: models:/base/1" in tree
    down = as_json(run("lineage", "datasets:/reviews/1", "--downstream", "--json"))
    assert isinstance(down, dict)
    assert [v["uri"] for v in down["downstream"]] == ["models:/ft/1", "models:/ft2/1"]
    down_base = as_json(run("lineage", "models:/base/1", "--downstream", "--json"))
    assert isinstance(down_base, dict)
    assert [v["uri"] for v in down_base["downstream"]] == ["models:/ft/1", "models:/ft2/1"]

    # consent withdrawn: a governance record, the dataset ineligible, its users flagged
    ok(run("datasets", "set-consent", "reviews/1", "withdrawn", "--reason", "takedown request"))
    dataset = as_json(run("datasets", "show", "datasets:/reviews/1", "--json"))
    assert isinstance(dataset, dict)
    assert dataset["manifest"]["consent"] == "granted"  # the version itself never changes
    assert dataset["effective"]["consent"] == "withdrawn"
    assert dataset["eligibility"]["eligible"] is False
    assert {(v["uri"], v["flagged"]) for v in dataset["downstream"]} == {
        ("models:/ft/1", True),
        ("models:/ft2/1", True),
    }
    facts = as_json(run("show", "models:/ft/1", "--json"))["provenance"]  # type: ignore[index]
    assert facts["datasets_eligible"] is False
    assert "consent has been withdrawn" in facts["ineligible_datasets"]["datasets:/reviews/1"]
    assert "FLAGGED" in ok(run("show", "models:/ft/1")).stdout
    # ... and no longer only shown: eligibility is a fact canary and production deny on
    gate_facts = as_json(run("facts", "models:/ft/1", "--to", "canary", "--json"))
    assert isinstance(gate_facts, dict)
    assert gate_facts["datasets"]["eligible"] is False
    assert "datasets:/reviews/1" in gate_facts["datasets"]["ineligible"]
    assert (
        "INELIGIBLE datasets:/reviews/1"
        in ok(run("facts", "models:/ft/1", "--to", "canary")).stdout
    )
    assert_clean_error(
        record_provenance(run, tmp_path / "nothing", trainer_key, "--dataset", "datasets:/x/1"),
        2,
        "no dataset named 'x'",
    )
    assert_clean_error(run("datasets", "set-retention", "reviews/1", "2030-02-30"), 2, "calendar")

    actions = ledger_actions(run)
    assert actions.count("provenance.attach") == 2
    assert "dataset.governance" in actions and "dataset.add" in actions
    assert ok(run("audit", "verify")).returncode == 0


def test_evaluations_bom_and_reproduction(registry: tuple[Run, Path], tmp_path: Path) -> None:
    run, _ = registry
    ok(run("push", str(write_bundle(tmp_path / "a", "wa")), "--model", "m"))
    ok(run("push", str(write_bundle(tmp_path / "b", "wb")), "--model", "m"))
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "metrics": {"accuracy": 0.8, "loss": 0.5},
                "tests": [{"name": "loads", "passed": True}],
            }
        )
    )
    attached = as_json(
        run(
            "eval", "attach", "models:/m/1", "--suite", "smoke", "--results", str(results), "--json"
        )
    )
    assert isinstance(attached, dict) and attached["result"] == "PASSED"

    # eval run: the command sees the verified bundle and writes results; no network
    evaluator = tmp_path / "evaluate.py"
    evaluator.write_text(
        "import json, os, pathlib, socket\n"
        "bundle = pathlib.Path(os.environ['MODELWARD_BUNDLE'])\n"
        "weights = (bundle / 'weights.bin').read_text()\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=1).close()\n"
        "    loopback = 'reachable'\n"
        "except OSError:\n"
        "    loopback = 'closed'\n"
        "json.dump({'metrics': {'accuracy': 0.9}, 'tests': [{'name': 'weights-' + weights,\n"
        "           'passed': True}], 'configuration': {'loopback': loopback}},\n"
        "          open(os.environ['MODELWARD_RESULTS'], 'w'))\n"
    )
    ran = as_json(
        run(
            "eval",
            "run",
            "models:/m/2",
            "--suite",
            "smoke",
            "--timeout",
            "60",
            "--json",
            "--",
            sys.executable,
            str(evaluator),
        )
    )
    assert isinstance(ran, dict) and ran["exit_code"] == 0 and ran["result"] == "PASSED"
    assert ran["network"] in ("isolated", "proxies-disabled")
    shown = as_json(run("show", "models:/m/2", "--json"))
    assert isinstance(shown, dict)
    [evaluation] = shown["evaluations"]
    assert evaluation["verified"] and evaluation["tests"] == [
        {"name": "weights-wb", "passed": True}
    ]
    assert evaluation["evaluator"] == "alice" and evaluation["metrics"] == {"accuracy": 0.9}
    compared = as_json(run("eval", "compare", "models:/m/1", "models:/m/2", "--json"))
    assert isinstance(compared, dict)
    deltas = {d["name"]: d for d in compared["metrics"]}
    assert deltas["accuracy"]["delta"] == pytest.approx(0.1)
    assert deltas["loss"]["b"] is None
    assert "+0.1" in ok(run("eval", "compare", "models:/m/1", "models:/m/2")).stdout

    before = ledger_actions(run)
    assert_clean_error(
        run(
            "eval",
            "run",
            "models:/m/2",
            "--suite",
            "slow",
            "--timeout",
            "1",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(30)",
        ),
        1,
        "longer than 1 seconds",
    )
    assert_clean_error(
        run("eval", "run", "models:/m/2", "--suite", "silent", "--", sys.executable, "-c", "0"),
        1,
        "wrote no results",
    )
    results.write_text('{"metrics": {"accuracy": "high"}}')
    assert_clean_error(
        run("eval", "attach", "models:/m/1", "--suite", "smoke", "--results", str(results)),
        2,
        "not a number",
    )
    assert ledger_actions(run) == before

    bom_path = tmp_path / "bom.json"
    ok(run("bom", "models:/m/2", "--out", str(bom_path)))
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = bom_path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    card = bom["metadata"]["component"]["modelCard"]
    assert card["modelParameters"]["architectureFamily"] == "llama"
    assert card["modelParameters"]["modelArchitecture"] == "LlamaForCausalLM"
    metrics = card["quantitativeAnalysis"]["performanceMetrics"]
    assert {"type": "accuracy", "value": "0.9", "slice": "smoke"} in metrics

    rebuilt = tmp_path / "rebuilt"
    write_bundle(rebuilt, "wb")
    identical = as_json(
        run("reproduce", "check", "models:/m/2", "--rebuilt", str(rebuilt), "--json")
    )
    assert isinstance(identical, dict) and identical["identical"] is True
    (rebuilt / "weights.bin").write_text("drifted")
    (rebuilt / "extra.txt").write_text("new")
    differs = run("reproduce", "check", "models:/m/2", "--rebuilt", str(rebuilt))
    assert differs.returncode == 1
    assert "changed: weights.bin" in differs.stdout and "added: extra.txt" in differs.stdout
    kinds = [a["kind"] for a in as_json(run("show", "models:/m/2", "--json"))["attestations"]]  # type: ignore[index]
    assert kinds.count("reproduction") == 2 and kinds.count("evaluation") == 1

    actions = ledger_actions(run)
    assert actions.count("evaluation.attach") == 2 and actions.count("reproduction.check") == 2
    assert ok(run("audit", "verify")).returncode == 0
