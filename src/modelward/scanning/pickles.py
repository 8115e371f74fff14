"""Scanners for pickle streams: plain pickles, joblib files and legacy PyTorch checkpoints.

A stream may hold several pickles back to back (legacy PyTorch writes five; joblib interleaves
raw array bytes after each array wrapper); every one of them is analysed, because some loader
reads each. PyTorch persistent ids are checked for the shape `torch.load` expects. Nothing is
unpickled.
"""

from __future__ import annotations

from typing import Any

from modelward.scanning.context import ScanContext, at
from modelward.scanning.pickle_values import Buffer, Global, Instance, Opaque, PickleDict
from modelward.scanning.pickle_vm import PickleMachine

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001
STORAGE_ELEMENT_SIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "BFloat16Storage": 2, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8,
    "QUInt8Storage": 1, "QInt8Storage": 1, "QInt32Storage": 4, "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1, "UntypedStorage": 1,
}  # fmt: skip
STORAGE_DTYPE = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "BFloat16Storage": "bf16",
}  # fmt: skip


class TorchStorages:
    """A persistent_load for PyTorch pickles that checks each storage reference."""

    def __init__(self, ctx: ScanContext, where: str, legacy: bool) -> None:
        self.ctx = ctx
        self.where = where
        self.legacy = legacy
        self.storages: dict[str, tuple[str, int]] = {}

    def __call__(self, pid: Any, offset: int) -> Any:
        location = at(self.where, f"offset {offset}")
        if not isinstance(pid, tuple) or not pid:
            self.ctx.add("MW-TORCH-STORAGE", location, "a persistent id is not a tuple")
            return Opaque("storage")
        kind = pid[0]
        if kind == "module" and self.legacy:
            return Opaque("module source")
        if kind != "storage" or len(pid) < 5:
            self.ctx.add(
                "MW-TORCH-STORAGE", location, f"persistent id of kind {kind!r} is not a storage"
            )
            return Opaque("storage")
        storage_type, key, _device, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, Global) or not isinstance(key, str):
            self.ctx.add("MW-TORCH-STORAGE", location, "a storage reference is not well formed")
            return Opaque("storage")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            self.ctx.add("MW-TORCH-STORAGE", location, f"storage {key} has an invalid size")
            return Opaque("storage")
        element = STORAGE_ELEMENT_SIZE.get(storage_type.name)
        if storage_type.module != "torch" or element is None:
            self.ctx.add(
                "MW-TORCH-STORAGE",
                location,
                f"storage {key} has type {storage_type.dotted}, which is not a storage type",
            )
            return Opaque("storage")
        self.storages.setdefault(key, (storage_type.name, numel * element))
        return Opaque("storage")


def scan_pickle_stream(
    data: Buffer,
    ctx: ScanContext,
    where: str,
    *,
    start: int = 0,
    end: int | None = None,
    persistent_load: Any = None,
    max_pickles: int = 1_000,
) -> list[Any]:
    """Analyse every pickle from `start` to `end`; return the top-level values."""
    end = len(data) if end is None else end
    values: list[Any] = []
    machine = PickleMachine(
        data, ctx.allow, pos=start, end=end, persistent_load=persistent_load,
        build_hook=_joblib_hook(ctx, where),
    )  # fmt: skip
    first = True
    while machine.pos < end and len(values) < max_pickles:
        before = machine.pos
        result = machine.run_one()
        if not first and not result.globals and not result.complete:
            ctx.add(
                "MW-PKL-TRAILING",
                at(where, f"offset {before}"),
                f"{end - before} bytes after the last pickle are not a pickle",
            )
            return values
        ctx.add_pickle(result, where)
        if not result.complete:
            return values
        values.append(result.value)
        first = False
    return values


def _joblib_hook(ctx: ScanContext, where: str) -> Any:
    """joblib writes each array's bytes right after its wrapper's BUILD; skip or scan them."""

    def hook(machine: PickleMachine, instance: Instance, offset: int) -> None:
        func = instance.func
        if not (
            isinstance(func, Global)
            and func.module == "joblib.numpy_pickle"
            and func.name == "NumpyArrayWrapper"
            and isinstance(instance.state, PickleDict)
        ):
            return
        state = instance.state
        itemsize, has_object = _dtype_of(state.get("dtype"))
        if has_object:
            nested = PickleMachine(machine.data, ctx.allow, pos=machine.pos, end=machine.end)
            ctx.add_pickle(nested.run_one(), where)
            machine.pos = nested.pos
            return
        shape = state.get("shape")
        if (
            itemsize is None
            or not isinstance(shape, tuple)
            or not all(isinstance(n, int) and n >= 0 for n in shape)
        ):
            ctx.add(
                "MW-PKL-OPCODE",
                at(where, f"offset {offset}"),
                "a joblib array wrapper has a dtype or shape that cannot be followed",
            )
            machine.pos = machine.end
            return
        count = 1
        for n in shape:
            count *= n
        skip = count * itemsize
        if state.get("numpy_array_alignment_bytes") is not None:
            if machine.pos >= machine.end:
                skip = 1 << 62
            else:
                skip += 1 + machine.data[machine.pos]
        if machine.pos + skip > machine.end:
            ctx.add(
                "MW-PKL-TRUNCATED",
                at(where, f"offset {machine.pos}"),
                "a joblib array's data runs past the end of the file",
            )
            machine.pos = machine.end
            return
        machine.pos += skip

    return hook


def _dtype_of(value: Any) -> tuple[int | None, bool]:
    """Item size and has-object flag of a pickled numpy dtype (`numpy.dtype('f8', ...)`)."""
    if not (isinstance(value, Instance) and isinstance(value.func, Global)):
        return None, False
    if value.func.name != "dtype" or not value.args or not isinstance(value.args[0], str):
        return None, False
    import numpy as np

    try:
        dtype = np.dtype(value.args[0])
    except (TypeError, ValueError):
        return None, False
    if dtype.hasobject:
        return None, True
    return dtype.itemsize, False


def scan_torch_legacy(data: Buffer, ctx: ScanContext, where: str) -> None:
    """Legacy `torch.save`: magic, protocol, sys info, object, storage keys, raw storages."""
    storages = TorchStorages(ctx, where, legacy=True)
    machine = PickleMachine(data, ctx.allow, persistent_load=storages)
    values: list[Any] = []
    for index in range(5):
        result = machine.run_one()
        ctx.add_pickle(result, where)
        if not result.complete:
            return
        values.append(result.value)
        if index == 0 and result.value != TORCH_LEGACY_MAGIC:
            ctx.add("MW-TORCH-LEGACY", at(where, "offset 0"), "the magic number is wrong")
            return
        if index == 1 and result.value != TORCH_LEGACY_PROTOCOL:
            ctx.add(
                "MW-TORCH-LEGACY", at(where, f"offset {result.start}"),
                "the legacy protocol version is not 1001",
            )  # fmt: skip
            return
    keys = values[4]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        ctx.add("MW-TORCH-LEGACY", where, "the storage key list is not a list of names")
        return
    pos = machine.pos
    for key in keys:
        known = storages.storages.get(key)
        if known is None:
            ctx.add("MW-TORCH-LEGACY", where, f"storage {key} is listed but never referenced")
            return
        if pos + 8 > len(data):
            ctx.add("MW-TORCH-LEGACY", at(where, f"offset {pos}"), f"storage {key} is truncated")
            return
        numel = int.from_bytes(bytes(data[pos : pos + 8]), "little")
        element = STORAGE_ELEMENT_SIZE.get(known[0], 1)
        pos += 8 + numel * element
        if pos > len(data):
            ctx.add("MW-TORCH-LEGACY", at(where, f"offset {pos}"), f"storage {key} is truncated")
            return
    if pos != len(data):
        ctx.add(
            "MW-TORCH-LEGACY",
            at(where, f"offset {pos}"),
            f"{len(data) - pos} bytes follow the last storage",
        )
