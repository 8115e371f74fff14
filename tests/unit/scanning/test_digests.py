"""Every file's sha256 is in the report: computed from the bytes scanned, or the caller's."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.scanning_corpus import builders as b
from tests.scanning_corpus.asm import call_pickle

from modelward.errors import InputError
from modelward.scanning import ScanInput, scan, scan_inputs, scan_paths
from modelward.scanning import engine as scan_engine
from modelward.services.ingest import scan_for_push


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_report_records_each_files_sha256(tmp_path: Path) -> None:
    weights = b.safetensors({"w": ("F32", [4], b.FLOAT4)})
    (tmp_path / "model.safetensors").write_bytes(weights)
    (tmp_path / "README.md").write_bytes(b"# model\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    report = scan(tmp_path, use_config=False).to_dict()
    digests = {f["path"]: f["sha256"] for f in report["files"]}
    assert digests == {
        "model.safetensors": _sha(weights),
        "README.md": _sha(b"# model\n"),
        "empty.txt": _sha(b""),
    }


def test_a_digest_the_caller_computed_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    (tmp_path / "b.txt").write_bytes(b"world\n")
    given = "ab" * 32
    report = scan_paths([tmp_path], use_config=False, sha256={"a.txt": given})
    by_path = {r.path: r.sha256 for r in report.files}
    assert by_path == {"a.txt": given, "b.txt": _sha(b"world\n")}


@pytest.mark.parametrize("bad", ["", "AB" * 32, "ab" * 31, "zz" * 32])
def test_a_malformed_given_digest_is_refused(tmp_path: Path, bad: str) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    with pytest.raises(InputError, match="sha256"):
        scan(tmp_path, use_config=False, sha256={"a.txt": bad})


def test_scan_inputs_scans_bytes_in_hand() -> None:
    evil = call_pickle("os", "system", "echo")
    weights = b.safetensors({"w": ("F32", [4], b.FLOAT4)})
    report = scan_inputs(
        [
            ScanInput("weights/model.safetensors", weights, sha256=_sha(weights)),
            ScanInput("evil.bin", memoryview(evil)),
        ],
        use_config=False,
    )
    files = {r.path: r for r in report.files}
    assert files["weights/model.safetensors"].verdict == "clean"
    assert files["weights/model.safetensors"].sha256 == _sha(weights)
    assert files["evil.bin"].verdict == "unsafe"
    assert files["evil.bin"].sha256 == _sha(evil)
    assert files["evil.bin"].size == len(evil)


@pytest.mark.parametrize("path", ["../x", "/abs", "a\\b", ""])
def test_scan_inputs_refuses_paths_that_are_not_relative(path: str) -> None:
    with pytest.raises(InputError):
        scan_inputs([ScanInput(path, b"text\n")], use_config=False)


def test_scan_inputs_refuses_a_path_given_twice() -> None:
    with pytest.raises(InputError):
        scan_inputs([ScanInput("a", b"x\n"), ScanInput("a", b"y\n")], use_config=False)


def test_a_file_that_changes_while_it_is_scanned_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"first version\n")
    real_scan_buffer = scan_engine.scan_buffer

    def swap_during_scan(ctx: object, data: object, where: str) -> str:
        result = real_scan_buffer(ctx, data, where)  # type: ignore[arg-type]
        with path.open("r+b") as handle:
            handle.write(b"FIRST")
        return result

    monkeypatch.setattr(scan_engine, "scan_buffer", swap_during_scan)
    report = scan(path, use_config=False)
    assert report.verdict == "malformed"
    assert any("changed while" in f.message for f in report.findings)


def test_push_scan_reports_carry_the_digests(tmp_path: Path) -> None:
    from modelward.storage.model_files import list_model_files

    (tmp_path / "config.json").write_bytes(b'{"a": 1}\n')
    report = scan_for_push(tmp_path, list_model_files(tmp_path))
    assert report["files"][0]["sha256"] == _sha(b'{"a": 1}\n')
