"""SLSA Provenance v1 for training runs: build, sign, verify, parse, and score completeness.

A `TrainingRun` holds what a training script captured (source, command, hyperparameters, seeds,
datasets, base model, environment, builder and times). It becomes a SLSA v1 predicate with
buildType `https://modelward.dev/training/v1`:

- `externalParameters`: command, hyperparameters, seeds, dataset URIs, base model, source
  repository, commit and dirty flag — what the person running the training chose;
- `internalParameters`: Python version, environment digest, platform, GPU type;
- `resolvedDependencies`: the source commit (`gitCommit`), every dataset (`sha256` of its
  manifest) and the base model (`sha256` of its root digest), named `source`, `dataset` and
  `baseModel`;
- `runDetails`: builder id, invocation id, startedOn and finishedOn (RFC 3339, UTC).

The statement's subject is the output bundle's root digest. Does not read the clock, run git or
look datasets up: `run_capture` gathers, the registry checks that datasets exist.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelward.core.canonical import canonical_json
from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement, Subject
from modelward.errors import InputError
from modelward.provenance._attestations import sign_statement, verify_envelope
from modelward.signing.keys import Signer, Verifier

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
TRAINING_BUILD_TYPE = "https://modelward.dev/training/v1"
DEFAULT_BUILDER_ID = "https://modelward.dev/builders/local-training/v1"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_DATASET_URI = re.compile(r"^datasets:/[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[1-9][0-9]*$")
_ENV_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PYTHON_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?\S*$")

COMPLETENESS_FIELDS: tuple[str, ...] = (
    "source_repository",
    "source_commit",
    "source_dirty_state",
    "command",
    "hyperparameters",
    "seeds",
    "datasets",
    "base_model",
    "python_version",
    "environment_digest",
    "platform",
    "gpu",
    "builder_id",
    "invocation_id",
    "started_on",
    "finished_on",
    "subject_digest",
)


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a `Z`; refuses naive datetimes."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError("times in provenance must carry a time zone")
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str) or not value.endswith(("Z", "+00:00")) or "T" not in value:
        raise InputError(f"{what} is not an RFC 3339 UTC time")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{what} is not an RFC 3339 UTC time") from exc


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} is not a non-empty string")
    return value


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{what} is not a JSON object")
    _check_finite(value, what)
    canonical_json(value)  # refuses what cannot be signed (huge integers, non-str keys)
    return value


def _check_finite(value: Any, what: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{what} contains NaN or infinity")
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item, what)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_finite(item, what)


@dataclass(frozen=True)
class SourceInfo:
    repository: str | None = None
    commit: str | None = None
    dirty: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.repository is not None:
            data["repository"] = self.repository
        if self.commit is not None:
            data["commit"] = self.commit
        if self.dirty is not None:
            data["dirty"] = self.dirty
        return data

    @classmethod
    def from_dict(cls, data: Any) -> SourceInfo:
        if not isinstance(data, dict):
            raise InputError("provenance source is not a JSON object")
        repository, commit, dirty = data.get("repository"), data.get("commit"), data.get("dirty")
        if repository is not None:
            _require_str(repository, "source repository")
        if commit is not None and not (isinstance(commit, str) and _COMMIT.match(commit)):
            raise InputError("source commit is not a 40 or 64 character hex id")
        if dirty is not None and not isinstance(dirty, bool):
            raise InputError("source dirty flag is not a boolean")
        return cls(repository=repository, commit=commit, dirty=dirty)


@dataclass(frozen=True)
class DatasetUse:
    """A dataset version a run read: its URI and the hex SHA-256 of its manifest."""

    uri: str
    digest: str

    def __post_init__(self) -> None:
        if not _DATASET_URI.match(self.uri):
            raise InputError(f"dataset URI {self.uri!r} is not of the form datasets:/NAME/N")
        if not _HEX64.match(self.digest):
            raise InputError(f"dataset {self.uri} digest is not a hex SHA-256")

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "digest": {"sha256": self.digest}, "name": "dataset"}


@dataclass(frozen=True)
class BaseModel:
    """The model a run started from: hex SHA-256 root digest, and a URI when it has one
    (`models:/NAME/N` for a registry version, any URL for an external model)."""

    digest: str
    uri: str | None = None

    def __post_init__(self) -> None:
        if not _HEX64.match(self.digest):
            raise InputError("base model digest is not a hex SHA-256")
        if self.uri is not None:
            _require_str(self.uri, "base model URI")

    @property
    def reference(self) -> str:
        return self.uri or f"sha256:{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"digest": {"sha256": self.digest}, "name": "baseModel"}
        if self.uri:
            data["uri"] = self.uri
        return data


@dataclass(frozen=True)
class EnvironmentInfo:
    python_version: str
    environment_digest: str  # "sha256:<hex>" over sorted "name==version" lines
    platform: str
    gpu: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "python": self.python_version,
            "environmentDigest": self.environment_digest,
            "platform": self.platform,
        }
        if self.gpu:
            data["gpu"] = self.gpu
        return data

    @classmethod
    def from_dict(cls, data: Any) -> EnvironmentInfo:
        if not isinstance(data, dict):
            raise InputError("provenance internalParameters is not a JSON object")
        digest = _require_str(data.get("environmentDigest"), "environment digest")
        if not _ENV_DIGEST.match(digest):
            raise InputError("environment digest is not sha256:<hex>")
        gpu = data.get("gpu")
        return cls(
            python_version=_require_str(data.get("python"), "Python version"),
            environment_digest=digest,
            platform=_require_str(data.get("platform"), "platform"),
            gpu=None if gpu is None else _require_str(gpu, "GPU type"),
        )


@dataclass(frozen=True)
class TrainingRun:
    builder_id: str
    invocation_id: str
    started_on: dt.datetime
    finished_on: dt.datetime
    command: tuple[str, ...] = ()
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    seeds: Mapping[str, int] = field(default_factory=dict)
    datasets: tuple[DatasetUse, ...] = ()
    base_model: BaseModel | None = None
    source: SourceInfo | None = None
    environment: EnvironmentInfo | None = None

    def __post_init__(self) -> None:
        _require_str(self.builder_id, "builder id")
        _require_str(self.invocation_id, "invocation id")
        format_time(self.started_on)  # both must carry a time zone
        format_time(self.finished_on)
        if self.finished_on < self.started_on:
            raise InputError("the run finished before it started")
        _json_object(dict(self.hyperparameters), "hyperparameters")
        for name, seed in self.seeds.items():
            if not isinstance(name, str) or not isinstance(seed, int) or isinstance(seed, bool):
                raise InputError(f"seed {name!r} is not an integer")
        _json_object(dict(self.seeds), "seeds")
        if not all(isinstance(part, str) for part in self.command):
            raise InputError("command is not a list of strings")

    def to_predicate(self) -> dict[str, Any]:
        external: dict[str, Any] = {
            "command": list(self.command),
            "hyperparameters": dict(self.hyperparameters),
            "seeds": dict(self.seeds),
            "datasets": [d.uri for d in self.datasets],
        }
        if self.base_model is not None:
            external["baseModel"] = self.base_model.reference
        if self.source is not None:
            external["source"] = self.source.to_dict()
        dependencies: list[dict[str, Any]] = []
        if self.source is not None and self.source.commit:
            code: dict[str, Any] = {"name": "source", "digest": {"gitCommit": self.source.commit}}
            if self.source.repository:
                code["uri"] = f"git+{self.source.repository}@{self.source.commit}"
            if self.source.dirty is not None:
                code["annotations"] = {"dirty": self.source.dirty}
            dependencies.append(code)
        dependencies += [d.to_dict() for d in self.datasets]
        if self.base_model is not None:
            dependencies.append(self.base_model.to_dict())
        return {
            "buildDefinition": {
                "buildType": TRAINING_BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": self.environment.to_dict() if self.environment else {},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": self.builder_id},
                "metadata": {
                    "invocationId": self.invocation_id,
                    "startedOn": format_time(self.started_on),
                    "finishedOn": format_time(self.finished_on),
                },
            },
        }

    to_dict = to_predicate

    @classmethod
    def from_predicate(cls, predicate: Any) -> TrainingRun:
        """Strictly parse a modelward training predicate; InputError on anything malformed."""
        if not isinstance(predicate, dict):
            raise InputError("provenance predicate is not a JSON object")
        build = predicate.get("buildDefinition")
        run = predicate.get("runDetails")
        if not isinstance(build, dict) or not isinstance(run, dict):
            raise InputError("provenance has no buildDefinition or runDetails")
        if build.get("buildType") != TRAINING_BUILD_TYPE:
            raise InputError(f"provenance buildType is {build.get('buildType')!r}")
        external = build.get("externalParameters")
        if not isinstance(external, dict):
            raise InputError("provenance externalParameters is not a JSON object")
        command = external.get("command", [])
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise InputError("provenance command is not a list of strings")
        source = external.get("source")
        internal = build.get("internalParameters") or None
        builder = run.get("builder")
        metadata = run.get("metadata")
        if not isinstance(builder, dict) or not isinstance(metadata, dict):
            raise InputError("provenance runDetails has no builder or metadata")
        datasets, base_model = _dependencies(build.get("resolvedDependencies", []))
        return cls(
            builder_id=_require_str(builder.get("id"), "builder id"),
            invocation_id=_require_str(metadata.get("invocationId"), "invocation id"),
            started_on=parse_time(metadata.get("startedOn"), "startedOn"),
            finished_on=parse_time(metadata.get("finishedOn"), "finishedOn"),
            command=tuple(command),
            hyperparameters=_json_object(external.get("hyperparameters", {}), "hyperparameters"),
            seeds=_json_object(external.get("seeds", {}), "seeds"),
            datasets=datasets,
            base_model=base_model,
            source=None if source is None else SourceInfo.from_dict(source),
            environment=None if internal is None else EnvironmentInfo.from_dict(internal),
        )

    from_dict = from_predicate


def _dependencies(raw: Any) -> tuple[tuple[DatasetUse, ...], BaseModel | None]:
    if not isinstance(raw, list):
        raise InputError("provenance resolvedDependencies is not a list")
    datasets: list[DatasetUse] = []
    base_model: BaseModel | None = None
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), dict):
            raise InputError("a resolved dependency has no digest")
        name = entry.get("name")
        if name == "dataset":
            datasets.append(
                DatasetUse(
                    uri=_require_str(entry.get("uri"), "dataset URI"),
                    digest=_require_str(entry["digest"].get("sha256"), "dataset digest"),
                )
            )
        elif name == "baseModel":
            if base_model is not None:
                raise InputError("provenance names more than one base model")
            uri = entry.get("uri")
            base_model = BaseModel(
                digest=_require_str(entry["digest"].get("sha256"), "base model digest"),
                uri=None if uri is None else _require_str(uri, "base model URI"),
            )
    return tuple(datasets), base_model


def provenance_statement(run: TrainingRun, root_digest: str, bundle_name: str) -> Statement:
    """The in-toto statement of `run` about the bundle with hex SHA-256 `root_digest`."""
    if not _HEX64.match(root_digest):
        raise InputError("bundle root digest is not a hex SHA-256")
    return Statement(
        subjects=(Subject.of(bundle_name, sha256=root_digest),),
        predicate_type=SLSA_PROVENANCE_V1,
        predicate=run.to_predicate(),
    )


def sign_provenance(statement: Statement, signer: Signer) -> Envelope:
    if statement.predicate_type != SLSA_PROVENANCE_V1:
        raise InputError(f"not a SLSA provenance statement: {statement.predicate_type}")
    return sign_statement(statement, signer)


def verify_provenance(
    envelope: bytes | str | dict[str, Any] | Envelope,
    trusted: Sequence[Verifier],
    expected_root_digest: str | None,
) -> Statement:
    """The SLSA v1 statement inside `envelope` if a trusted key signed it and (when given) its
    subject is `expected_root_digest`. SignatureFormatError (an InputError) for a malformed or
    unsigned envelope, SignatureMismatchError for a bad or unknown signature, InputError for
    another predicate type, another subject or a predicate that is not SLSA v1."""
    statement = verify_envelope(
        envelope,
        trusted,
        predicate_type=SLSA_PROVENANCE_V1,
        expected_sha256=expected_root_digest,
        what="provenance",
    )
    predicate = statement.predicate
    if not isinstance(predicate.get("buildDefinition"), dict) or not isinstance(
        predicate.get("runDetails"), dict
    ):
        raise InputError("provenance: the predicate has no buildDefinition or runDetails")
    return statement


def training_run_of(statement: Statement) -> TrainingRun:
    """The training run a modelward provenance statement describes (strict)."""
    if statement.predicate_type != SLSA_PROVENANCE_V1:
        raise InputError(f"not a SLSA provenance statement: {statement.predicate_type}")
    return TrainingRun.from_predicate(statement.predicate)


# --- completeness ----------------------------------------------------------------------------


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _time_ok(value: Any) -> bool:
    try:
        parse_time(value, "time")
    except InputError:
        return False
    return True


def _dependencies_named(predicate: Any, name: str) -> list[dict[str, Any]]:
    raw = _get(predicate, "buildDefinition", "resolvedDependencies")
    if not isinstance(raw, list):
        return []
    return [d for d in raw if isinstance(d, dict) and d.get("name") == name]


def _sha256_of(entry: dict[str, Any]) -> bool:
    digest = entry.get("digest")
    return isinstance(digest, dict) and bool(_HEX64.match(str(digest.get("sha256", ""))))


def completeness(statement: Statement) -> dict[str, bool]:
    """For each field of `COMPLETENESS_FIELDS`: present and well-formed. Never raises."""
    predicate = statement.predicate
    external = _get(predicate, "buildDefinition", "externalParameters")
    internal = _get(predicate, "buildDefinition", "internalParameters")
    metadata = _get(predicate, "runDetails", "metadata")
    source = _get(external, "source")
    seeds = _get(external, "seeds")
    command = _get(external, "command")
    hyperparameters = _get(external, "hyperparameters")
    datasets = _dependencies_named(predicate, "dataset")
    base_models = _dependencies_named(predicate, "baseModel")
    started, finished = _get(metadata, "startedOn"), _get(metadata, "finishedOn")
    times_ok = _time_ok(started) and _time_ok(finished)
    return {
        "source_repository": _non_empty_str(_get(source, "repository")),
        "source_commit": bool(_COMMIT.match(str(_get(source, "commit") or ""))),
        "source_dirty_state": isinstance(_get(source, "dirty"), bool),
        "command": isinstance(command, list)
        and bool(command)
        and all(isinstance(c, str) for c in command),
        "hyperparameters": isinstance(hyperparameters, dict) and bool(hyperparameters),
        "seeds": isinstance(seeds, dict)
        and bool(seeds)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in seeds.values()),
        "datasets": bool(datasets)
        and all(_DATASET_URI.match(str(d.get("uri", ""))) and _sha256_of(d) for d in datasets),
        "base_model": len(base_models) == 1 and _sha256_of(base_models[0]),
        "python_version": bool(_PYTHON_VERSION.match(str(_get(internal, "python") or ""))),
        "environment_digest": bool(
            _ENV_DIGEST.match(str(_get(internal, "environmentDigest") or ""))
        ),
        "platform": _non_empty_str(_get(internal, "platform")),
        "gpu": _non_empty_str(_get(internal, "gpu")),
        "builder_id": _non_empty_str(_get(predicate, "runDetails", "builder", "id")),
        "invocation_id": _non_empty_str(_get(metadata, "invocationId")),
        "started_on": _time_ok(started),
        "finished_on": _time_ok(finished)
        and times_ok
        and parse_time(finished, "finishedOn") >= parse_time(started, "startedOn"),
        "subject_digest": any(
            _HEX64.match(s.digest_for("sha256") or "") for s in statement.subjects
        ),
    }
