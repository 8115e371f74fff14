"""The CycloneDX 1.6 ML-BOM, checked with cyclonedx-python-lib's strict JSON validator."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelward.errors import DependencyError, InputError
from modelward.provenance import bom as bom_module
from modelward.provenance.bom import (
    BomDataset,
    BomDependency,
    BomMetric,
    ModelCardFields,
    build_ml_bom,
    validate_ml_bom,
)
from modelward.provenance.datasets import build_dataset_manifest
from modelward.provenance.slsa import BaseModel

WHEN = dt.datetime(2025, 7, 1, 10, 0, tzinfo=dt.UTC)
ROOT = "a" * 64


def _datasets(tmp_path: Path) -> list[BomDataset]:
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.jsonl").write_text('{"q":"hi"}\n', encoding="utf-8")
    first = build_dataset_manifest(
        tmp_path / "one",
        name="chat-sft",
        license_id="CC-BY-4.0",
        source="https://example.org/chat",
        consent="granted",
        retention_until="2030-01-01",
        owner="data-team",
    )
    (tmp_path / "two.csv").write_text("a\n1\n", encoding="utf-8")
    second = build_dataset_manifest(
        tmp_path / "two.csv", name="internal", license_id="LicenseRef-internal", source="crm"
    )
    return [BomDataset("datasets:/chat-sft/3", first), BomDataset("datasets:/internal/1", second)]


def _bom(tmp_path: Path) -> str:
    return build_ml_bom(
        model_name="chat",
        version="4",
        root_digest=ROOT,
        files={"model.safetensors": "b" * 64, "config.json": "c" * 64},
        timestamp=WHEN,
        model_card=ModelCardFields(
            task="text-generation",
            architecture_family="transformer",
            architecture_name="llama-3",
            approach="supervised",
        ),
        datasets=_datasets(tmp_path),
        metrics=[BomMetric("accuracy", 0.91, "safety-suite"), BomMetric("samples", 500)],
        dependencies=[
            BomDependency("torch", "2.3.0", "pkg:pypi/torch@2.3.0"),
            BomDependency("tokenizers", "0.19.1"),
        ],
        base_model=BaseModel(digest="d" * 64, uri="models:/base/7"),
    )


def test_bom_is_strictly_valid_cyclonedx_1_6(tmp_path: Path) -> None:
    text = _bom(tmp_path)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    validate_ml_bom(text)


def test_bom_content(tmp_path: Path) -> None:
    data = json.loads(_bom(tmp_path))
    assert data["specVersion"] == "1.6"
    model = data["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["bom-ref"] == "models:/chat/4"
    assert model["hashes"] == [{"alg": "SHA-256", "content": ROOT}]
    assert sorted(c["name"] for c in model["components"]) == ["config.json", "model.safetensors"]
    card = model["modelCard"]
    assert card["modelParameters"]["task"] == "text-generation"
    assert card["modelParameters"]["architectureFamily"] == "transformer"
    assert card["modelParameters"]["datasets"] == [
        {"ref": "datasets:/chat-sft/3"},
        {"ref": "datasets:/internal/1"},
    ]
    metrics = card["quantitativeAnalysis"]["performanceMetrics"]
    assert {"type": "accuracy", "value": "0.91", "slice": "safety-suite"} in metrics
    components = {c["bom-ref"]: c for c in data["components"]}
    chat = components["datasets:/chat-sft/3"]
    assert chat["type"] == "data"
    assert chat["licenses"] == [{"license": {"id": "CC-BY-4.0"}}]
    assert chat["data"][0]["type"] == "dataset"
    assert chat["data"][0]["governance"]["owners"] == [{"organization": {"name": "data-team"}}]
    properties = {p["name"]: p["value"] for p in chat["properties"]}
    assert properties["modelward:consent"] == "granted"
    assert properties["modelward:retention-until"] == "2030-01-01"
    internal = components["datasets:/internal/1"]
    assert internal["licenses"] == [{"license": {"name": "LicenseRef-internal"}}]
    assert components["lib:torch@2.3.0"]["purl"] == "pkg:pypi/torch@2.3.0"
    assert "base:models:/base/7" in components
    model_dependency = next(d for d in data["dependencies"] if d["ref"] == "models:/chat/4")
    assert len(model_dependency["dependsOn"]) == 5


def test_bom_is_deterministic_for_the_same_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _bom(tmp_path / "a")
    second = _bom(tmp_path / "b")
    assert first == second
    assert json.loads(first)["serialNumber"].startswith("urn:uuid:")


def test_minimal_bom_is_valid() -> None:
    text = build_ml_bom(
        model_name="m",
        version="1",
        root_digest=ROOT,
        files={"w.bin": "b" * 64},
        timestamp=WHEN,
        serial_number=uuid.UUID(int=7),
    )
    validate_ml_bom(text)
    assert json.loads(text)["metadata"]["component"]["modelCard"] == {}


def test_bad_inputs() -> None:
    arguments = {"model_name": "m", "version": "1", "files": {}, "timestamp": WHEN}
    with pytest.raises(InputError, match="hex SHA-256"):
        build_ml_bom(root_digest="x", **arguments)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="time zone"):
        build_ml_bom(**{**arguments, "root_digest": ROOT, "timestamp": dt.datetime(2025, 1, 1)})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="approach"):
        build_ml_bom(
            root_digest=ROOT,
            model_card=ModelCardFields(approach="vibes"),
            **arguments,  # type: ignore[arg-type]
        )
    with pytest.raises(InputError, match="package URL"):
        build_ml_bom(
            root_digest=ROOT,
            dependencies=[BomDependency("x", "1", "not a purl")],
            **arguments,  # type: ignore[arg-type]
        )


def test_invalid_bom_text_is_refused() -> None:
    with pytest.raises(InputError, match=r"not valid CycloneDX 1\.6"):
        validate_ml_bom('{"bomFormat": "CycloneDX", "specVersion": "1.6", "extra": 1}')


def test_missing_library_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(bom_module.importlib, "import_module", refuse)
    with pytest.raises(DependencyError, match=r"modelward\[bom\]"):
        build_ml_bom(model_name="m", version="1", root_digest=ROOT, files={}, timestamp=WHEN)
