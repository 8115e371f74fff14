"""Evidence bundles end to end: a production release of a signed, scanned, provenanced and
evaluated version, approved by two reviewers after a denial, witnessed by two witnesses, is
exported with the real `modelward` console script and verified in a fresh process with only
the public keys; every kind of tampering is caught and named; `model_signing` verifies the
exported OMS signatures as a stranger would."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.conftest import run_modelward
from tests.integration.evidence_registry import BuiltRelease, build_release

from modelward.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.evidence_archive import read_archive, write_archive
from modelward.core.intoto import Statement
from modelward.services.context import open_registry
from modelward.services.evidence_verify import EvidenceTrust, verify_evidence_bundle
from modelward.services.state_integrity import anchored_append
from modelward.signing.keys import Signer, Verifier, load_private_key, load_public_key
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository

MODEL_SIGNING = Path(sys.executable).with_name("model_signing")


@dataclass
class Exported:
    built: BuiltRelease
    bundle: Path

    @property
    def home(self) -> Path:
        return self.built.home

    @property
    def work(self) -> Path:
        return self.built.work

    @property
    def model(self) -> Path:
        return self.built.model

    @property
    def trust(self) -> list[str]:
        return self.built.trust_args()

    @property
    def witness_keys(self) -> list[str]:
        return [f"witness={path}" for path in self.built.witness_vkeys]


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    built = build_release(tmp_path_factory.mktemp("evidence"))
    bundle = built.work / "release.evidence"
    _ok(
        run_modelward(
            "evidence", "export", "--release", "production", "--model", "llama",
            "--out", str(bundle),
            env={"MODELWARD_HOME": str(built.home), "MODELWARD_ACTOR": "alice"},
        )
    )  # fmt: skip
    return Exported(built, bundle)


def _verify(exp: Exported, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A fresh process with no registry (and a server URL nothing listens on): only the bundle
    and the public keys."""
    return run_modelward(
        "evidence", "verify", str(path), "--trust", *exp.trust, *extra, "--json",
        env={
            "MODELWARD_HOME": str(exp.work / "no-registry-here"),
            "MODELWARD_URL": "http://127.0.0.1:9",
        },
    )  # fmt: skip


def _failures(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    return [(c["link"], c["detail"]) for c in report["checks"] if not c["ok"]]


def _members(path: Path) -> list[tuple[str, bytes]]:
    return read_archive(path.read_bytes()).members


def _trust(exp: Exported) -> EvidenceTrust:
    keys = exp.home / "keys"
    ledger = load_public_key(keys / "ledger.key.pub")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    assert isinstance(ledger, Ed25519PublicKey)
    return EvidenceTrust(
        registry=Verifier(load_public_key(keys / "registry.key.pub")),
        ledger=ledger,
        uploaders=(("bob", Verifier(load_public_key(exp.work / "bob.key.pub"))),),
    )


def test_the_release_verifies_offline_in_a_fresh_process(exported: Exported) -> None:
    result = _verify(exported, exported.bundle, *exported.witness_keys, "--witnesses", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["uri"] == "models:/llama/1"
    links = {c["link"]: c["detail"] for c in report["checks"]}
    kinds = " ".join(links)
    for expected in (
        "index",
        "archive",
        "checkpoint",
        "witnesses",
        "manifest",
        "(registry-signature)",
        "(uploader-signature)",
        "(scan)",
        "(provenance)",
        "(evaluation)",
        "dataset datasets:/reviews/1",
        "approval 1",
        "approval 2",
        "release rel-2",
        "ledger event #",
        "consistency ",
    ):
        assert expected in kinds, expected
    assert sum("(evaluation)" in link for link in links) == 2
    assert sum(link.startswith("decision ") for link in links) == 3
    verdicts = [d for link, d in links.items() if link.startswith("decision ")]
    assert any("production: deny (two-independent-approvals)" in v for v in verdicts)
    assert "w1.example, w2.example" in links["witnesses"]
    assert [w["name"] for w in report["witnesses"]["vouched"]] == ["w1.example", "w2.example"]
    assert "w3.example" in report["witnesses"]["missing"]
    human = run_modelward(
        "evidence", "verify", str(exported.bundle), "--trust", *exported.trust,
        env={"MODELWARD_HOME": str(exported.work / "nothing")},
    )  # fmt: skip
    assert human.returncode == 0, human.stdout
    assert human.stdout.splitlines()[-1].startswith("verified: every link")
    assert all(line.startswith(("OK   ", "verified")) for line in human.stdout.splitlines())


def test_verify_says_as_of_when(exported: Exported) -> None:
    report = json.loads(_ok(_verify(exported, exported.bundle)).stdout)
    assert report["exported_at"].endswith("Z") and report["exported_by"] == "alice"
    checkpoint = report["checkpoint"]
    assert checkpoint["origin"].startswith("modelward/") and checkpoint["size"] > 0
    human = run_modelward(
        "evidence", "verify", str(exported.bundle), "--trust", *exported.trust,
        env={"MODELWARD_HOME": str(exported.work / "nothing")},
    )  # fmt: skip
    last = human.stdout.splitlines()[-1]
    assert f"exported at {report['exported_at']}" in last
    assert f"log {checkpoint['origin']} at size {checkpoint['size']}" in last


def test_verify_fails_unless_the_bundle_is_the_one_expected(exported: Exported) -> None:
    right = _verify(
        exported, exported.bundle,
        "--model", "llama", "--environment", "production", "--uri", "models:/llama/1",
    )  # fmt: skip
    links = {c["link"]: c for c in json.loads(_ok(right).stdout)["checks"]}
    assert links["expected"]["ok"] and "production" in links["expected"]["detail"]
    for args, fragment in (
        (("--model", "mistral"), "of model llama, not mistral"),
        (("--uri", "models:/llama/2"), "of models:/llama/1, not models:/llama/2"),
        (("--uri", "sha256:" + "0" * 64), "not sha256:0000"),
        (("--environment", "staging"), "release rel-2 in production, not staging"),
    ):
        failures = dict(_failures(_verify(exported, exported.bundle, *args)))
        assert list(failures) == ["expected"], (args, failures)
        assert fragment in failures["expected"], (args, failures)
    bad = _verify(exported, exported.bundle, "--uri", "models:/llama@production")
    assert bad.returncode == 2 and "models:/NAME/N" in bad.stdout + bad.stderr


def test_a_version_bundle_is_not_a_release_bundle(exported: Exported, tmp_path: Path) -> None:
    bundle = tmp_path / "version.evidence"
    _ok(
        run_modelward(
            "evidence", "export", "models:/llama/1", "--out", str(bundle),
            env={"MODELWARD_HOME": str(exported.home), "MODELWARD_ACTOR": "alice"},
        )
    )  # fmt: skip
    _ok(_verify(exported, bundle, "--uri", "models:/llama/1", "--model", "llama"))
    failures = dict(_failures(_verify(exported, bundle, "--environment", "production")))
    assert "not the evidence of a release" in failures["expected"]


def test_witness_policy_fails_when_too_few_vouched(exported: Exported) -> None:
    result = _verify(exported, exported.bundle, *exported.witness_keys, "--witnesses", "3")
    failures = _failures(result)
    assert failures == [(failures[0][0], failures[0][1])]
    link, detail = failures[0]
    assert link == "witnesses" and "3 required" in detail and "w1.example, w2.example" in detail


def test_a_witness_key_given_twice_counts_once(exported: Exported, tmp_path: Path) -> None:
    first = exported.built.witness_vkeys[0]
    copy = tmp_path / "copy.vkey"
    copy.write_bytes(first.read_bytes())
    result = _verify(
        exported, exported.bundle, f"witness={first}", f"witness={first}", f"witness={copy}",
        "--witnesses", "2",
    )  # fmt: skip
    failures = dict(_failures(result))
    assert list(failures) == ["witnesses"]
    assert "cosigned by 1 distinct trusted witness key(s): w1.example" in failures["witnesses"]
    assert "counted once" in failures["witnesses"] and "2 required" in failures["witnesses"]
    assert len(json.loads(result.stdout)["witnesses"]["duplicates"]) == 2


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_a_changed_byte_of_any_member_is_named(exported: Exported, tmp_path: Path) -> None:
    data = exported.bundle.read_bytes()
    trust = _trust(exported)
    assert verify_evidence_bundle(data, trust).ok
    offsets = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        offsets = [(info.name, info.offset_data, info.size) for info in tar]
    for name, offset, size in offsets:
        tampered = _flip(data, offset + size // 2)
        report = verify_evidence_bundle(tampered, trust)
        failed = {c.link: c.detail for c in report.failures}
        assert not report.ok, name
        if name == "index.dsse.json":
            assert failed, name
        else:
            assert "its bytes differ" in failed.get(f"member {name}", ""), (name, failed)
    # a header byte (the mtime field of the second member) and a trailer byte
    second_header = offsets[1][1] - 512
    for at in (second_header + 136, len(data) - 1):
        report = verify_evidence_bundle(_flip(data, at), trust)
        assert not report.ok
    # and in a fresh process, a member in the middle
    name, offset, size = offsets[len(offsets) // 2]
    path = tmp_path / "byte.evidence"
    path.write_bytes(_flip(data, offset + 1))
    assert any(link == f"member {name}" for link, _ in _failures(_verify(exported, path)))


def test_a_removed_approval_is_named(exported: Exported, tmp_path: Path) -> None:
    members = [(n, c) for n, c in _members(exported.bundle) if n != "approvals/0001.dsse.json"]
    path = tmp_path / "no-approval.evidence"
    path.write_bytes(write_archive(members))
    failures = dict(_failures(_verify(exported, path)))
    assert "removed" in failures["member approvals/0001.dsse.json"]
    assert "approval 1" in failures
    assert "an approval by rev1 for production" in failures["release rel-2"]


def _resign(exp: Exported, members: list[tuple[str, bytes]]) -> bytes:
    """Re-sign the index over tampered members with the registry's own key: what an insider
    with the key could do; each member's own link must still catch it."""
    import hashlib

    from modelward.core.intoto import Subject

    signer = Signer(load_private_key(exp.home / "keys" / "registry.key"))
    index = Envelope.from_dict(json.loads(members[0][1]))
    statement = Statement.from_bytes(index.payload)
    fresh = Statement(
        subjects=tuple(Subject.of(n, sha256=hashlib.sha256(c).hexdigest()) for n, c in members[1:]),
        predicate_type=statement.predicate_type,
        predicate=statement.predicate,
    )
    envelope = Envelope.sign(IN_TOTO_PAYLOAD_TYPE, fresh.to_bytes(), signer.sign, signer.keyid)
    return write_archive(
        [("index.dsse.json", json.dumps(envelope.to_dict()).encode()), *members[1:]]
    )


def test_a_swapped_proof_is_named(exported: Exported, tmp_path: Path) -> None:
    members = _members(exported.bundle)
    proofs = [n for n, _ in members if n.startswith("ledger/proofs/")]
    first, second = proofs[0], proofs[1]
    contents = dict(members)
    swapped = [(n, contents[second] if n == first else c) for n, c in members]
    path = tmp_path / "swapped.evidence"
    path.write_bytes(write_archive(swapped))
    failures = dict(_failures(_verify(exported, path)))
    assert f"member {first}" in failures
    seq = int(first.rsplit("/", 1)[1].split(".")[0])
    assert f"ledger event #{seq}" in failures
    # even with the index re-signed over it, the event's own link names it
    path.write_bytes(_resign(exported, swapped))
    failures = dict(_failures(_verify(exported, path)))
    assert "for another entry" in failures[f"ledger event #{seq}"]
    assert f"member {first}" not in failures


def test_a_checkpoint_from_another_log_is_named(exported: Exported, tmp_path: Path) -> None:
    members = _members(exported.bundle)
    contents = dict(members)
    ours = contents["ledger/checkpoint.note"].decode()
    ledger_pub = load_public_key(exported.home / "keys" / "ledger.key.pub")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from modelward.core.checkpoint import NoteVerifier

    assert isinstance(ledger_pub, Ed25519PublicKey)
    origin = Statement.from_bytes(
        Envelope.from_dict(json.loads(contents["index.dsse.json"])).payload
    ).predicate["registry"]["origin"]
    real = open_checkpoint(ours, NoteVerifier.from_public_key(origin, ledger_pub))
    other_key = Ed25519PrivateKey.generate()
    for label, checkpoint in (
        ("same origin, another key", Checkpoint(origin, real.size, real.root_hash)),
        ("another origin", Checkpoint("example.org/other-log", real.size, real.root_hash)),
    ):
        note = sign_checkpoint(checkpoint, checkpoint.origin, other_key).encode()
        replaced = [(n, note if n == "ledger/checkpoint.note" else c) for n, c in members]
        path = tmp_path / "other-log.evidence"
        path.write_bytes(_resign(exported, replaced))
        failures = dict(_failures(_verify(exported, path)))
        assert "not this log's checkpoint" in failures["checkpoint"], label
        assert any(link.startswith("ledger event #") for link in failures), label


def test_untrusted_keys_and_bad_input(exported: Exported, tmp_path: Path) -> None:
    # without the uploader's key, only the uploader's signature fails, and says so
    no_uploader = run_modelward(
        "evidence", "verify", str(exported.bundle), "--trust", *exported.trust[:2], "--json",
    )  # fmt: skip
    failures = _failures(no_uploader)
    assert len(failures) == 1 and "(uploader-signature)" in failures[0][0]
    assert "not trusted" in failures[0][1]
    # offline, the fix is a --trust key, not the registry-side `modelward keys trust`
    assert "--trust uploader=" in failures[0][1] and "keys trust" not in failures[0][1]
    # a witness or ledger vkey file that does not parse is named
    bad_vkey = tmp_path / "bad.vkey"
    bad_vkey.write_text("garbage\n")
    for role in ("witness", "ledger"):
        trust = [t for t in exported.trust if not t.startswith(f"{role}=")]
        bad = run_modelward(
            "evidence", "verify", str(exported.bundle), "--trust", *trust, f"{role}={bad_vkey}",
        )  # fmt: skip
        assert bad.returncode == 2 and str(bad_vkey) in bad.stderr, (role, bad.stderr)
    # another registry key: the index and every registry-signed piece fail
    stranger = tmp_path / "stranger.key"
    _ok(run_modelward("keys", "generate", "--out", str(stranger)))
    wrong = run_modelward(
        "evidence", "verify", str(exported.bundle), "--trust", f"registry={stranger}.pub",
        *exported.trust[1:], "--json",
    )  # fmt: skip
    assert dict(_failures(wrong))["index"].startswith("the index's signature does not verify")
    # not a bundle, truncated, missing keys: exit 2 with a message
    garbage = tmp_path / "garbage.evidence"
    garbage.write_bytes(b"not a tar file" * 100)
    truncated = tmp_path / "truncated.evidence"
    truncated.write_bytes(exported.bundle.read_bytes()[:1500])
    for path, message in ((garbage, "not a tar"), (truncated, "")):
        bad = run_modelward("evidence", "verify", str(path), "--trust", *exported.trust)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "Traceback" not in bad.stderr and message in bad.stderr
    keys = run_modelward("evidence", "verify", str(exported.bundle), "--trust", exported.trust[0])
    assert keys.returncode == 2 and "one ledger key" in keys.stderr


def _reindexed(exp: Exported, mutate: Any) -> bytes:
    """The bundle with its index's predicate changed by `mutate` and the old signature kept
    (so it no longer verifies): what anyone can hand to `evidence verify`."""
    import base64
    import copy

    members = _members(exp.bundle)
    envelope = json.loads(members[0][1])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    predicate = copy.deepcopy(statement["predicate"])
    mutate(predicate)
    statement["predicate"] = predicate
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    raw = json.dumps(envelope, indent=2, sort_keys=True).encode() + b"\n"
    return write_archive([("index.dsse.json", raw), *members[1:]])


def _first(kind: str, key: str, value: Any) -> Any:
    def mutate(predicate: dict[str, Any]) -> None:
        for entry in predicate["members"]:
            if entry.get("kind") == kind:
                entry[key] = value
                return

    return mutate


MALFORMED_INDEXES: dict[str, Any] = {
    "attestation row is a string": _first("attestation", "row", "x"),
    "approval row is a list": _first("approval", "row", [1]),
    "decision row key is a dict": _first("decision", "row", {"table": "t", "key": {}}),
    "release event is a string": _first("release", "event", "18"),
    "ledger event seq is a dict": _first("ledger-event", "seq", {"a": 1}),
    "ledger event seq is a bool": _first("ledger-event", "seq", True),
    "consistency size is a string": _first("consistency", "old_size", "1"),
    "unsigned approval row is an int": lambda p: p.__setitem__("unsigned_approvals", [{"row": 5}]),
    "unsigned approvals is a dict": lambda p: p.__setitem__("unsigned_approvals", {"a": 1}),
    "members is a string": lambda p: p.__setitem__("members", "abc"),
    "a member is a list": lambda p: p["members"].append([1, 2]),
    "release is a list": lambda p: p.__setitem__("release", ["x"]),
    "checkpoint is a string": lambda p: p.__setitem__("checkpoint", "ledger/checkpoint.note"),
    "version event is a list": lambda p: p["version"].__setitem__("event", [1]),
    "version uri is missing": lambda p: p["version"].pop("uri"),
    "registry origin is an int": lambda p: p["registry"].__setitem__("origin", 5),
    "omitted what is None": lambda p: p.__setitem__("omitted", [{"what": None, "reason": "r"}]),
    "dataset governance events hold a string": _first(
        "dataset-manifest", "governance_events", ["7"]
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_INDEXES))
def test_a_malformed_index_fails_with_a_message(exported: Exported, case: str) -> None:
    data = _reindexed(exported, MALFORMED_INDEXES[case])
    report = verify_evidence_bundle(data, _trust(exported))
    assert not report.ok
    failed = {c.link: c.detail for c in report.failures}
    assert failed["index"].startswith("malformed index:"), (case, failed)


def test_a_malformed_index_is_exit_1_in_the_cli(exported: Exported, tmp_path: Path) -> None:
    for case in ("attestation row is a string", "unsigned approval row is an int"):
        path = tmp_path / "malformed.evidence"
        path.write_bytes(_reindexed(exported, MALFORMED_INDEXES[case]))
        result = _verify(exported, path)
        assert "internal error" not in result.stderr
        assert "malformed index" in dict(_failures(result))["index"]


def test_unsigned_legacy_approvals_are_named(exported: Exported, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(exported.home, home)
    context = open_registry(home)
    try:
        with context.database.transaction() as conn:
            record = RegistryRepository(conn).version("llama", 1)
            now = datetime.now(UTC)
            approval_id = GateRepository(conn).add_approval(
                record.id, "staging", "rev1", "old style", False, format_time(now)
            )
            anchored_append(
                conn,
                "rev1",
                "approval.add",
                record.uri,
                {"model": "llama", "version": 1, "environment": "staging", "reviewer": "rev1"},
                now,
                rows=[("gate_approvals", str(approval_id))],
            )
    finally:
        context.close()
    bundle = tmp_path / "legacy.evidence"
    made = run_modelward(
        "evidence", "export", "models:/llama/1", "--out", str(bundle),
        env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": "alice"},
    )  # fmt: skip
    _ok(made)
    failures = dict(_failures(_verify(exported, bundle)))
    assert list(failures) == [f"approval {approval_id}"]
    assert "unsigned" in failures[f"approval {approval_id}"]
    accepted = _verify(exported, bundle, "--allow-unsigned-approvals")
    assert accepted.returncode == 0, accepted.stdout
    assert "UNSIGNED" in accepted.stdout


def test_model_signing_verifies_the_exported_signatures(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "x"
    with tarfile.open(exported.bundle) as tar:
        tar.extractall(out, filter="data")
    for member, key in (
        ("0001-registry-signature", exported.home / "keys" / "registry.key.pub"),
        ("0002-uploader-signature", exported.work / "bob.key.pub"),
    ):
        signature = out / "attestations" / f"{member}.sigstore.json"
        result = subprocess.run(
            [str(MODEL_SIGNING), "verify", "key", str(exported.model), "--signature",
             str(signature), "--public_key", str(key)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0, (member, result.stdout + result.stderr)


def test_a_stock_dsse_verifier_and_sha256sum_accept_the_members(exported: Exported) -> None:
    """securesystemslib's DSSE verifier checks every envelope with the registry's public key, and
    every member hashes to the digest the index lists (`sha256sum -c` would agree)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope as StockEnvelope
    from securesystemslib.signer import SSlibKey

    members = dict(_members(exported.bundle))
    index = json.loads(members["index.dsse.json"])
    statement = json.loads(__import__("base64").b64decode(index["payload"]))
    public = serialization.load_pem_public_key(
        (exported.home / "keys" / "registry.key.pub").read_bytes()
    )
    key = SSlibKey.from_crypto(public, keyid=statement["predicate"]["registry"]["key_id"])  # type: ignore[arg-type]
    envelopes = [n for n in members if n.endswith(".dsse.json")]
    assert len(envelopes) >= 8
    for name in envelopes:
        StockEnvelope.from_dict(json.loads(members[name])).verify([key], 1)
    listed = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert listed == {
        n: hashlib.sha256(c).hexdigest() for n, c in members.items() if n != "index.dsse.json"
    }
