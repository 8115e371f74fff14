"""`modelward scan` as a user runs it: a subprocess, exit codes 0/1/3/2, JSON and SARIF output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.scanning_corpus import builders as b  # noqa: E402
from tests.scanning_corpus.asm import call_pickle  # noqa: E402

CLI = Path(sys.executable).parent / "modelward"


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "scan", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"MODELWARD_HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "clean": b.safetensors({"w": ("F32", [4], b.FLOAT4)}),
        "unsafe": call_pickle("os", "system", "echo"),
        "malformed": b"",
        "custom": call_pickle("mypkg.models", "Net"),
    }
    paths = {}
    for name, data in made.items():
        paths[name] = tmp_path / f"{name}.bin"
        paths[name].write_bytes(data)
    (tmp_path / "home").mkdir()
    return paths


def test_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(str(files["clean"]), home=home).returncode == 0
    unsafe = run(str(files["unsafe"]), home=home)
    assert unsafe.returncode == 1
    assert "MW-PKL-GLOBAL" in unsafe.stdout and "os.system" in unsafe.stdout
    assert run(str(files["malformed"]), home=home).returncode == 3
    both = run(str(files["malformed"]), str(files["unsafe"]), home=home)
    assert both.returncode == 1
    missing = run(str(tmp_path / "missing"), home=home)
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert run("--format", "xml", str(files["clean"]), home=home).returncode == 2
    assert run("--allow", "not a global", str(files["clean"]), home=home).returncode == 2


def test_allow_flag_and_config(files: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(str(files["custom"]), home=home).returncode == 1
    assert run("--allow", "mypkg.models:Net", str(files["custom"]), home=home).returncode == 0
    (home / "modelward.toml").write_text('[scan]\nallow = ["mypkg.models.Net"]\n')
    assert run(str(files["custom"]), home=home).returncode == 0
    assert run("--no-config", str(files["custom"]), home=home).returncode == 1


def test_json_output(files: dict[str, Path], tmp_path: Path) -> None:
    result = run("--json", str(files["unsafe"]), home=tmp_path / "home")
    report = json.loads(result.stdout)
    assert report["verdict"] == "unsafe"
    finding = report["files"][0]["findings"][0]
    assert set(finding) >= {"rule_id", "severity", "file", "location", "message"}


def test_sarif_output_is_valid_2_1_0(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scan.sarif"
    result = run(
        "--format",
        "sarif",
        "-o",
        str(out),
        str(files["unsafe"]),
        str(files["malformed"]),
        home=tmp_path / "home",
    )
    assert result.returncode == 1
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    assert len(sarif["runs"]) == 1
    run_ = sarif["runs"][0]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "modelward"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert float(rule["properties"]["security-severity"]) > 0
    levels = {r["ruleId"]: r["level"] for r in run_["results"]}
    assert levels == {"MW-PKL-GLOBAL": "error", "MW-FMT-EMPTY": "warning"}
    for result_ in run_["results"]:
        assert rule_ids[result_["ruleIndex"]] == result_["ruleId"]
        assert result_["message"]["text"]
        location = result_["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"]
        if "region" in location:
            assert location["region"]["byteOffset"] >= 0
