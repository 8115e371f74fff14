"""Post-release runtime: verified loading, telemetry mapping, canary and shadow judgement, drift,
alerts."""
