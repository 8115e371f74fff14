"""The runtime commands: `fetch URI DIR` prints the verified path (exit 0), refuses with exit 1
when verification fails and 2 for an unknown model; `telemetry ingest` reads OTLP JSON lines
files and `telemetry summary --json` gives the signals per release and window; bad input is 2."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modelward.interfaces.cli import main

from .conftest import Registry, request, span


def _bundle(folder: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.ones((8, 8), dtype=np.float32)}, str(folder / "model.safetensors"))
    return folder


def test_fetch_and_telemetry_commands(
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.service.push(_bundle(tmp_path / "v1"), "chat")
    monkeypatch.chdir(tmp_path)
    assert main(["fetch", "models:/chat/1", "relative-cache"]) == 0  # a relative DIR
    assert Path(capsys.readouterr().out.strip()).is_relative_to(tmp_path / "relative-cache")
    cache = tmp_path / "cache"
    assert main(["fetch", "models:/chat/1", str(cache), "--json"]) == 0
    fetched = json.loads(capsys.readouterr().out)
    assert fetched["verified"] and Path(fetched["path"]).is_dir()
    assert main(["fetch", "models:/chat/1", str(cache), "--env", "staging"]) == 1
    assert "no release in staging" in capsys.readouterr().err
    assert main(["fetch", "models:/nope/1", str(cache)]) == 2
    assert main(["fetch", "not-a-uri", str(cache)]) == 2
    capsys.readouterr()

    release = registry.gate.promote("models:/chat/1", "staging").release
    assert release is not None
    now = time.time_ns()
    lines = tmp_path / "spans.jsonl"
    first = request(
        [span(now - 2, gen_ai__usage__output_tokens=4)], modelward__release=release.release_id
    )
    second = request(
        [span(now - 1, error=True, gen_ai__usage__output_tokens=2)],
        modelward__model="chat",
        deployment__environment__name="staging",
    )
    lines.write_bytes(first + b"\n" + second + b"\n")
    assert main(["telemetry", "ingest", str(lines), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 2
    assert (
        main(["telemetry", "summary", "chat", "--env", "staging", "--window", "3600", "--json"])
        == 0
    )
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["release_id"] == release.release_id and summary["requests"] == 2
    assert summary["error_rate"] == 0.5 and summary["output_tokens"]["max"] == 4
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}')
    assert main(["telemetry", "ingest", str(broken)]) == 2
    assert "traceId" in capsys.readouterr().err


def test_telemetry_ingest_reads_otlp_metrics_files_and_summary_shows_them(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from google.protobuf.json_format import MessageToJson
    from tests.unit.server.test_server_otlp_metrics import sdk_request

    registry.service.push(_bundle(tmp_path / "v1"), "chat")
    release = registry.gate.promote("models:/chat/1", "staging").release
    assert release is not None
    metrics = tmp_path / "metrics.json"
    metrics.write_text(MessageToJson(sdk_request(release.release_id, [5, 4], [0.2, 0.3])))
    spans = tmp_path / "spans.json"
    spans.write_bytes(
        request(
            [span(time.time_ns() - 1, gen_ai__usage__output_tokens=4)],
            modelward__release=release.release_id,
        )
    )
    assert main(["telemetry", "ingest", str(metrics), str(spans), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accepted"] == 1 and result["metrics"]["accepted"] == 6
    assert result["metrics"]["skipped"] == 1
    assert main(["telemetry", "ingest", str(metrics)]) == 0
    assert "0 metric points accepted, 6 duplicates" in capsys.readouterr().out
    assert main(["telemetry", "summary", "chat", "--env", "staging", "--window", "3600"]) == 0
    text = capsys.readouterr().out
    assert "modelward.feedback.score\tn 2\tmean 4.5" in text
    assert main(["telemetry", "summary", "chat", "--window", "3600", "--json"]) == 0
    (window,) = json.loads(capsys.readouterr().out)
    assert window["requests"] == 1
    assert window["metrics"]["gen_ai.client.operation.duration"]["count"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text(
        MessageToJson(sdk_request(release.release_id, [5], [0.2])).replace(
            '"sum": 5.0', '"sum": "NaN"'
        )
    )
    assert main(["telemetry", "ingest", str(bad)]) == 2
    assert "finite" in capsys.readouterr().err


def test_runtime_exit_codes_follow_the_taxonomy(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    registry.service.push(_bundle(tmp_path / "v1"), "chat")
    registry.gate.promote("models:/chat/1", "staging")
    cache = tmp_path / "cache"
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["fetch", "models:/chat/1", str(a_file)]) == 2  # DIR is an existing file
    assert main(["fetch", "models:/chat/1", str(a_file / "below")]) == 2
    for args in (
        ["telemetry", "summary", "chat", "--window", "1e300"],
        ["telemetry", "summary", "chat", "--window", "0"],
        ["telemetry", "summary", "nosuch"],
        ["telemetry", "summary", "chat", "--release", "rel-404"],
        ["alerts", "deliveries", "--limit", "-1"],
        ["alerts", "deliveries", "--limit", "0"],
    ):
        assert main(args) == 2, args
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no model named 'nosuch'" in err and "rel-404" in err
    # a release row whose state no longer matches its state digest: a definite no, not usage
    db = sqlite3.connect(registry.home / "registry.db")
    record = json.loads(db.execute("select record from gate_releases").fetchone()[0])
    record["state"]["feature_flags"] = {"evil": True}
    db.execute("update gate_releases set record = ?", (json.dumps(record),))
    db.commit()
    db.close()
    assert main(["fetch", "models:/chat@staging", str(cache)]) == 1
    assert "not trusted" in capsys.readouterr().err
