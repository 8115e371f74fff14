"""The post-release runtime: verified loading and its cache (`loading`, `bundle_cache`),
telemetry in (`otlp` decoding, `genai` attribute mapping, `signals` per release and window),
canary and shadow judgement (`canary`, `shadow`), drift (`drift`) and alert payloads (`alerts`)."""
