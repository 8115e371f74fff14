"""Lineage over versions: the upstream tree of a version and everything downstream of a dataset.

Works on plain `VersionLineage` records (a version's URI, root digest, dataset URIs, base model
reference and aliases) that the registry assembles from stored provenance. A base model reference
is a `models:/NAME/N` URI or `sha256:<root digest>`; both resolve to a known version when one
matches, otherwise the base model is external. Cycles (which valid provenance cannot form) are
cut, never followed forever. Does not read provenance or the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.errors import NotFoundError


@dataclass(frozen=True)
class VersionLineage:
    uri: str  # models:/NAME/N
    root_digest: str
    datasets: tuple[str, ...] = ()  # datasets:/NAME/N
    base_model: str | None = None  # models:/NAME/N or sha256:<hex>
    aliases: tuple[str, ...] = ()  # models:/NAME@ALIAS

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "rootDigest": self.root_digest,
            "datasets": list(self.datasets),
            "baseModel": self.base_model,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class LineageNode:
    kind: str  # "version", "dataset", "external-model", "alias"
    ref: str
    children: tuple[LineageNode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "ref": self.ref}
        if self.children:
            data["children"] = [c.to_dict() for c in self.children]
        return data

    def lines(self, indent: int = 0) -> list[str]:
        """A plain-text tree, one node per line."""
        out = [f"{'  ' * indent}{self.kind}: {self.ref}"]
        for child in self.children:
            out += child.lines(indent + 1)
        return out


class _Index:
    def __init__(self, versions: Iterable[VersionLineage]) -> None:
        self.by_uri: dict[str, VersionLineage] = {}
        self.by_digest: dict[str, VersionLineage] = {}
        for version in versions:
            self.by_uri[version.uri] = version
            self.by_digest.setdefault(version.root_digest, version)

    def resolve(self, reference: str) -> VersionLineage | None:
        if reference.startswith("sha256:"):
            return self.by_digest.get(reference.removeprefix("sha256:"))
        return self.by_uri.get(reference)


def upstream(
    version_uri: str, versions: Iterable[VersionLineage] | Mapping[str, VersionLineage]
) -> LineageNode:
    """The tree version → (aliases, datasets, base model → its own upstream …)."""
    index = _Index(versions.values() if isinstance(versions, Mapping) else versions)
    root = index.by_uri.get(version_uri)
    if root is None:
        raise NotFoundError(f"no lineage for {version_uri}")

    def node(version: VersionLineage, seen: frozenset[str]) -> LineageNode:
        children = [LineageNode("alias", alias) for alias in version.aliases]
        children += [LineageNode("dataset", uri) for uri in version.datasets]
        if version.base_model is not None:
            base = index.resolve(version.base_model)
            if base is None:
                children.append(LineageNode("external-model", version.base_model))
            elif base.uri in seen:
                children.append(LineageNode("version", base.uri))  # cycle cut
            else:
                children.append(node(base, seen | {base.uri}))
        return LineageNode("version", version.uri, tuple(children))

    return node(root, frozenset({root.uri}))


def downstream_of_dataset(
    dataset_uri: str, versions: Iterable[VersionLineage] | Mapping[str, VersionLineage]
) -> list[VersionLineage]:
    """Every version trained on the dataset, directly or through a chain of base models,
    sorted by URI."""
    index = _Index(versions.values() if isinstance(versions, Mapping) else versions)
    children: dict[str, list[VersionLineage]] = {}
    for version in index.by_uri.values():
        if version.base_model is not None:
            base = index.resolve(version.base_model)
            if base is not None:
                children.setdefault(base.uri, []).append(version)
    found: dict[str, VersionLineage] = {}
    pending = [v for v in index.by_uri.values() if dataset_uri in v.datasets]
    while pending:
        version = pending.pop()
        if version.uri in found:
            continue
        found[version.uri] = version
        pending.extend(children.get(version.uri, []))
    return [found[uri] for uri in sorted(found)]
