"""Lineage: upstream trees and transitive downstream sets through base models."""

from __future__ import annotations

import pytest

from modelward.errors import NotFoundError
from modelward.provenance.lineage import VersionLineage, downstream_of_dataset, upstream

BASE = VersionLineage("models:/base/1", "a" * 64, datasets=("datasets:/web/1",))
SFT = VersionLineage(
    "models:/chat/1",
    "b" * 64,
    datasets=("datasets:/sft/2",),
    base_model="models:/base/1",
    aliases=("models:/chat@production",),
)
ADAPTER = VersionLineage(
    "models:/adapter/3", "c" * 64, datasets=("datasets:/tone/1",), base_model="sha256:" + "b" * 64
)
EXTERNAL = VersionLineage("models:/other/1", "d" * 64, base_model="sha256:" + "e" * 64)
VERSIONS = [BASE, SFT, ADAPTER, EXTERNAL]


def test_upstream_tree_follows_base_models_by_uri_and_digest() -> None:
    tree = upstream("models:/adapter/3", VERSIONS)
    assert tree.lines() == [
        "version: models:/adapter/3",
        "  dataset: datasets:/tone/1",
        "  version: models:/chat/1",
        "    alias: models:/chat@production",
        "    dataset: datasets:/sft/2",
        "    version: models:/base/1",
        "      dataset: datasets:/web/1",
    ]
    assert tree.to_dict()["children"][1]["ref"] == "models:/chat/1"


def test_external_base_model_and_unknown_version() -> None:
    tree = upstream("models:/other/1", {v.uri: v for v in VERSIONS})
    assert tree.children[0].kind == "external-model"
    with pytest.raises(NotFoundError):
        upstream("models:/missing/1", VERSIONS)


def test_downstream_of_a_dataset_is_transitive() -> None:
    found = downstream_of_dataset("datasets:/web/1", VERSIONS)
    assert [v.uri for v in found] == ["models:/adapter/3", "models:/base/1", "models:/chat/1"]
    assert [v.uri for v in downstream_of_dataset("datasets:/sft/2", VERSIONS)] == [
        "models:/adapter/3",
        "models:/chat/1",
    ]
    assert downstream_of_dataset("datasets:/unused/1", VERSIONS) == []


def test_cycles_are_cut() -> None:
    one = VersionLineage("models:/x/1", "1" * 64, ("datasets:/d/1",), base_model="models:/y/1")
    two = VersionLineage("models:/y/1", "2" * 64, base_model="models:/x/1")
    assert len(upstream("models:/x/1", [one, two]).lines()) == 4
    assert [v.uri for v in downstream_of_dataset("datasets:/d/1", [one, two])] == [
        "models:/x/1",
        "models:/y/1",
    ]
