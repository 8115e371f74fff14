"""track_run: capture of source, environment and run facts, and the signed statement on exit."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelward.errors import InputError, PathError
from modelward.provenance.run_capture import (
    environment_digest,
    git_source,
    gpu_type,
    track_run,
    without_credentials,
    write_envelope,
)
from modelward.provenance.slsa import BaseModel, completeness, training_run_of, verify_provenance
from modelward.signing.keys import Signer, Verifier

COMMIT = "1234567890abcdef1234567890abcdef12345678"


class FakeRunner:
    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, arguments: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(arguments)
        for prefix, (code, out) in self.answers.items():
            if " ".join(arguments).startswith(prefix):
                return subprocess.CompletedProcess(arguments, code, out, "")
        raise FileNotFoundError(arguments[0])


def _ticking_clock() -> Iterator[dt.datetime]:
    moment = dt.datetime(2025, 5, 1, 8, 0, tzinfo=dt.UTC)
    while True:
        yield moment
        moment += dt.timedelta(minutes=30)


GIT = {
    "git rev-parse HEAD": (0, COMMIT + "\n"),
    "git config --get remote.origin.url": (0, "https://bot:s3cret@git.example.org/ml.git\n"),
    "git status": (0, " M train.py\n"),
}


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "out" / "model"
    bundle.mkdir(parents=True)
    (bundle / "weights.safetensors").write_bytes(b"weights")
    (bundle / "config.json").write_text("{}", encoding="utf-8")
    return bundle


def test_track_run_writes_a_verifiable_complete_statement(tmp_path: Path, signer: Signer) -> None:
    bundle = _bundle(tmp_path)
    ticks = _ticking_clock()
    with track_run(
        output=bundle,
        signer=signer,
        hyperparameters={"lr": 0.001},
        seeds={"torch": 7},
        command=["python", "train.py"],
        invocation_id="run-1",
        source_dir=tmp_path,
        clock=lambda: next(ticks),
        runner=FakeRunner(GIT),
        distributions=[("numpy", "2.0.0"), ("Torch", "2.3.0")],
        root_digest_of=lambda path: "ab" * 32,
    ) as run:
        run.log_hyperparameters(epochs=3)
        run.use_dataset("datasets:/chat/2", "cd" * 32)
        run.set_base_model("ef" * 32, "models:/base/1")
    assert run.written_to == bundle.with_name("model.provenance.dsse.json")
    wire = run.written_to.read_bytes()
    statement = verify_provenance(wire, [Verifier(signer.public_key)], "ab" * 32)
    captured = training_run_of(statement)
    assert captured.source is not None
    assert captured.source.repository == "https://git.example.org/ml.git"
    assert captured.source.commit == COMMIT
    assert captured.source.dirty is True
    assert captured.hyperparameters == {"lr": 0.001, "epochs": 3}
    assert captured.finished_on - captured.started_on == dt.timedelta(minutes=30)
    assert captured.base_model == BaseModel("ef" * 32, "models:/base/1")
    facts = completeness(statement)
    assert {name for name, ok in facts.items() if not ok} <= {"gpu"}
    assert statement.subjects[0].name == "model"


def test_default_bundle_hasher_uses_the_model_root_digest(tmp_path: Path, signer: Signer) -> None:
    from modelward.core.manifest import Serialization
    from modelward.storage.model_files import hash_model

    bundle = _bundle(tmp_path)
    with track_run(output=bundle, runner=FakeRunner({}), distributions=[]) as run:
        pass
    assert run.statement is not None
    expected = hash_model(bundle, Serialization()).root_digest
    assert run.statement.subjects[0].digest_for("sha256") == expected
    assert run.envelope is None and run.written_to is None


def test_a_failing_run_writes_nothing(tmp_path: Path, signer: Signer) -> None:
    bundle = _bundle(tmp_path)
    with (
        pytest.raises(RuntimeError),
        track_run(output=bundle, signer=signer, runner=FakeRunner({}), distributions=[]) as run,
    ):
        raise RuntimeError("training diverged")
    assert run.run is None
    assert not list(bundle.parent.glob("*.dsse.json"))


def test_existing_statement_and_missing_bundle(tmp_path: Path, signer: Signer) -> None:
    bundle = _bundle(tmp_path)
    target = tmp_path / "prov.json"
    target.write_text("keep", encoding="utf-8")
    with (
        pytest.raises(PathError, match="refusing to overwrite"),
        track_run(
            output=bundle,
            signer=signer,
            statement_path=target,
            runner=FakeRunner({}),
            distributions=[],
            root_digest_of=lambda p: "ab" * 32,
        ),
    ):
        pass
    assert target.read_text(encoding="utf-8") == "keep"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".provenance-")] == []
    with (
        pytest.raises(PathError, match="does not exist"),
        track_run(output=tmp_path / "nothing", runner=FakeRunner({}), distributions=[]),
    ):
        pass


def test_without_git_or_gpu_the_facts_are_absent(tmp_path: Path) -> None:
    assert git_source(tmp_path, FakeRunner({})) is None
    assert git_source(tmp_path, FakeRunner({"git rev-parse": (128, "")})) is None
    with track_run(runner=FakeRunner({}), distributions=[]) as run:
        run.set_seed("numpy", 3)
    assert run.run is not None and run.run.source is None
    assert run.statement is None
    with pytest.raises(InputError):
        run.set_seed("numpy", 1.5)  # type: ignore[arg-type]


def test_real_git_repository(tmp_path: Path) -> None:
    def git(*arguments: str) -> None:
        subprocess.run(["git", *arguments], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "train.py").write_text("print(1)\n", encoding="utf-8")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "x")
    clean = git_source(tmp_path)
    assert clean is not None and clean.dirty is False and clean.repository is None
    assert clean.commit is not None and len(clean.commit) in (40, 64)
    (tmp_path / "train.py").write_text("print(2)\n", encoding="utf-8")
    dirty = git_source(tmp_path)
    assert dirty is not None and dirty.dirty is True


def test_gpu_type_uses_nvidia_smi_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/nvidia-smi")
    runner = FakeRunner({"nvidia-smi": (0, "NVIDIA H100\nNVIDIA H100\n")})
    assert gpu_type(runner) == "NVIDIA H100"
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert gpu_type(runner) is None


def test_environment_digest_is_order_and_spelling_independent() -> None:
    one = environment_digest([("Torch", "2.3.0"), ("numpy", "2.0.0")])
    two = environment_digest([("numpy", "2.0.0"), ("torch", "2.3.0"), ("torch", "2.3.0")])
    three = environment_digest([("numpy", "2.0.1"), ("torch", "2.3.0")])
    assert one == two != three
    assert one.startswith("sha256:") and len(one) == 71


def test_credentials_are_stripped_from_remote_urls() -> None:
    assert without_credentials("https://u:p@h.example/r.git") == "https://h.example/r.git"
    assert without_credentials("git@h.example:r.git") == "git@h.example:r.git"


def test_write_envelope_output_is_json(tmp_path: Path, signer: Signer) -> None:
    from modelward.core.dsse import Envelope

    envelope = Envelope.sign("application/vnd.in-toto+json", b"{}", signer.sign)
    write_envelope(envelope, tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))["payload"] == "e30="
    with pytest.raises(PathError):
        write_envelope(envelope, tmp_path / "missing-dir" / "e.json")
