"""Byte-level builders for the container formats of the corpus: PyTorch zip and legacy files,
safetensors, GGUF, ONNX, Keras and HDF5 stand-ins, zip/tar archives. Nothing here needs torch."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile

from tests.scanning_corpus.asm import Pickle

FLOAT4 = struct.pack("<4f", 0.5, -1.25, 2.0, 3.5)


def torch_state_dict_pickle(
    names: tuple[str, ...] = ("weight",), *, parameter: bool = False, proto: int = 2
) -> bytes:
    """A pickle shaped like torch.save(state_dict): OrderedDict of _rebuild_tensor_v2 calls."""
    p = Pickle(proto)
    p.global_("collections", "OrderedDict").empty_tuple().reduce().binput(0)
    p.mark()
    for index, name in enumerate(names):
        p.str(name)
        if parameter:
            p.global_("torch._utils", "_rebuild_parameter")
            p.mark()
        p.global_("torch._utils", "_rebuild_tensor_v2")
        p.mark()
        # persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
        p.mark().str("storage").global_("torch", "FloatStorage").str(str(index)).str("cpu")
        p.int(4).tuple().binpersid()
        p.int(0).int(2).int(2).tuple2().int(2).int(1).tuple2().false()
        p.global_("collections", "OrderedDict").empty_tuple().reduce()
        p.tuple().reduce()
        if parameter:
            p.false().global_("collections", "OrderedDict").empty_tuple().reduce()
            p.tuple().reduce()
    p.setitems()
    # the state dict's _metadata attribute, set by BUILD as torch does
    p.empty_dict().str("_metadata").global_("collections", "OrderedDict").empty_tuple().reduce()
    p.setitem().build()
    return p.stop()


def torch_zip(
    data_pkl: bytes, storages: dict[str, bytes] | None = None, extra: dict[str, bytes] | None = None
) -> bytes:
    storages = {"0": FLOAT4} if storages is None else storages
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", b"little")
        for key, blob in storages.items():
            archive.writestr(f"archive/data/{key}", blob)
        for name, blob in (extra or {}).items():
            archive.writestr(name, blob)
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/.data/serialization_id", b"1234567890\n")
    return buffer.getvalue()


def torch_legacy(main: bytes | None = None) -> bytes:
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    protocol = Pickle(2).raw(b"M\xe9\x03").stop()
    sys_info = (
        Pickle(2)
        .empty_dict()
        .str("protocol_version")
        .raw(b"M\xe9\x03")
        .setitem()
        .str("little_endian")
        .raw(b"\x88")
        .setitem()
        .stop()
    )
    if main is None:
        main = torch_state_dict_pickle()
    keys = Pickle(2).empty_list().str("0").append().stop()
    storage = struct.pack("<Q", 4) + FLOAT4
    return magic + protocol + sys_info + main + keys + storage


def safetensors(
    tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict[str, str] | None = None
) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    blob = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(blob), len(blob) + len(data)],
        }
        blob += data
    return safetensors_raw(json.dumps(header).encode(), blob)


def safetensors_raw(header: bytes, blob: bytes) -> bytes:
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + blob


def gguf(
    template: str | None,
    *,
    tensors: int = 1,
    kv_extra: bytes = b"",
    counts: tuple[int, int] | None = None,
) -> bytes:
    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    kv = string("general.architecture") + struct.pack("<I", 8) + string("llama")
    kv += string("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32)
    n_kv = 2
    if template is not None:
        kv += string("tokenizer.chat_template") + struct.pack("<I", 8) + string(template)
        n_kv += 1
    infos = b""
    for index in range(tensors):
        infos += string(f"blk.{index}.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4)
        infos += struct.pack("<I", 0) + struct.pack("<Q", index * 64)
    n_tensors, n_kv = counts if counts else (tensors, n_kv)
    head = (
        b"GGUF" + struct.pack("<I", 3) + struct.pack("<QQ", n_tensors, n_kv) + kv + kv_extra + infos
    )
    head += b"\x00" * (-len(head) % 32)
    return head + struct.pack("<16f", *([0.25] * 16)) * tensors


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def onnx_model(external_location: str | None = None, domain: str = "") -> bytes:
    if external_location is None:
        tensor = _field(1, 4) + _field(2, 1) + _field(8, b"w") + _field(9, FLOAT4)
    else:
        entries = [("location", external_location), ("offset", "0"), ("length", "16")]
        tensor = _field(1, 4) + _field(2, 1) + _field(8, b"w") + _field(14, 1)
        for key, value in entries:
            tensor += _field(13, _field(1, key.encode()) + _field(2, value.encode()))
    node = _field(1, b"x") + _field(1, b"w") + _field(2, b"y") + _field(4, b"Add")
    if domain:
        node += _field(7, domain.encode())
    graph = _field(1, node) + _field(2, b"g") + _field(5, tensor)
    graph += _field(11, _field(1, b"x")) + _field(12, _field(1, b"y"))
    opset = _field(1, b"") + _field(2, 17)
    return _field(1, 8) + _field(2, b"corpus") + _field(7, graph) + _field(8, opset)


def keras_archive(layers: list[dict[str, object]]) -> bytes:
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {"name": "sequential", "layers": layers},
    }
    metadata = {"keras_version": "3.3.3", "date_saved": "2024-01-01@00:00:00"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", hdf5_stub(None))
    return buffer.getvalue()


def dense_layer(name: str = "dense") -> dict[str, object]:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "registered_name": None,
        "config": {
            "name": name,
            "units": 4,
            "activation": "relu",
            "kernel_initializer": {
                "module": "keras.initializers",
                "class_name": "GlorotUniform",
                "config": {"seed": None},
                "registered_name": None,
            },
        },
    }


def hdf5_stub(model_config: dict[str, object] | None) -> bytes:
    """HDF5 signature, padding, and (like Keras 2) the model_config attribute's JSON text."""
    body = b"\x89HDF\r\n\x1a\n" + b"\x00" * 56
    if model_config is not None:
        body += b"model_config\x00\x00\x00\x00" + json.dumps(model_config).encode() + b"\x00" * 8
    return body + b"\x00" * 64


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, blob in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            archive.writestr(info, blob)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def npy_bytes(header: str, payload: bytes) -> bytes:
    text = header.encode("latin-1")
    pad = -(10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def joblib_array(after: bytes = b"") -> bytes:
    """A joblib-style pickle: NumpyArrayWrapper, BUILD, then the array bytes inline."""
    p = Pickle(4)
    p.str("joblib.numpy_pickle").str("NumpyArrayWrapper").stack_global().memoize()
    p.empty_tuple().newobj().memoize().empty_dict().mark()
    p.str("subclass").str("numpy").str("ndarray").stack_global()
    p.str("shape").int(4).tuple1()
    p.str("order").str("C")
    p.str("dtype").str("numpy").str("dtype").stack_global().str("f4").false().raw(b"\x88").tuple3()
    p.reduce().mark().int(3).str("<").none().none().none().raw(
        b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
    )
    p.int(0).tuple().build()
    p.str("allow_mmap").false()
    p.str("numpy_array_alignment_bytes").int(16)
    p.setitems().build()
    padding = 16 - (len(p.out) + 1) % 16
    p.raw(bytes([padding]) + b"\xff" * padding + FLOAT4)
    return p.stop() + after


def with_zip64_end(archive: bytes) -> bytes:
    """The archive with a zip64 end record and locator before its end record, as torch (miniz)
    writes into every archive even when no field needs 64 bits."""
    eocd = archive.rfind(b"PK\x05\x06")
    entries, cd_size, cd_offset = struct.unpack("<HII", archive[eocd + 10 : eocd + 20])
    record = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, entries, entries,
                                         cd_size, cd_offset)  # fmt: skip
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, eocd, 1)
    return archive[:eocd] + record + locator + archive[eocd:]


def with_encrypted_flag(archive: bytes, member: str, *, central: bool, local: bool) -> bytes:
    """The archive with the encrypted bit set for `member` in its central and/or local header."""
    data = bytearray(archive)
    name = member.encode()
    headers = [(b"PK\x01\x02", 8, 28, 46)] * central + [(b"PK\x03\x04", 6, 26, 30)] * local
    for signature, flags_at, name_len_at, size in headers:
        pos = data.find(signature)
        while pos >= 0:
            (name_len,) = struct.unpack("<H", data[pos + name_len_at : pos + name_len_at + 2])
            if data[pos + size : pos + size + name_len] == name:
                data[pos + flags_at] |= 0x01
            pos = data.find(signature, pos + 4)
    return bytes(data)
