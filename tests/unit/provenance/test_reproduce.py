"""Reproducibility: file-by-file comparison and the signed reproduction attestation."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from modelward.errors import InputError, SignatureMismatchError
from modelward.provenance.reproduce import (
    Reproduction,
    ReproductionResult,
    compare_file_digests,
    reproduction_statement,
    sign_reproduction,
    verify_reproduction,
)
from modelward.signing.keys import Signer, Verifier

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def test_identical_rebuild() -> None:
    files = {"w.bin": A, "config.json": B}
    result = compare_file_digests(files, dict(files), expected_root=C, rebuilt_root=C)
    assert result.identical
    assert result.unchanged == ("config.json", "w.bin")
    assert result.describe() == []


def test_differences_are_classified() -> None:
    result = compare_file_digests(
        {"w.bin": A, "config.json": B, "old.txt": C},
        {"w.bin": D, "config.json": B, "new.txt": C},
        expected_root=A,
        rebuilt_root=B,
    )
    assert not result.identical
    assert result.changed == ("w.bin",)
    assert result.added == ("new.txt",)
    assert result.removed == ("old.txt",)
    assert result.unchanged == ("config.json",)
    assert result.describe() == ["added: new.txt", "removed: old.txt", "changed: w.bin"]
    assert ReproductionResult.from_dict(result.to_dict()) == result


def test_bad_digests_are_refused() -> None:
    with pytest.raises(InputError, match="not a hex SHA-256"):
        compare_file_digests({"w": "xyz"}, {}, expected_root=A, rebuilt_root=A)
    with pytest.raises(InputError, match="root digests"):
        compare_file_digests({}, {}, expected_root="nope", rebuilt_root=A)
    lying = {**compare_file_digests({"w": A}, {"w": B}, expected_root=A, rebuilt_root=B).to_dict()}
    lying["identical"] = True
    with pytest.raises(InputError, match="does not agree"):
        ReproductionResult.from_dict(lying)


def test_signed_reproduction_round_trip(signer: Signer, other_signer: Signer) -> None:
    result = compare_file_digests({"w": A}, {"w": A}, expected_root=C, rebuilt_root=C)
    reproduction = Reproduction(
        result, dt.datetime(2025, 8, 1, tzinfo=dt.UTC), "bob", provenance_digest=D
    )
    envelope = sign_reproduction(reproduction_statement(reproduction, "chat"), signer)
    wire = json.dumps(envelope.to_dict())
    assert verify_reproduction(wire, [Verifier(signer.public_key)], C) == reproduction
    with pytest.raises(InputError, match="not sha256"):
        verify_reproduction(wire, [Verifier(signer.public_key)], A)
    with pytest.raises(SignatureMismatchError):
        verify_reproduction(wire, [Verifier(other_signer.public_key)], C)


def test_malformed_predicates() -> None:
    good = Reproduction(
        compare_file_digests({}, {}, expected_root=C, rebuilt_root=C),
        dt.datetime(2025, 8, 1, tzinfo=dt.UTC),
        "bob",
    ).to_predicate()
    for bad in (
        None,
        {**good, "checker": ""},
        {**good, "checkedOn": "2025-08-01"},
        {**good, "provenanceDigest": "x"},
        {**good, "added": "w"},
    ):
        with pytest.raises(InputError):
            Reproduction.from_predicate(bad)
