"""The post-release runtime: verified loading and its bundle cache (`loading`), and telemetry in
(`otlp` decoding, `genai` attribute mapping) and out (`signals` per release and window)."""
