"""modelward: a governed registry and release gate for open-weight AI models.

The public Python API is exactly `__all__`; names load lazily so that importing modelward (and
starting the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "sign_bundle": "modelward.services.bundle_signing",
    "verify_bundle": "modelward.services.bundle_signing",
    "BundleMismatchError": "modelward.services.bundle_signing",
    "Client": "modelward.client",
    "Signer": "modelward.signing.keys",
    "Verifier": "modelward.signing.keys",
    "generate_private_key": "modelward.signing.keys",
    "load_private_key": "modelward.signing.keys",
    "load_public_key": "modelward.signing.keys",
    "Manifest": "modelward.core.manifest",
    "ModelwardError": "modelward.errors",
    "track_run": "modelward.provenance.run_capture",
    "scan": "modelward.scanning",
    "load": "modelward.runtime.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelward' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
