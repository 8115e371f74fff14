"""The one way forensics and probes get a version's files: a verified copy in a folder.

Today this is the pull service (every byte re-hashed against the manifest, the registry's
signature over the manifest checked, anything written removed on a mismatch). It is kept behind
this single function so that the verified loader (`modelward.load`) can take its place.
"""

from __future__ import annotations

from pathlib import Path

from modelward.services.registry import RegistryService
from modelward.storage.metadata.registry_repository import VersionRecord


def materialise_verified(registry: RegistryService, uri: str, out_dir: Path) -> VersionRecord:
    """Write version `uri`'s bundle, verified, to the new folder `out_dir`; its record."""
    return registry.pull_to(uri, out_dir).version
