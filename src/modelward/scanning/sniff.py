"""Content sniffing: name a file's format from its bytes, never from its name.

The checks mirror what each loader looks at first: `torch.load` takes a file for a zip
checkpoint only if it starts with a local file header, and for a legacy checkpoint otherwise;
NumPy looks for its magic string; safetensors trusts an 8-byte header length followed by JSON.
Sniffing reads at most the first few kilobytes (the ONNX check walks top-level protobuf fields,
which are few), except to tell prose from a headerless (protocol 0 or 1) pickle, when the whole
file is checked to be UTF-8. It does not validate; the format's scanner does that.
"""

from __future__ import annotations

import codecs
import zlib

from modelward.scanning.allowlist import AllowList
from modelward.scanning.gadgets import is_known_gadget
from modelward.scanning.pickle_values import Buffer
from modelward.scanning.pickle_vm import PICKLE_OPCODES, PickleMachine
from modelward.scanning.protobuf import walk_fields

# `torch.save` legacy format starts with a pickled magic number (a LONG1 of 10 bytes).
_TORCH_LEGACY_PREFIX = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_BZ2_BLOCK = b"1AY&SY"  # the magic of a bzip2 block (pi) and of the end of stream (sqrt pi)
_BZ2_END = b"\x17rE8P\x90"
_ONNX_MODEL_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25})


def sniff(data: Buffer) -> str:
    """Return a format name: one of FORMATS."""
    size = len(data)
    if size == 0:
        return "empty"
    head = bytes(data[:512])
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if size >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head.startswith(_TORCH_LEGACY_PREFIX):
        return "torch-legacy"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if size >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") >= 2:
        return "safetensors"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"GGUF"):
        return "gguf"
    if any(bytes(data[o : o + 8]) == _HDF5_MAGIC for o in (0, 512, 1024, 2048) if o < size):
        return "hdf5"
    if size > 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (_BZ2_BLOCK, _BZ2_END):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if _looks_like_native(head):
        return "native"
    if _looks_like_zlib(head):
        return "zlib"
    if _looks_like_onnx(data):
        return "onnx"
    if head[0] in PICKLE_OPCODES and _pickle_probe(head, data):
        return "pickle"
    text_kind = _text_kind(head, data)
    if text_kind is not None:
        return text_kind
    return "unknown"


_MACHO_MAGICS = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")


def _looks_like_native(head: bytes) -> bool:
    """An ELF, Mach-O or PE (Windows) executable or shared library: compiled code a loader may
    map and run (AOTInductor packages, custom-op libraries)."""
    if head.startswith(b"\x7fELF") or head[:4] in _MACHO_MAGICS:
        return True
    if head.startswith(b"MZ") and len(head) >= 0x40:
        offset = int.from_bytes(head[0x3C:0x40], "little")
        return offset + 4 <= len(head) and head[offset : offset + 4] == b"PE\x00\x00"
    return False


def _pickle_probe(head: bytes, data: Buffer) -> bool:
    """Whether a stream without a PROTO opcode is a pickle that matters to a loader.

    Protocols 0 and 1 have no header, and many letters are opcodes, so prose also starts like a
    pickle: "cosine_schedule:" is GLOBAL of a module named "osine_schedule:". What a loader does
    decides it. `pickle.load` runs every call it meets before it fails, so a stream that calls or
    sets attributes is a pickle even if its tail is garbage; so is one that loads to STOP and
    imports something, and one that imports a known gadget such as `os.system` at all. A stream
    that only pushes values, or imports some other name and then fails before anything is
    called, does nothing in any loader: it is a pickle only if it is not text (a UTF-8 file that
    parses no further than that is text).
    """
    machine = PickleMachine(data, AllowList(frozenset()))
    result = machine.run_one()
    if machine.effects or (result.complete and result.globals):
        return True
    if any(is_known_gadget(g.module, g.name) for g in result.globals):
        return True
    if not (result.complete or result.globals):
        return False
    if result.complete and result.end == len(data):
        return True  # a whole protocol 0/1 pickle of plain data, such as a dict of numbers
    return _text_kind(head, data) is None


def _looks_like_zlib(head: bytes) -> bool:
    """A zlib header (RFC 1950) without a preset dictionary whose first bytes inflate.

    Its two bytes are also text ("x = 1" is a valid header), so the stream must also start to
    inflate, as it must for joblib or `zlib.decompress` to read it.
    """
    if len(head) < 3 or head[0] != 0x78 or (head[0] * 256 + head[1]) % 31 or head[1] & 0x20:
        return False
    try:
        zlib.decompressobj().decompress(head, 64)
    except zlib.error:
        return False
    return True


def _looks_like_onnx(data: Buffer) -> bool:
    if data[0] not in (0x08, 0x12, 0x1A, 0x3A, 0x42):
        return False
    seen: set[int] = set()
    try:
        for number, wire, _start, _end in walk_fields(data, 0, len(data), limit=10_000):
            if number not in _ONNX_MODEL_FIELDS:
                return False
            if number in (1, 5) and wire != 0:
                return False
            if number in (2, 3, 4, 6, 7, 8, 14, 20, 25) and wire != 2:
                return False
            seen.add(number)
    except ValueError:
        return False
    return 7 in seen


def _text_kind(head: bytes, data: Buffer) -> str | None:
    if b"\x00" in head:
        return None
    size = len(data)
    step = 1 << 20
    # A text file must be UTF-8 all the way through; check it in bounded chunks.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for offset in range(0, size, step):
            chunk = bytes(data[offset : offset + step])
            if b"\x00" in chunk:
                return None
            decoder.decode(chunk, final=offset + step >= size)
    except UnicodeDecodeError:
        return None
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        return "json"
    return "text"
