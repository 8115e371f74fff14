"""CycloneDX 1.6 ML-BOM of one model version, built with cyclonedx-python-lib.

The BOM's subject (`metadata.component`) is the model (`machine-learning-model`) with its root
digest as a SHA-256 hash, its bundle files as nested `file` components and a `modelCard` (task,
architecture, the datasets it was trained on, performance metrics from its evaluations). Each
training dataset is a `data` component (licence, governance facts as `modelward:` properties, a
`data` entry of type `dataset` with its owner), the base model is a `machine-learning-model`
component and software dependencies are `library` components; `dependencies` ties the model to
all of them.

cyclonedx-python-lib does not model `modelCard` or component `data` yet, so those are added to
the library's JSON output before it is returned; `validate_ml_bom` checks the result against the
CycloneDX 1.6 JSON schema with the library's strict validator. Time and serial number are passed
in (nothing reads the clock). Needs the `bom` extra.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelward.errors import DependencyError, InputError
from modelward.provenance.datasets import DatasetManifest
from modelward.provenance.slsa import BaseModel

_INSTALL_HINT = "writing ML-BOMs needs cyclonedx-python-lib: pip install 'modelward[bom]'"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _cyclonedx(module: str) -> Any:
    try:
        return importlib.import_module(f"cyclonedx.{module}")
    except ImportError as exc:
        raise DependencyError(_INSTALL_HINT) from exc


@dataclass(frozen=True)
class ModelCardFields:
    task: str | None = None  # e.g. "text-generation"
    architecture_family: str | None = None  # e.g. "transformer"
    architecture_name: str | None = None  # e.g. "llama-3"
    approach: str | None = None  # supervised, unsupervised, reinforcement-learning, ...


@dataclass(frozen=True)
class BomDataset:
    uri: str  # datasets:/NAME/N
    manifest: DatasetManifest


@dataclass(frozen=True)
class BomMetric:
    name: str
    value: float | int
    suite: str | None = None  # becomes the metric's `slice`


@dataclass(frozen=True)
class BomDependency:
    name: str
    version: str
    purl: str | None = None  # e.g. pkg:pypi/torch@2.3.0


_APPROACHES = (
    "supervised",
    "unsupervised",
    "reinforcement-learning",
    "semi-supervised",
    "self-supervised",
)


def build_ml_bom(
    *,
    model_name: str,
    version: str,
    root_digest: str,
    files: Mapping[str, str],
    timestamp: dt.datetime,
    model_uri: str | None = None,
    model_card: ModelCardFields | None = None,
    datasets: Sequence[BomDataset] = (),
    metrics: Sequence[BomMetric] = (),
    dependencies: Sequence[BomDependency] = (),
    base_model: BaseModel | None = None,
    serial_number: uuid.UUID | None = None,
) -> str:
    """The ML-BOM as CycloneDX 1.6 JSON text (see the module docstring)."""
    if not _HEX64.match(root_digest) or not all(_HEX64.match(d) for d in files.values()):
        raise InputError("model digests must be hex SHA-256")
    if timestamp.tzinfo is None:
        raise InputError("the BOM timestamp must carry a time zone")
    card = model_card or ModelCardFields()
    if card.approach is not None and card.approach not in _APPROACHES:
        raise InputError(f"model approach {card.approach!r} is not one of {', '.join(_APPROACHES)}")

    bom_module = _cyclonedx("model.bom")
    component_module = _cyclonedx("model.component")
    model_module = _cyclonedx("model")
    license_module = _cyclonedx("model.license")
    output_module = _cyclonedx("output.json")
    Component = component_module.Component
    ComponentType = component_module.ComponentType
    HashType, HashAlgorithm, Property = (
        model_module.HashType,
        model_module.HashAlgorithm,
        model_module.Property,
    )

    def sha256(hex_digest: str) -> Any:
        return HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)

    model_ref = model_uri or f"models:/{model_name}/{version}"
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=model_name,
        version=str(version),
        bom_ref=model_ref,
        hashes=[sha256(root_digest)],
        components=[
            Component(
                type=ComponentType.FILE,
                name=path,
                bom_ref=f"{model_ref}#{path}",
                hashes=[sha256(digest)],
            )
            for path, digest in sorted(files.items())
        ],
    )
    serial = serial_number or uuid.uuid5(
        uuid.NAMESPACE_URL, f"https://modelward.dev/bom/{root_digest}/{timestamp.isoformat()}"
    )
    bom = bom_module.Bom(serial_number=serial)
    bom.metadata = bom_module.BomMetaData(timestamp=timestamp, component=model)

    dataset_components = []
    for dataset in datasets:
        manifest = dataset.manifest
        licence = (
            license_module.DisjunctiveLicense(name=manifest.license)
            if manifest.license.startswith("LicenseRef-")
            else license_module.DisjunctiveLicense(id=manifest.license)
        )
        properties = [
            Property(name="modelward:source", value=manifest.source),
            Property(name="modelward:consent", value=manifest.consent.value),
            Property(name="modelward:files", value=str(len(manifest.files))),
            Property(name="modelward:records", value=str(manifest.record_count)),
        ]
        if manifest.retention_until is not None:
            properties.append(
                Property(
                    name="modelward:retention-until", value=manifest.retention_until.isoformat()
                )
            )
        if manifest.labeling_qa_digest is not None:
            properties.append(
                Property(name="modelward:labeling-qa-sha256", value=manifest.labeling_qa_digest)
            )
        dataset_components.append(
            Component(
                type=ComponentType.DATA,
                name=manifest.name,
                version=dataset.uri.rsplit("/", 1)[-1],
                bom_ref=dataset.uri,
                hashes=[sha256(manifest.digest)],
                licenses=[licence],
                properties=properties,
            )
        )
    others = []
    if base_model is not None:
        others.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=base_model.uri or f"sha256:{base_model.digest}",
                bom_ref=f"base:{base_model.reference}",
                hashes=[sha256(base_model.digest)],
            )
        )
    purl_module = _purl_module() if any(d.purl for d in dependencies) else None
    for dependency in dependencies:
        purl = None
        if dependency.purl and purl_module is not None:
            try:
                purl = purl_module.PackageURL.from_string(dependency.purl)
            except ValueError as exc:
                raise InputError(f"{dependency.purl!r} is not a package URL") from exc
        others.append(
            Component(
                type=ComponentType.LIBRARY,
                name=dependency.name,
                version=dependency.version,
                bom_ref=f"lib:{dependency.name}@{dependency.version}",
                purl=purl,
            )
        )
    for component in [*dataset_components, *others]:
        bom.components.add(component)
    if dataset_components or others:
        bom.register_dependency(model, [*dataset_components, *others])

    data = json.loads(output_module.JsonV1Dot6(bom).output_as_string())
    _add_model_card(data["metadata"]["component"], card, datasets, metrics)
    by_ref = {c["bom-ref"]: c for c in data.get("components", [])}
    for dataset in datasets:
        by_ref[dataset.uri]["data"] = [_component_data(dataset)]
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _purl_module() -> Any:
    try:
        return importlib.import_module("packageurl")
    except ImportError as exc:
        raise DependencyError(_INSTALL_HINT) from exc


def _add_model_card(
    component: dict[str, Any],
    card: ModelCardFields,
    datasets: Sequence[BomDataset],
    metrics: Sequence[BomMetric],
) -> None:
    parameters: dict[str, Any] = {}
    if card.approach:
        parameters["approach"] = {"type": card.approach}
    if card.task:
        parameters["task"] = card.task
    if card.architecture_family:
        parameters["architectureFamily"] = card.architecture_family
    if card.architecture_name:
        parameters["modelArchitecture"] = card.architecture_name
    if datasets:
        parameters["datasets"] = [{"ref": d.uri} for d in datasets]
    model_card: dict[str, Any] = {}
    if parameters:
        model_card["modelParameters"] = parameters
    if metrics:
        performance = []
        for metric in metrics:
            entry = {"type": metric.name, "value": repr(metric.value)}
            if metric.suite:
                entry["slice"] = metric.suite
            performance.append(entry)
        model_card["quantitativeAnalysis"] = {"performanceMetrics": performance}
    component["modelCard"] = model_card


def _component_data(dataset: BomDataset) -> dict[str, Any]:
    manifest = dataset.manifest
    data: dict[str, Any] = {
        "type": "dataset",
        "name": manifest.name,
        "contents": {
            "properties": [
                {"name": "modelward:manifest-sha256", "value": manifest.digest},
                {"name": "modelward:data-sha256", "value": manifest.data_digest},
            ]
        },
        "description": f"{dataset.uri} from {manifest.source}",
    }
    if manifest.owner:
        data["governance"] = {"owners": [{"organization": {"name": manifest.owner}}]}
    return data


def validate_ml_bom(text: str) -> None:
    """Raise InputError unless `text` is valid CycloneDX 1.6 JSON (the library's strict
    validator; needs cyclonedx-python-lib with its JSON validation extra)."""
    validation = _cyclonedx("validation.json")
    schema = _cyclonedx("schema")
    exceptions = _cyclonedx("exception")
    try:
        validator = validation.JsonStrictValidator(schema.SchemaVersion.V1_6)
        error = validator.validate_str(text)
    except exceptions.MissingOptionalDependencyException as exc:
        raise DependencyError(
            "validating ML-BOMs needs jsonschema: "
            "pip install 'cyclonedx-python-lib[json-validation]'"
        ) from exc
    if error is not None:
        message = getattr(error.data, "message", None) or str(error.data).splitlines()[0]
        raise InputError(f"the ML-BOM is not valid CycloneDX 1.6: {message}")
