"""Small model bundles for the registry tests: safetensors weights the push scanner accepts, a
config and a tokenizer, all with seeded contents so two calls with one seed give one bundle."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path


def safetensors_bytes(size: int, seed: int) -> bytes:
    """A well-formed safetensors file holding one U8 tensor of `size` seeded random bytes."""
    header = json.dumps({"weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    raw = header.encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + random.Random(seed).randbytes(size)


def make_bundle(folder: Path, seed: int = 0, *, weights: int = 1, weight_size: int = 4096) -> Path:
    """Write a bundle into `folder` (created) and return it."""
    folder.mkdir(parents=True)
    for i in range(weights):
        name = f"model-{i + 1:05d}-of-{weights:05d}.safetensors"
        (folder / name).write_bytes(safetensors_bytes(weight_size, seed * 1000 + i))
    (folder / "config.json").write_text(json.dumps({"layers": 2, "seed": seed}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "tokenizer.json").write_text(json.dumps({"vocab": ["a", "b"]}))
    return folder


def bundle_files(folder: Path) -> dict[str, bytes]:
    """Every regular file under `folder` by its POSIX relative name."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
