"""Reports: stable dicts, round trips, SARIF structure, verdict rules, API options."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.scanning_corpus import builders as b
from tests.scanning_corpus.asm import call_pickle

from modelward.errors import PathError
from modelward.scanning import ScanReport, scan, to_sarif
from modelward.scanning.report import Finding, verdict_of


def test_verdict_order() -> None:
    unsafe = Finding("MW-PKL-GLOBAL", "f", "", "m")
    malformed = Finding("MW-FMT-EMPTY", "f", "", "m")
    info = Finding("MW-NUM-ZERO", "f", "", "m")
    assert verdict_of([]) == "clean"
    assert verdict_of([info]) == "clean"
    assert verdict_of([info, malformed]) == "malformed"
    assert verdict_of([malformed, unsafe]) == "unsafe"


def _bundle(tmp_path: Path) -> Path:
    (tmp_path / "model.safetensors").write_bytes(b.safetensors({"w": ("F32", [4], b.FLOAT4)}))
    (tmp_path / "evil.bin").write_bytes(call_pickle("os", "system", "echo"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "empty.txt").write_bytes(b"")
    return tmp_path


def test_report_dict_is_stable_and_round_trips(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    first = scan(bundle, use_config=False).to_dict()
    second = scan(bundle, use_config=False).to_dict()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["verdict"] == "unsafe"
    assert [f["path"] for f in first["files"]] == ["evil.bin", "model.safetensors", "sub/empty.txt"]
    assert first["summary"] == {"files": 3, "clean": 1, "malformed": 1, "unsafe": 1, "findings": 2}
    assert str(tmp_path) not in json.dumps(first)
    again = ScanReport.from_dict(first)
    assert again.to_dict() == first


def test_sarif_has_the_required_structure(tmp_path: Path) -> None:
    sarif = to_sarif(scan(_bundle(tmp_path), use_config=False))
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert sorted(rules) == ["MW-FMT-EMPTY", "MW-PKL-GLOBAL"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/")
        assert result["message"]["text"]


def test_digests_and_allow(tmp_path: Path) -> None:
    (tmp_path / "custom.pkl").write_bytes(call_pickle("mypkg", "Net"))
    report = scan(tmp_path / "custom.pkl", use_config=False)
    assert report.verdict == "unsafe"
    assert report.files[0].sha256 is not None and len(report.files[0].sha256) == 64
    allowed = scan(tmp_path / "custom.pkl", use_config=False, allow=["mypkg:Net"])
    assert allowed.verdict == "clean"
    assert allowed.to_dict()["options"]["allow"] == ["mypkg:Net"]


def test_config_allow_from_modelward_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "custom.pkl").write_bytes(call_pickle("mypkg", "Net"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "modelward.toml").write_text('[scan]\nallow = ["mypkg.Net"]\n')
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    assert scan(tmp_path / "custom.pkl").verdict == "clean"
    assert scan(tmp_path / "custom.pkl", use_config=False).verdict == "unsafe"


def test_missing_path_is_a_path_error(tmp_path: Path) -> None:
    with pytest.raises(PathError):
        scan(tmp_path / "nope")


def test_links_and_fifos_are_reported_not_followed(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / "fifo")
    report = scan(tmp_path, use_config=False)
    assert report.verdict == "unsafe"
    assert {f.rule_id for f in report.findings} == {"MW-FMT-LINK"}


def test_onnx_external_data_missing_is_malformed(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b.onnx_model("weights.bin"))
    report = scan(tmp_path, use_config=False)
    assert report.verdict == "malformed"
    assert {f.rule_id for f in report.findings} == {"MW-ONNX-STRUCTURE"}
    (tmp_path / "weights.bin").write_bytes(b.FLOAT4)
    report = scan(tmp_path, use_config=False)
    assert report.verdict == "clean"
    assert {r.path: r.format for r in report.files}["weights.bin"] == "onnx-external-data"


def test_numeric_sweep_flags_zero_and_constant(tmp_path: Path) -> None:
    zeros = b.safetensors({"z": ("F32", [4], b"\x00" * 16), "c": ("F16", [2], b"\x00\x3c" * 2)})
    (tmp_path / "z.safetensors").write_bytes(zeros)
    report = scan(tmp_path / "z.safetensors", numeric=True, use_config=False)
    assert report.verdict == "clean"
    assert {f.rule_id for f in report.findings} == {"MW-NUM-ZERO", "MW-NUM-CONSTANT"}
    bf16_nan = b.safetensors({"n": ("BF16", [2], b"\xc0\x7f\x00\x00")})
    (tmp_path / "n.safetensors").write_bytes(bf16_nan)
    report = scan(tmp_path / "n.safetensors", numeric=True, use_config=False)
    assert {f.rule_id for f in report.findings} == {"MW-NUM-NAN"}
    assert scan(tmp_path / "n.safetensors", use_config=False).verdict == "clean"
