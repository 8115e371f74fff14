"""`datasets verify-proof`'s check: a record proof document verified offline against record roots
the caller trusts (explicit, or from a dataset manifest pinned by its digest), and refused when
the proof, the record, the roots or the manifest were changed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from modelward.errors import DigestMismatchError, InputError, ProofError
from modelward.provenance.datasets import DatasetFile, DatasetManifest
from modelward.provenance.record_proofs import prove_absence, prove_record
from modelward.provenance.records import compute_record_roots
from modelward.services.offline_proofs import TrustedRecordRoots, verify_record_proof_document


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Any, DatasetManifest]:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(7)))
    roots = compute_record_roots(path)
    manifest = DatasetManifest(
        name="d1",
        files=(DatasetFile(path="data.jsonl", sha256="0" * 64, size=1, records=roots),),
        license="MIT",
        source="test",
    )
    return path, roots, manifest


def _inclusion(path: Path) -> dict[str, Any]:
    return {"included": True, "proof": prove_record(path, 4, label="data.jsonl").to_dict()}


def test_inclusion_against_root_and_pinned_manifest(dataset: Any) -> None:
    path, roots, manifest = dataset
    document = _inclusion(path)
    assert verify_record_proof_document(document, TrustedRecordRoots(root=roots.root)).kind == (
        "included"
    )
    trusted = TrustedRecordRoots(manifest=manifest.to_dict(), manifest_digest=manifest.digest)
    assert verify_record_proof_document(document, trusted).files == ("data.jsonl",)
    # `datasets show --json` output is accepted as the manifest too
    shown = {"manifest": manifest.to_dict(), "manifest_digest": manifest.digest}
    verify_record_proof_document(document["proof"], TrustedRecordRoots(manifest=shown))


def test_tampered_inclusion_proofs_fail(dataset: Any) -> None:
    path, roots, manifest = dataset
    document = _inclusion(path)
    changed_record = copy.deepcopy(document)
    changed_record["proof"]["record"] = '{"n":99}'
    flipped = copy.deepcopy(document)
    first = flipped["proof"]["auditPath"][0]
    flipped["proof"]["auditPath"][0] = ("1" if first[0] != "1" else "2") + first[1:]
    wrong_index = copy.deepcopy(document)
    wrong_index["proof"]["index"] = 5
    for bad in (changed_record, flipped, wrong_index):
        with pytest.raises(ProofError):
            verify_record_proof_document(bad, TrustedRecordRoots(root=roots.root))
    with pytest.raises(ProofError):
        verify_record_proof_document(document, TrustedRecordRoots(root="ab" * 32))
    with pytest.raises(ProofError):
        verify_record_proof_document(document, TrustedRecordRoots(root=roots.root, count=8))
    with pytest.raises(DigestMismatchError):
        verify_record_proof_document(
            document, TrustedRecordRoots(manifest=manifest.to_dict(), manifest_digest="0" * 64)
        )


def test_absence_against_sorted_root(dataset: Any) -> None:
    path, roots, _ = dataset
    proof = prove_absence(path, "ab" * 32, label="data.jsonl").to_dict()
    document = {"absent": True, "proofs": [proof]}
    trusted = TrustedRecordRoots(sorted_root=roots.sorted_root)
    assert verify_record_proof_document(document, trusted).kind == "absent"
    with pytest.raises(InputError, match="sorted root"):
        verify_record_proof_document(document, TrustedRecordRoots(root=roots.root))
    moved = copy.deepcopy(document)
    moved["proofs"][0]["recordHash"] = "00" * 32
    with pytest.raises(ProofError):
        verify_record_proof_document(moved, trusted)


def test_bad_trusted_inputs_are_input_errors(dataset: Any) -> None:
    path, _, _ = dataset
    with pytest.raises(InputError):
        verify_record_proof_document(_inclusion(path), TrustedRecordRoots())
    with pytest.raises(InputError):
        verify_record_proof_document(_inclusion(path), TrustedRecordRoots(root="xyz"))
    with pytest.raises(InputError):
        verify_record_proof_document([], TrustedRecordRoots(root="ab" * 32))
