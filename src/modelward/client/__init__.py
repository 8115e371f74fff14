"""`modelward.Client`: the Python SDK for a registry behind `modelward serve`.

HTTP only (httpx); it imports no database or server code, so it is quick to import. Push
streams each file (hashing it first, skipping files the server already has) with memory bounded
by one chunk; pull verifies the registry's OMS signature against a pinned registry key (given,
or pinned on first use in `known_registries.json`) and every byte against the signed manifest.
"""

from __future__ import annotations

from modelward.client._fast_import import skip_httpx_command_line

skip_httpx_command_line()

from modelward.client._client import Client, default_known_registries  # noqa: E402

__all__ = ["Client", "default_known_registries"]
