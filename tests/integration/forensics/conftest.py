"""The real-model forensic cases, built once (and cached between sessions while their inputs
are unchanged), and a registry holding them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.forensics_cases import Cases, build_cases, cached_cases

from modelward.services.context import RegistryContext, open_registry
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry

ADMIN = "alice"


@pytest.fixture(scope="session")
def cases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Cases:
    """Built once and kept in pytest's cache, keyed by a digest of the builder's inputs (see
    `cases_key`); without the cache plugin (`-p no:cacheprovider`) built in a temporary folder."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return build_cases(tmp_path_factory.mktemp("smollm2-cases"))
    return cached_cases(cache.mkdir("smollm2-cases"))


@dataclass
class CaseRegistry:
    home: Path
    ctx: RegistryContext
    uris: dict[str, str]


@pytest.fixture(scope="session")
def case_registry(cases: Cases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseRegistry]:
    home = tmp_path_factory.mktemp("forensics-registry") / "home"
    keys = ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL", "MODELWARD_ACTOR")
    saved = {k: os.environ.get(k) for k in keys}
    for key in saved:
        os.environ.pop(key, None)
    os.environ["MODELWARD_ACTOR"] = ADMIN
    initialize_registry(home)
    ctx = open_registry(home)
    registry = RegistryService(ctx, actor=ADMIN)
    uris = {}
    for name, folder in (
        ("base", cases.base),
        ("benign", cases.benign),
        ("backdoor", cases.backdoor),
        ("q8_0", cases.q8_0.parent),
        ("q8_0_altered", cases.q8_0_altered.parent),
    ):
        uris[name] = registry.push(folder, "smollm2").version.uri
    try:
        yield CaseRegistry(home, ctx, uris)
    finally:
        ctx.close()
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
