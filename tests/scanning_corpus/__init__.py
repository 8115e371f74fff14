"""The scanner's labelled corpus: benign files of every supported format, classic attacks,
the published bypasses of other scanners, and malformed or hostile files.

Every payload is built opcode by opcode (see `asm`) and calls something harmless such as
`print`; nothing here is ever unpickled. `build_corpus()` returns the samples; `write_corpus(dir)`
writes each sample (one primary file plus any companions) into its own folder. The benchmark
imports this module too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.scanning_corpus.samples_bad import bad_samples
from tests.scanning_corpus.samples_benign import benign_samples
from tests.scanning_corpus.samples_containers import container_attack_samples
from tests.scanning_corpus.samples_pickle import pickle_attack_samples


@dataclass(frozen=True)
class Sample:
    """One corpus entry: a file name, its bytes, its label, and what modelward must say."""

    name: str
    data: bytes
    label: str  # "benign", "malicious" or "malformed"
    verdict: str  # modelward's expected verdict
    rule_id: str | None  # a rule id that must be among the findings (None when clean)
    note: str = ""
    companions: dict[str, bytes] = field(default_factory=dict)
    numeric: bool = False

    @property
    def sample_id(self) -> str:
        return self.name.replace("/", "_")


def build_corpus() -> list[Sample]:
    samples: list[Sample] = []
    for factory in (benign_samples, pickle_attack_samples, container_attack_samples, bad_samples):
        for entry in factory():
            samples.append(Sample(**entry))
    names = [s.sample_id for s in samples]
    assert len(names) == len(set(names)), "sample names must be unique"
    return samples


def write_corpus(root: Path) -> list[tuple[Sample, Path]]:
    """Write each sample into root/<sample_id>/; return (sample, primary file path) pairs."""
    written = []
    for sample in build_corpus():
        folder = root / sample.sample_id
        folder.mkdir(parents=True, exist_ok=True)
        primary = folder / Path(sample.name).name
        primary.write_bytes(sample.data)
        for name, blob in sample.companions.items():
            (folder / name).write_bytes(blob)
        written.append((sample, primary))
    return written
