"""Every corpus sample gets exactly its expected verdict and the expected rule id."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.scanning_corpus import Sample, build_corpus

from modelward.scanning import scan

SAMPLES = build_corpus()


def test_corpus_has_every_label() -> None:
    labels = {s.label for s in SAMPLES}
    assert labels == {"benign", "malicious", "malformed"}
    assert sum(s.label == "malicious" for s in SAMPLES) >= 60


@pytest.mark.parametrize("sample_id", [s.sample_id for s in SAMPLES])
def test_sample_verdict_and_rule(sample_id: str, corpus: dict[str, tuple[Sample, Path]]) -> None:
    sample, path = corpus[sample_id]
    report = scan(path, numeric=sample.numeric, use_config=False)
    rules = {f.rule_id for f in report.findings}
    assert report.verdict == sample.verdict, report.to_text()
    if sample.rule_id is None:
        assert not [f for f in report.findings if f.impact != "info"], report.to_text()
    else:
        assert sample.rule_id in rules, report.to_text()
    for finding in report.findings:
        assert finding.file == path.name
        assert finding.message


def test_whole_corpus_directory(corpus: dict[str, tuple[Sample, Path]]) -> None:
    root = next(iter(corpus.values()))[1].parent.parent
    report = scan(root, use_config=False)
    verdicts = {r.path.split("/")[0]: r.verdict for r in report.files}
    assert report.verdict == "unsafe"
    for sample_id, (sample, _path) in corpus.items():
        if sample.label == "malicious":
            assert verdicts[sample_id] == "unsafe"
