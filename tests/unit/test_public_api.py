from __future__ import annotations

import modelward

EXPECTED = {
    "BundleMismatchError",
    "Client",
    "Manifest",
    "ModelwardError",
    "Signer",
    "Verifier",
    "generate_private_key",
    "load",
    "load_private_key",
    "load_public_key",
    "scan",
    "sign_bundle",
    "track_run",
    "verify_bundle",
}


def test_public_api_is_pinned() -> None:
    assert set(modelward.__all__) == EXPECTED
    for name in modelward.__all__:
        assert getattr(modelward, name) is not None
