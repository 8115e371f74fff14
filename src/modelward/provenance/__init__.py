"""The second supply chain: datasets, training provenance, evaluations, lineage, ML-BOM.

- `records`, `record_proofs`: per-record Merkle roots of JSONL/CSV/Parquet files, inclusion and
  absence proofs.
- `datasets`: dataset manifests (files, record roots, licence and governance) and eligibility.
- `slsa`, `run_capture`: SLSA v1 training provenance, its DSSE signing and verification, and the
  `track_run` context manager for training scripts.
- `evaluation`: in-toto test-result attestations and metric comparison.
- `lineage`, `bom`, `reproduce`: lineage trees, CycloneDX 1.6 ML-BOMs, reproducibility checks.

Library code only: nothing here touches the registry database or the CLI.
"""
