"""Dataset manifests: building from files and folders, governance validation, eligibility."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from modelward.errors import InputError, InvalidNameError, PathError, SymlinkError
from modelward.provenance.datasets import (
    Consent,
    DatasetManifest,
    build_dataset_manifest,
    eligibility,
    parse_consent,
    parse_retention_date,
    validate_license_id,
)
from modelward.provenance.records import RecordFormat


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "train").mkdir(parents=True)
    (root / "train" / "a.jsonl").write_text('{"x":1}\n{"x":2}\n', encoding="utf-8")
    (root / "eval.csv").write_text("q,a\n1,2\n3,4\n5,6\n", encoding="utf-8")
    (root / "README").write_bytes(b"opaque bytes")
    return root


def _build(path: Path, **overrides: object) -> DatasetManifest:
    arguments: dict[str, object] = {
        "name": "chat-sft",
        "license_id": "cc-by-4.0",
        "source": "https://example.org/chat",
    }
    arguments.update(overrides)
    return build_dataset_manifest(path, **arguments)  # type: ignore[arg-type]


def test_folder_manifest_has_sorted_files_digests_and_record_roots(tmp_path: Path) -> None:
    manifest = _build(_folder(tmp_path), consent="granted", retention_until="2030-01-31")
    assert [f.path for f in manifest.files] == ["README", "eval.csv", "train/a.jsonl"]
    readme = manifest.files[0]
    assert readme.sha256 == hashlib.sha256(b"opaque bytes").hexdigest()
    assert readme.size == 12
    assert readme.records is None
    assert manifest.files[1].records is not None
    assert manifest.files[1].records.format is RecordFormat.CSV
    assert manifest.files[1].records.count == 3
    assert manifest.record_count == 5
    assert manifest.license == "CC-BY-4.0"
    assert manifest.consent is Consent.GRANTED
    assert manifest.retention_until == dt.date(2030, 1, 31)


def test_manifest_round_trips_and_digest_is_stable(tmp_path: Path) -> None:
    qa = tmp_path / "qa.json"
    qa.write_text("{}", encoding="utf-8")
    manifest = _build(_folder(tmp_path), owner="data-team", labeling_qa=qa)
    assert manifest.labeling_qa_digest == hashlib.sha256(b"{}").hexdigest()
    again = DatasetManifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest
    assert again.digest == manifest.digest
    assert len(manifest.digest) == 64
    withdrawn = replace(manifest, consent=Consent.WITHDRAWN)
    assert withdrawn.digest != manifest.digest
    assert withdrawn.data_digest == manifest.data_digest


def test_content_change_changes_the_digests(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    first = _build(root)
    (root / "train" / "a.jsonl").write_text('{"x":1}\n{"x":3}\n', encoding="utf-8")
    second = _build(root)
    assert first.data_digest != second.data_digest
    assert first.files[2].records != second.files[2].records


def test_single_file_dataset(tmp_path: Path) -> None:
    path = tmp_path / "only.jsonl"
    path.write_text('{"a":1}\n', encoding="utf-8")
    manifest = _build(path)
    assert [f.path for f in manifest.files] == ["only.jsonl"]


def test_links_leaving_the_folder_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text("x", encoding="utf-8")
    os.symlink(outside, root / "leak.txt")
    with pytest.raises(SymlinkError, match="leaves the dataset folder"):
        _build(root)


def test_links_inside_the_folder_are_hashed_as_their_target(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    os.symlink(root / "README", root / "README.link")
    manifest = _build(root)
    by_path = {f.path: f for f in manifest.files}
    assert by_path["README.link"].sha256 == by_path["README"].sha256


def test_links_to_folders_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    os.symlink(root / "train", root / "loop")
    with pytest.raises(SymlinkError):
        _build(root)


def test_special_files_empty_and_missing_paths(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    os.mkfifo(root / "pipe")
    with pytest.raises(PathError, match="pipe: not a regular file"):
        _build(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no files"):
        _build(empty)
    with pytest.raises(PathError, match="no such file"):
        _build(tmp_path / "missing")


def test_malformed_structured_file_stops_the_build(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "bad.jsonl").write_text('{"ok":1}\n{broken\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl:2: malformed JSON"):
        _build(root)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"name": "../x"}, InvalidNameError),
        ({"name": ""}, InvalidNameError),
        ({"license_id": "MIT-ish"}, InputError),
        ({"license_id": "GPL-2.0-with-classpath-exception-x"}, InputError),
        ({"license_id": "Classpath-exception-2.0"}, InputError),
        ({"source": "  "}, InputError),
        ({"consent": "maybe"}, InputError),
        ({"retention_until": "31/01/2030"}, InputError),
        ({"retention_until": "2030-02-30"}, InputError),
        ({"owner": "a\nb"}, InputError),
    ],
)
def test_bad_governance_input_is_refused(
    tmp_path: Path, overrides: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _build(_folder(tmp_path), **overrides)


def test_license_ids() -> None:
    assert validate_license_id("apache-2.0") == "Apache-2.0"
    assert validate_license_id("CDLA-Permissive-2.0") == "CDLA-Permissive-2.0"
    assert validate_license_id("LicenseRef-internal.v2") == "LicenseRef-internal.v2"
    for bad in ("", "LicenseRef-", "LicenseRef-a b", "MIT OR Apache-2.0", "NOASSERTION"):
        with pytest.raises(InputError):
            validate_license_id(bad)


def test_dates_and_consent_parsing() -> None:
    assert parse_retention_date("2024-02-29") == dt.date(2024, 2, 29)
    for bad in ("20240229", "2024-2-29", "2023-02-29", "2024-02-29T00:00", ""):
        with pytest.raises(InputError, match="date"):
            parse_retention_date(bad)
    assert parse_consent("not-required") is Consent.NOT_REQUIRED
    with pytest.raises(InputError, match="granted, not-required, unknown, withdrawn"):
        parse_consent("yes")


def test_eligibility(tmp_path: Path) -> None:
    manifest = _build(_folder(tmp_path), consent="granted", retention_until="2030-01-31")
    assert eligibility(manifest, dt.date(2030, 1, 31)).eligible
    expired = eligibility(manifest, dt.date(2030, 2, 1))
    assert not expired.eligible
    assert expired.reasons == ["retention expired on 2030-01-31"]
    withdrawn = eligibility(replace(manifest, consent=Consent.WITHDRAWN), dt.date(2025, 1, 1))
    assert not withdrawn.eligible
    assert "consent has been withdrawn" in withdrawn.reasons
    unknown = eligibility(replace(manifest, consent=Consent.UNKNOWN), dt.date(2025, 1, 1))
    assert unknown.eligible and unknown.warnings == ["consent is unknown"]
    bad_licence = eligibility(replace(manifest, license="Nope-1.0"), dt.date(2025, 1, 1))
    assert not bad_licence.eligible


def test_from_dict_rejects_hostile_manifests(tmp_path: Path) -> None:
    good = _build(_folder(tmp_path)).to_dict()
    files = good["files"]
    cases = [
        None,
        {**good, "schema": "other"},
        {**good, "files": []},
        {**good, "files": list(reversed(files))},
        {**good, "files": [files[0], files[0]]},
        {**good, "files": [{**files[0], "path": "../etc/passwd"}]},
        {**good, "files": [{**files[0], "path": "/abs"}]},
        {**good, "files": [{**files[0], "size": -1}]},
        {**good, "files": [{**files[0], "sha256": "x"}]},
        {**good, "license": "nope"},
        {**good, "consent": None},
        {**good, "retentionUntil": 20300101},
        {**good, "labelingQaDigest": "zz"},
        {**good, "name": 3},
    ]
    for bad in cases:
        with pytest.raises(InputError):
            DatasetManifest.from_dict(bad)
