"""Malformed and hostile files: truncated, empty, gigantic headers, self-references, deep
nesting, archive bombs, and weights with NaN or Inf (numeric sweep)."""

from __future__ import annotations

import gzip
import struct
import zipfile
from typing import Any

from tests.scanning_corpus import builders as b
from tests.scanning_corpus.asm import Pickle


def _bad(name: str, data: bytes, rule_id: str, note: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "data": data,
        "label": "malformed",
        "verdict": "malformed",
        "rule_id": rule_id,
        "note": note,
        **extra,
    }


def _nested_zip(levels: int) -> bytes:
    inner = b"\x80\x02K\x01."
    for level in range(levels):
        inner = b.zip_of({f"level{level}.bin": inner})
    return inner


def _gzip_bomb() -> bytes:
    member = gzip.compress(b"\x00" * (1 << 20), mtime=0)
    return member * 600  # 600 MiB of zeros from about 600 KiB


def bad_samples() -> list[dict[str, Any]]:
    good_pickle = b.torch_state_dict_pickle()
    st = b.safetensors({"w": ("F32", [4], b.FLOAT4)})
    f32 = struct.pack("<4f", 1.0, float("nan"), 2.0, 3.0)
    inf = struct.pack("<4f", 1.0, float("inf"), 2.0, 3.0)
    return [
        _bad("empty.bin", b"", "MW-FMT-EMPTY", "empty file"),
        _bad(
            "truncated.pkl",
            good_pickle[: len(good_pickle) // 2],
            "MW-PKL-TRUNCATED",
            "pickle cut in half",
        ),
        _bad("truncated.safetensors", st[:-3], "MW-ST-OFFSETS", "data block cut short"),
        _bad(
            "huge_header.safetensors",
            struct.pack("<Q", 2**62) + b"{}",
            "MW-ST-HEADER",
            "header length far beyond the file",
        ),
        _bad(
            "giant_header_limit.safetensors",
            struct.pack("<Q", 150_000_000) + b"{" + b" " * 64,
            "MW-ST-HEADER",
            "header length over the 100 MB limit",
        ),
        _bad(
            "overlap.safetensors",
            b.safetensors_raw(
                b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
                b"\x00" * 12,
            ),
            "MW-ST-OFFSETS",
            "overlapping tensors",
        ),
        _bad(
            "gap.safetensors",
            b.safetensors_raw(
                b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\x00" * 8
            ),
            "MW-ST-COVERAGE",
            "bytes that belong to no tensor",
        ),
        _bad(
            "duplicate_key.safetensors",
            b.safetensors_raw(
                b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                b"\x00" * 4,
            ),
            "MW-ST-DUPLICATE",
            "duplicate tensor names",
        ),
        _bad(
            "bad_dtype.safetensors",
            b.safetensors_raw(
                b'{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', b"\x00" * 4
            ),
            "MW-ST-DTYPE",
            "unknown dtype",
        ),
        _bad(
            "shape_overflow.safetensors",
            b.safetensors_raw(
                b'{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}',
                b"\x00" * 4,
            ),
            "MW-ST-SHAPE",
            "shape x dtype overflows 64 bits",
        ),
        _bad(
            "deep_nesting.safetensors",
            b.safetensors_raw(b'{"__metadata__":' + b"[" * 200_000 + b"]" * 200_000 + b"}", b""),
            "MW-ST-HEADER",
            "deeply nested JSON header",
        ),
        _bad(
            "huge_counts.gguf",
            b.gguf(None, counts=(2**60, 2**60)),
            "MW-GGUF-STRUCTURE",
            "counts far beyond the file",
        ),
        _bad("truncated.gguf", b.gguf("{{ x }}")[:60], "MW-GGUF-STRUCTURE", "cut short"),
        _bad(
            "truncated.npy",
            b.npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (100,), }", b"\x00" * 8),
            "MW-NPY-SIZE",
            "data shorter than shape",
        ),
        _bad(
            "self_reference.pkl",
            Pickle(2).empty_list().binget(7).append().stop(),
            "MW-PKL-STACK",
            "reads a memo slot before it exists",
        ),
        _bad("nested_zips.zip", _nested_zip(7), "MW-FMT-LIMIT", "zips nested past the limit"),
        _bad(
            "zip_bomb.zip",
            b.zip_of({"zeros.bin": b"\x00" * (20 << 20)}, zipfile.ZIP_DEFLATED),
            "MW-ARC-BOMB",
            "compression ratio over 1000",
        ),
        _bad("gzip_bomb.gz", _gzip_bomb(), "MW-ARC-BOMB", "600 MiB from 600 KiB"),
        _bad("random.bin", bytes(range(256)) * 16, "MW-FMT-UNKNOWN", "no recognised format"),
        _bad(
            "torch_missing_storage.pt",
            b.torch_zip(good_pickle, storages={}),
            "MW-TORCH-STORAGE",
            "data.pkl references a storage the archive lacks",
        ),
        _bad("bad_opcode.pkl", b"\x80\x02\xff.", "MW-PKL-OPCODE", "not an opcode"),
        _bad(
            "nan_weights.safetensors",
            b.safetensors({"w": ("F32", [4], f32)}),
            "MW-NUM-NAN",
            "NaN in weights",
            numeric=True,
        ),
        _bad(
            "inf_weights.safetensors",
            b.safetensors({"w": ("F32", [4], inf)}),
            "MW-NUM-INF",
            "Inf in weights",
            numeric=True,
        ),
        _bad(
            "nan_torch.pt",
            b.torch_zip(good_pickle, storages={"0": f32}),
            "MW-NUM-NAN",
            "NaN in a torch storage",
            numeric=True,
        ),
    ]
