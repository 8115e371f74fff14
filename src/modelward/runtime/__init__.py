"""The post-release runtime: verified loading and its cache (`loading`, `bundle_cache`), and
telemetry in (`otlp` decoding, `genai` attribute mapping, `signals` per release and window)."""
