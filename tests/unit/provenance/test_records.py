"""Record extraction, record roots and record proofs for JSONL, CSV and Parquet files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelward.core import merkle
from modelward.errors import InputError, NotFoundError, ProofError, VerificationError
from modelward.provenance.record_proofs import (
    RecordAbsenceProof,
    RecordInclusionProof,
    SortedNeighbour,
    prove_absence,
    prove_record,
    verify_record_absence,
    verify_record_inclusion,
)
from modelward.provenance.records import (
    RecordFormat,
    RecordRoots,
    compute_record_roots,
    csv_record_hash,
    iter_records,
    json_record_hash,
    record_format_of,
)


def _jsonl(tmp_path: Path, text: str, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_format_by_suffix() -> None:
    assert record_format_of(Path("a/b.JSONL")) is RecordFormat.JSONL
    assert record_format_of(Path("b.ndjson")) is RecordFormat.JSONL
    assert record_format_of(Path("b.csv")) is RecordFormat.CSV
    assert record_format_of(Path("b.parquet")) is RecordFormat.PARQUET
    assert record_format_of(Path("weights.bin")) is None


def test_jsonl_records_are_canonical_and_skip_blank_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, '{"b": 1, "a": "x"}\n\n  \n{"a":2}\r\n[1,2]')
    records = list(iter_records(path))
    assert [r.locator for r in records] == [1, 4, 5]
    assert [r.index for r in records] == [0, 1, 2]
    assert records[0].data == b'{"a":"x","b":1}'
    assert records[0].record_hash.hex() == json_record_hash({"a": "x", "b": 1})


def test_jsonl_whitespace_and_key_order_do_not_change_the_root(tmp_path: Path) -> None:
    one = compute_record_roots(_jsonl(tmp_path, '{"a":1,"b":2}\n{"c":3}\n', "one.jsonl"))
    two = compute_record_roots(_jsonl(tmp_path, '{ "b": 2, "a": 1 }\n\n{"c" :3}', "two.jsonl"))
    three = compute_record_roots(_jsonl(tmp_path, '{"c":3}\n{"a":1,"b":2}\n', "three.jsonl"))
    assert one == two
    assert one.count == 2
    assert three.root != one.root
    assert three.sorted_root == one.sorted_root


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"a":1}\n{"a":\n', "data.jsonl:2: malformed JSON"),
        ('{"a":1, "a":2}\n', "duplicate object key"),
        ('{"a": NaN}\n', "NaN is not valid JSON"),
        ('{"a": 9007199254740993}\n', "cannot be canonicalised"),
        ("[" * 100000 + "]" * 100000 + "\n", "data.jsonl:1"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = _jsonl(tmp_path, text)
    with pytest.raises(InputError, match=fragment):
        list(iter_records(path, label="data.jsonl"))


def test_jsonl_non_utf8_and_huge_lines_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:1: not UTF-8"):
        list(iter_records(bad, label="bad.jsonl"))
    huge = _jsonl(tmp_path, '{"a": "' + "x" * 500 + '"}\n{"b":1}\n', "huge.jsonl")
    with pytest.raises(InputError, match=r"huge\.jsonl:1: line is longer than 100 bytes"):
        list(iter_records(huge, label="huge.jsonl", max_record_bytes=100))


def test_empty_jsonl_has_the_empty_root(tmp_path: Path) -> None:
    roots = compute_record_roots(_jsonl(tmp_path, "\n\n"))
    assert roots.count == 0
    assert roots.root == merkle.EMPTY_ROOT.hex() == roots.sorted_root


def test_csv_binds_the_header_into_every_record(tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text('id,text\n1,"hello, world"\n\n2,"multi\nline"\n', encoding="utf-8")
    records = list(iter_records(first))
    assert [r.locator for r in records] == [1, 2]
    assert records[0].data == b'{"columns":["id","text"],"values":["1","hello, world"]}'
    assert records[0].record_hash.hex() == csv_record_hash(["id", "text"], ["1", "hello, world"])
    renamed = tmp_path / "b.csv"
    renamed.write_text('id,body\n1,"hello, world"\n2,"multi\nline"\n', encoding="utf-8")
    assert compute_record_roots(first).root != compute_record_roots(renamed).root


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "has no header row"),
        ("a,b\n1,2,3\n", "row 1 .* has 3 fields, the header has 2"),
        ('a,b\n1,"unterminated\n', "malformed CSV"),
        ('a,b\n1,"x"y\n', "malformed CSV"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=fragment):
        list(iter_records(path, label="t.csv"))


def test_csv_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n1,\xff\n")
    with pytest.raises(InputError, match="not UTF-8"):
        list(iter_records(path))


def _parquet(tmp_path: Path) -> Path:
    table = pa.table(
        {
            "id": pa.array([1, 2, 2**60], type=pa.int64()),
            "text": ["a", None, "c"],
            "score": [0.5, float("nan"), 1.0],
            "blob": [b"\x00", b"", b"z"],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    return path


def test_parquet_rows_become_records(tmp_path: Path) -> None:
    path = _parquet(tmp_path)
    records = list(iter_records(path))
    assert [r.locator for r in records] == [1, 2, 3]
    row = json.loads(records[1].data)
    assert row["columns"][0] == ["id", "int64"]
    assert row["values"] == [2, None, "NaN", "base64:"]
    assert json.loads(records[2].data)["values"][0] == str(2**60)
    assert compute_record_roots(path).count == 3


def test_truncated_parquet_is_an_input_error(tmp_path: Path) -> None:
    path = _parquet(tmp_path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(iter_records(broken))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=r"garbage\.parquet"):
        list(iter_records(garbage))


def test_record_roots_round_trip_and_reject_bad_dicts() -> None:
    roots = RecordRoots(RecordFormat.CSV, 3, "a" * 64, "b" * 64)
    assert RecordRoots.from_dict(roots.to_dict()) == roots
    for bad in (
        {**roots.to_dict(), "format": "xml"},
        {**roots.to_dict(), "count": -1},
        {**roots.to_dict(), "count": True},
        {**roots.to_dict(), "root": "A" * 64},
        {**roots.to_dict(), "sortedRoot": "ab"},
        [],
    ):
        with pytest.raises(InputError):
            RecordRoots.from_dict(bad)


# --- proofs ------------------------------------------------------------------------------------


@pytest.fixture
def dataset_file(tmp_path: Path) -> tuple[Path, RecordRoots]:
    lines = [json.dumps({"id": i, "text": f"record {i}"}) for i in range(11)]
    lines.insert(3, "")
    path = _jsonl(tmp_path, "\n".join(lines) + "\n")
    return path, compute_record_roots(path)


def test_every_record_proves_inclusion(dataset_file: tuple[Path, RecordRoots]) -> None:
    path, roots = dataset_file
    for line in [1, 2, 3, 5, 12]:
        proof = prove_record(path, line)
        assert proof.locator == line
        verify_record_inclusion(proof, roots)
        assert RecordInclusionProof.from_dict(json.loads(json.dumps(proof.to_dict()))) == proof


def test_missing_line_is_not_found(dataset_file: tuple[Path, RecordRoots]) -> None:
    path, _ = dataset_file
    with pytest.raises(NotFoundError, match="no record at line/row 4"):
        prove_record(path, 4)


def test_tampered_inclusion_proofs_are_rejected(dataset_file: tuple[Path, RecordRoots]) -> None:
    path, roots = dataset_file
    proof = prove_record(path, 5)
    flipped = (
        "0" + proof.audit_path[0][1:]
        if proof.audit_path[0][0] != "0"
        else "1" + proof.audit_path[0][1:]
    )
    tampered = [
        replace(proof, record=b'{"id":3,"text":"forged"}'),
        replace(proof, audit_path=(flipped, *proof.audit_path[1:])),
        replace(proof, index=proof.index + 1),
        replace(proof, audit_path=proof.audit_path[:-1]),
    ]
    for bad in tampered:
        with pytest.raises(ProofError, match="does not verify"):
            verify_record_inclusion(bad, roots)
    with pytest.raises(VerificationError, match="record root"):
        verify_record_inclusion(replace(proof, root="0" * 64), roots)
    with pytest.raises(VerificationError, match="records"):
        verify_record_inclusion(replace(proof, tree_size=proof.tree_size + 1), roots)
    other = replace(roots, root="0" * 64)
    with pytest.raises(VerificationError):
        verify_record_inclusion(proof, other)


def test_absence_proofs_for_middle_and_edges(dataset_file: tuple[Path, RecordRoots]) -> None:
    path, roots = dataset_file
    seen = {"middle": False, "left-edge": False, "right-edge": False}
    candidates = [json_record_hash({"id": i, "text": "absent"}) for i in range(400)]
    candidates += ["0" * 64, "f" * 64]
    for target in candidates:
        proof = prove_absence(path, target)
        verify_record_absence(proof, roots)
        assert RecordAbsenceProof.from_dict(json.loads(json.dumps(proof.to_dict()))) == proof
        kind = (
            "middle" if proof.left and proof.right else "right-edge" if proof.left else "left-edge"
        )
        seen[kind] = True
    assert all(seen.values())


def test_absence_of_a_present_record_is_refused(dataset_file: tuple[Path, RecordRoots]) -> None:
    path, _ = dataset_file
    present = json_record_hash({"id": 4, "text": "record 4"})
    with pytest.raises(VerificationError, match="is present"):
        prove_absence(path, present)


def test_forged_absence_proofs_are_rejected(dataset_file: tuple[Path, RecordRoots]) -> None:
    path, roots = dataset_file
    proof = prove_absence(path, json_record_hash({"id": 99}))
    assert proof.left is not None and proof.right is not None
    present = json_record_hash({"id": 4, "text": "record 4"})
    forged = [
        replace(proof, record_hash=present),  # claims a present record is absent
        replace(proof, left=None),
        replace(proof, right=None),
        replace(proof, left=replace(proof.left, position=proof.left.position - 1)),
        replace(proof, left=replace(proof.left, record_hash="0" * 64)),
        replace(proof, left=None, right=None),
        replace(proof, tree_size=proof.tree_size + 1),
        replace(proof, sorted_root="0" * 64),
    ]
    for bad in forged:
        with pytest.raises(VerificationError):
            verify_record_absence(bad, roots)
    # Skipping a leaf: neighbours two apart, each genuinely in the tree.
    other = prove_absence(path, "0" * 64)
    assert other.right is not None
    with pytest.raises(VerificationError):
        verify_record_absence(replace(proof, left=other.right), roots)


def test_absence_in_an_empty_file(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, "")
    roots = compute_record_roots(path)
    proof = prove_absence(path, "a" * 64)
    verify_record_absence(proof, roots)
    fake = SortedNeighbour(position=0, record_hash="0" * 64, audit_path=())
    with pytest.raises(VerificationError):
        verify_record_absence(replace(proof, right=fake), roots)


def test_proof_parsing_rejects_hostile_input() -> None:
    for bad in (None, [], {"file": "x"}, {"file": "x", "record": 1}):
        with pytest.raises(InputError):
            RecordInclusionProof.from_dict(bad)
    with pytest.raises(InputError):
        RecordAbsenceProof.from_dict({"file": "x", "recordHash": "zz"})
    with pytest.raises(InputError):
        prove_absence(Path("unused.jsonl"), "not-hex")


def test_parquet_without_pyarrow_gives_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelward.provenance.records as records_module
    from modelward.errors import DependencyError

    def refuse(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(records_module.importlib, "import_module", refuse)
    with pytest.raises(DependencyError, match=r"pip install 'modelward\[parquet\]'"):
        iter_records(_parquet(tmp_path))
