"""Shared fixtures for the scanner tests: the corpus written once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.scanning_corpus import Sample, write_corpus  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Sample, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return {sample.sample_id: (sample, path) for sample, path in write_corpus(root)}
