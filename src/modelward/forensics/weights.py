"""Reading a bundle's weights as float32 arrays, tensor by tensor, from safetensors and GGUF.

Safetensors files are read from their header and mapped (F32, F16, BF16, F64 and the integer
types); GGUF files through the `gguf` library, quantised tensors dequantised with
`gguf.quants.dequantize`. When one side of a comparison is GGUF and the other safetensors, the
safetensors names are mapped to GGUF names with gguf's own tensor-name map, and for the llama
family the query and key projections are permuted the way llama.cpp's converter permutes them,
so that both sides are compared in one layout. Reads files only; knows nothing of registries.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelward.errors import DependencyError, InputError

_SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024
# files a loader may take weights from: by name, and by the scanner's sniffing of their bytes
_WEIGHT_SUFFIXES = frozenset(
    {
        ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".safetensors", ".h5", ".hdf5",
        ".keras", ".onnx", ".msgpack", ".npz", ".npy", ".pkl", ".pickle", ".joblib", ".tflite",
        ".ot", ".pb", ".llamafile",
    }
)  # fmt: skip
_WEIGHT_FORMATS = frozenset(
    {"zip", "torch-legacy", "pickle", "safetensors", "npy", "gguf", "hdf5", "onnx"}
)
_SNIFF_BYTES = 4096
# architectures whose q/k projections llama.cpp's converter permutes for its rotary layout
_PERMUTED_ARCHS = ("llama",)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "F32", "BF16", "Q8_0", ...
    load: Callable[[], np.ndarray] = field(repr=False, compare=False)


@dataclass
class WeightSet:
    """The tensors of one bundle, by name, in the layout of its format."""

    format: str  # "safetensors" or "gguf"
    files: tuple[str, ...]
    tensors: dict[str, TensorEntry]
    gguf_fields: dict[str, Any] = field(default_factory=dict)  # GGUF metadata (not tokens)
    gguf_tokens: list[str] | None = None
    gguf_path: Path | None = None
    gguf_reader: Any = field(default=None, repr=False)  # the gguf.GGUFReader it came from
    # weight-like files in the bundle that were not read (a loader might use them instead)
    uncompared: tuple[str, ...] = ()

    @property
    def architecture(self) -> str | None:
        arch = self.gguf_fields.get("general.architecture")
        return arch if isinstance(arch, str) else None


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise DependencyError(
            "reading GGUF needs the forensics extra: pip install 'modelward[forensics]'"
        ) from exc
    return gguf


def open_weights(bundle: Path) -> WeightSet:
    """The weights of a bundle folder (or one file): every *.safetensors, or one *.gguf; any
    other weight-like file (by extension or by its sniffed format) is listed in `uncompared`."""
    bundle = Path(bundle)
    files = [bundle] if bundle.is_file() else sorted(p for p in bundle.rglob("*") if p.is_file())
    ggufs = [p for p in files if p.suffix == ".gguf"]
    sts = [p for p in files if p.suffix == ".safetensors"]
    if ggufs and sts:
        raise InputError(f"{bundle}: holds both GGUF and safetensors weights; compare one format")
    if len(ggufs) > 1:
        raise InputError(f"{bundle}: holds {len(ggufs)} GGUF files; compare one at a time")
    if ggufs:
        opened = _open_gguf(ggufs[0], bundle)
        opened.uncompared = _uncompared(files, ggufs, bundle)
        return opened
    if sts:
        tensors: dict[str, TensorEntry] = {}
        for path in sts:
            for entry in _safetensors_entries(path):
                if entry.name in tensors:
                    raise InputError(f"{path}: tensor {entry.name!r} appears in two files")
                tensors[entry.name] = entry
        return WeightSet(
            "safetensors",
            tuple(_rel(p, bundle) for p in sts),
            tensors,
            uncompared=_uncompared(files, sts, bundle),
        )
    raise InputError(f"{bundle}: no safetensors or GGUF weights found")


def _uncompared(files: list[Path], read: list[Path], root: Path) -> tuple[str, ...]:
    from modelward.scanning.sniff import sniff

    done = set(read)
    found = []
    for path in files:
        if path in done:
            continue
        if path.suffix.lower() not in _WEIGHT_SUFFIXES:
            with path.open("rb") as handle:
                if sniff(handle.read(_SNIFF_BYTES)) not in _WEIGHT_FORMATS:
                    continue
        found.append(_rel(path, root))
    return tuple(found)


def _rel(path: Path, root: Path) -> str:
    return path.name if root.is_file() else str(path.relative_to(root))


def _safetensors_entries(path: Path) -> Iterator[TensorEntry]:
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise InputError(f"{path}: too short to be safetensors")
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER:
            raise InputError(f"{path}: safetensors header of {length} bytes is too large")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not an object")
    size = path.stat().st_size
    base = 8 + length
    for name, info in sorted(header.items()):
        if name == "__metadata__":
            continue
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: tensor {name!r} has a malformed header entry") from exc
        if dtype not in _SAFETENSORS_DTYPES:
            raise InputError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        width = np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
        count = int(np.prod(shape)) if shape else 1
        if end - start != count * width or start < 0 or base + end > size:
            raise InputError(f"{path}: tensor {name!r} offsets do not match its shape")
        yield TensorEntry(name, shape, dtype, _safetensors_loader(path, base + start, shape, dtype))


def _safetensors_loader(
    path: Path, offset: int, shape: tuple[int, ...], dtype: str
) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raw = np.memmap(
            path, dtype=_SAFETENSORS_DTYPES[dtype], mode="r", offset=offset, shape=shape
        )
        if dtype == "BF16":
            return (np.asarray(raw, dtype=np.uint32) << 16).view(np.float32)
        return np.asarray(raw, dtype=np.float32)

    return load


def _open_gguf(path: Path, root: Path) -> WeightSet:
    gguf = _gguf()
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, struct.error) as exc:
        raise InputError(f"{path}: not a readable GGUF file: {exc}") from exc
    fields: dict[str, Any] = {}
    tokens: list[str] | None = None
    for key, item in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
            values = item.contents()
            if key == "tokenizer.ggml.tokens":
                tokens = [str(v) for v in values]
            else:
                fields[key] = _digest_of(values)  # long lists are compared by digest
            continue
        try:
            fields[key] = item.contents()
        except (ValueError, TypeError):
            continue
    tensors: dict[str, TensorEntry] = {}
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape))  # numpy order (rows first)
        tensors[tensor.name] = TensorEntry(
            tensor.name, shape, tensor.tensor_type.name, _gguf_loader(tensor, shape)
        )
    return WeightSet("gguf", (_rel(path, root),), tensors, fields, tokens, path, reader)


def _digest_of(values: Any) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(json.dumps(list(values), default=str).encode()).hexdigest()


def _gguf_loader(tensor: Any, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        gguf = _gguf()
        try:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError as exc:
            raise InputError(
                f"tensor {tensor.name!r}: gguf cannot dequantise {tensor.tensor_type.name}"
            ) from exc
        return np.asarray(data, dtype=np.float32).reshape(shape)

    return load


def gguf_view_of(weights: WeightSet, like: WeightSet) -> WeightSet:
    """`weights` (safetensors, transformers names) renamed and re-laid-out as the GGUF `like`
    stores them; tensors gguf's name map does not know keep their names (and so show as added
    or removed)."""
    if weights.format == "gguf" or like.format != "gguf":
        return weights
    gguf = _gguf()
    arch_name = like.architecture
    block_count = like.gguf_fields.get(f"{arch_name}.block_count")
    archs = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch_name not in archs or not isinstance(block_count, int):
        raise InputError(
            f"cannot map safetensors names to GGUF architecture {arch_name!r}; compare two "
            "files of the same format"
        )
    name_map = gguf.get_tensor_name_map(archs[arch_name], block_count)
    heads = like.gguf_fields.get(f"{arch_name}.attention.head_count")
    kv_heads = like.gguf_fields.get(f"{arch_name}.attention.head_count_kv", heads)
    renamed: dict[str, TensorEntry] = {}
    for name, entry in weights.tensors.items():
        mapped = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        target = mapped or name
        permute = None
        if mapped and arch_name in _PERMUTED_ARCHS and isinstance(heads, int):
            if name.endswith("q_proj.weight"):
                permute = heads
            elif name.endswith("k_proj.weight") and isinstance(kv_heads, int):
                permute = kv_heads
        renamed[target] = TensorEntry(
            target, entry.shape, entry.dtype, _permuted(entry.load, permute)
        )
    if "output.weight" not in like.tensors:
        renamed.pop("output.weight", None)  # tied to the embedding on both sides
    return WeightSet(weights.format, weights.files, renamed, weights.gguf_fields)


def _permuted(load: Callable[[], np.ndarray], heads: int | None) -> Callable[[], np.ndarray]:
    if heads is None:
        return load

    def permuted() -> np.ndarray:
        w = load()
        return (
            w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    return permuted
