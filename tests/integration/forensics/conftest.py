"""The real-model forensic cases, built once (and cached between sessions, and between clones
on one machine, while their inputs are unchanged), and a registry holding them."""

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
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    """Built once and kept in the user's cache folder (`$XDG_CACHE_HOME`, else `~/.cache`,
    under `modelward-tests/`), keyed by a digest of the builder's inputs and checked file by
    file before use (see `cached_cases`); `MODELWARD_TEST_CACHE=off` builds them afresh in a
    temporary folder."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if os.environ.get("MODELWARD_TEST_CACHE") == "off":
        return build_cases(tmp_path_factory.mktemp("smollm2-cases"))
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = root / "modelward-tests" / "smollm2-cases"
    folder.mkdir(parents=True, exist_ok=True)
    return cached_cases(folder)


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
