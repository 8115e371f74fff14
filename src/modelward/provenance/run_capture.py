"""Capture a training run from inside the training script: `with track_run(...) as run:`.

On entry it reads the clock and records the command line, the git source (repository URL without
credentials, commit, dirty state; nothing when git or the repository is absent), Python version,
platform, an environment digest over the installed distributions and the GPU type when
`nvidia-smi` answers. The script adds hyperparameters, seeds, datasets, the base model and the
output bundle through the yielded `RunRecorder`. On a clean exit it reads the clock again, builds
the SLSA statement about the output bundle's root digest and, given a signer, writes the signed
DSSE envelope next to the bundle (never inside it, which would change its digest). A run that
raises writes nothing.

Does not upload, talk to a registry or look datasets up; the clock, subprocess runner and
bundle hasher can be replaced for tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement
from modelward.errors import InputError, PathError
from modelward.provenance.slsa import (
    DEFAULT_BUILDER_ID,
    BaseModel,
    DatasetUse,
    EnvironmentInfo,
    SourceInfo,
    TrainingRun,
    provenance_statement,
    sign_provenance,
)
from modelward.signing.keys import Signer

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Clock = Callable[[], dt.datetime]
_COMMAND_TIMEOUT = 15


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _normalise_distribution_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> list[tuple[str, str]]:
    """(name, version) of every distribution importable in this interpreter."""
    found = []
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            found.append((str(name), str(distribution.version)))
    return found


def environment_digest(distributions: Iterable[tuple[str, str]]) -> str:
    """`sha256:<hex>` over the sorted, de-duplicated lines `name==version\\n` (names
    normalised as in PEP 503)."""
    lines = sorted({f"{_normalise_distribution_name(n)}=={v}" for n, v in distributions})
    return "sha256:" + hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def _run(runner: Runner, arguments: Sequence[str], cwd: Path | None = None) -> str | None:
    try:
        completed = runner(
            list(arguments),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return str(completed.stdout)


def without_credentials(url: str) -> str:
    """A repository URL with any user name and password removed."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def git_source(directory: Path, runner: Runner = subprocess.run) -> SourceInfo | None:
    """Repository, commit and dirty state of the git work tree at `directory`, or None."""
    commit = _run(runner, ["git", "rev-parse", "HEAD"], directory)
    if commit is None:
        return None
    remote = _run(runner, ["git", "config", "--get", "remote.origin.url"], directory)
    status = _run(runner, ["git", "status", "--porcelain", "--untracked-files=no"], directory)
    return SourceInfo(
        repository=without_credentials(remote.strip()) if remote and remote.strip() else None,
        commit=commit.strip() or None,
        dirty=None if status is None else bool(status.strip()),
    )


def gpu_type(runner: Runner = subprocess.run) -> str | None:
    """The GPU model names `nvidia-smi` reports, or None without NVIDIA tools."""
    if shutil.which("nvidia-smi") is None:
        return None
    output = _run(runner, ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    if not output:
        return None
    names = sorted({line.strip() for line in output.splitlines() if line.strip()})
    return ", ".join(names) or None


def capture_environment(
    runner: Runner = subprocess.run,
    distributions: Iterable[tuple[str, str]] | None = None,
) -> EnvironmentInfo:
    version = sys.version_info
    return EnvironmentInfo(
        python_version=f"{version.major}.{version.minor}.{version.micro}",
        environment_digest=environment_digest(
            installed_distributions() if distributions is None else distributions
        ),
        platform=platform.platform(),
        gpu=gpu_type(runner),
    )


def _default_root_digest(path: Path) -> str:
    from modelward.core.manifest import Serialization
    from modelward.storage.model_files import hash_model

    return hash_model(path, Serialization()).root_digest


class RunRecorder:
    """What the training script tells the run while it runs; read back after the block ends."""

    def __init__(self) -> None:
        self.hyperparameters: dict[str, Any] = {}
        self.seeds: dict[str, int] = {}
        self.datasets: list[DatasetUse] = []
        self.base_model: BaseModel | None = None
        self.output: Path | None = None
        self.run: TrainingRun | None = None
        self.statement: Statement | None = None
        self.envelope: Envelope | None = None
        self.written_to: Path | None = None

    def log_hyperparameters(self, **values: Any) -> None:
        self.hyperparameters.update(values)

    def set_seed(self, name: str, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"seed {name!r} must be an integer")
        self.seeds[name] = value

    def use_dataset(self, uri: str, digest: str) -> None:
        self.datasets.append(DatasetUse(uri=uri, digest=digest))

    def set_base_model(self, digest: str, uri: str | None = None) -> None:
        self.base_model = BaseModel(digest=digest, uri=uri)

    def set_output(self, path: Path) -> None:
        self.output = Path(path)


def _dataset_uses(datasets: Sequence[DatasetUse] | Mapping[str, str]) -> list[DatasetUse]:
    if isinstance(datasets, Mapping):
        return [DatasetUse(uri=uri, digest=digest) for uri, digest in datasets.items()]
    return list(datasets)


def write_envelope(envelope: Envelope, path: Path) -> None:
    """Write the envelope as JSON at `path` atomically; refuses to overwrite."""
    if path.exists() or path.is_symlink():
        raise PathError(f"{path}: already exists; refusing to overwrite provenance")
    data = json.dumps(envelope.to_dict(), indent=2, sort_keys=True).encode() + b"\n"
    try:
        fd, temporary = tempfile.mkstemp(prefix=".provenance-", dir=path.parent)
    except OSError as exc:
        raise PathError(f"{path}: cannot write provenance: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.link(temporary, path)  # fails instead of replacing a file that appeared meanwhile
    except FileExistsError as exc:
        raise PathError(f"{path}: already exists; refusing to overwrite provenance") from exc
    except OSError as exc:
        raise PathError(f"{path}: cannot write provenance: {exc.strerror or exc}") from exc
    finally:
        os.unlink(temporary)


def default_statement_path(output: Path) -> Path:
    return output.with_name(output.name + ".provenance.dsse.json")


@contextmanager
def track_run(
    *,
    output: Path | None = None,
    signer: Signer | None = None,
    statement_path: Path | None = None,
    bundle_name: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    seeds: Mapping[str, int] | None = None,
    datasets: Sequence[DatasetUse] | Mapping[str, str] = (),
    base_model: BaseModel | None = None,
    command: Sequence[str] | None = None,
    builder_id: str = DEFAULT_BUILDER_ID,
    invocation_id: str | None = None,
    source_dir: Path | None = None,
    clock: Clock = _utc_now,
    runner: Runner = subprocess.run,
    distributions: Iterable[tuple[str, str]] | None = None,
    root_digest_of: Callable[[Path], str] | None = None,
) -> Iterator[RunRecorder]:
    """Record a training run; on a clean exit build (and, with a signer and an output bundle,
    sign and write) its SLSA provenance. See the module docstring."""
    started = clock()
    recorder = RunRecorder()
    recorder.hyperparameters.update(hyperparameters or {})
    for name, value in (seeds or {}).items():
        recorder.set_seed(name, value)
    recorder.datasets.extend(_dataset_uses(datasets))
    recorder.base_model = base_model
    recorder.output = output
    source = git_source(source_dir or Path.cwd(), runner)
    environment = capture_environment(runner, distributions)
    argv = tuple(sys.argv if command is None else command)
    yield recorder
    finished = clock()
    run = TrainingRun(
        builder_id=builder_id,
        invocation_id=invocation_id or str(uuid.uuid4()),
        started_on=started,
        finished_on=finished,
        command=argv,
        hyperparameters=dict(recorder.hyperparameters),
        seeds=dict(recorder.seeds),
        datasets=tuple(recorder.datasets),
        base_model=recorder.base_model,
        source=source,
        environment=environment,
    )
    recorder.run = run
    if recorder.output is None:
        return
    bundle = recorder.output
    if not bundle.exists():
        raise PathError(f"{bundle}: the output bundle does not exist")
    root_digest = (root_digest_of or _default_root_digest)(bundle)
    recorder.statement = provenance_statement(
        run, root_digest, bundle_name or bundle.resolve().name
    )
    if signer is None:
        return
    recorder.envelope = sign_provenance(recorder.statement, signer)
    target = statement_path or default_statement_path(bundle)
    write_envelope(recorder.envelope, target)
    recorder.written_to = target
