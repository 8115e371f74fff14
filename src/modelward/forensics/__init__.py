"""Poisoning defence: weight comparison against a base (safetensors and GGUF), quantisation
claims checked against their format's error, bundle metadata differences, and behavioural probe
suites judged from measurements taken in a sandbox. See docs/forensics.md."""
