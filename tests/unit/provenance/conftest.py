"""Shared fixtures for provenance tests: keys and a complete training run."""

from __future__ import annotations

import datetime as dt

import pytest

from modelward.provenance.slsa import (
    BaseModel,
    DatasetUse,
    EnvironmentInfo,
    SourceInfo,
    TrainingRun,
)
from modelward.signing.keys import Signer, generate_private_key


@pytest.fixture
def signer() -> Signer:
    return Signer(generate_private_key("ecdsa-p256"))


@pytest.fixture
def other_signer() -> Signer:
    return Signer(generate_private_key("ed25519"))


@pytest.fixture
def training_run() -> TrainingRun:
    start = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    return TrainingRun(
        builder_id="https://modelward.dev/builders/local-training/v1",
        invocation_id="run-42",
        started_on=start,
        finished_on=start + dt.timedelta(hours=2, microseconds=5),
        command=("python", "train.py", "--epochs", "3"),
        hyperparameters={"lr": 0.0003, "epochs": 3, "schedule": {"warmup": 100}},
        seeds={"python": 1, "torch": 2},
        datasets=(DatasetUse("datasets:/chat-sft/3", "a" * 64),),
        base_model=BaseModel(digest="b" * 64, uri="models:/base-llm/7"),
        source=SourceInfo("https://git.example.org/ml/train.git", "c" * 40, dirty=False),
        environment=EnvironmentInfo("3.11.7", "sha256:" + "d" * 64, "Linux-x86_64", "NVIDIA A100"),
    )
