"""Edit real torch archives in place (same lengths, so every offset and zip64 record stays)."""

from __future__ import annotations

import io
import struct
import zipfile


def member_span(archive: bytes, name_suffix: str) -> tuple[int, int, int]:
    """(central entry offset, local header offset, data offset) of the member ending so."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(name_suffix))
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", archive[local + 26 : local + 30])
    pos = archive.find(b"PK\x01\x02")
    while archive[pos + 46 : pos + 46 + len(info.filename)] != info.filename.encode() or (
        struct.unpack("<I", archive[pos + 42 : pos + 46])[0] != local
    ):
        pos = archive.find(b"PK\x01\x02", pos + 4)
        assert pos >= 0
    return pos, local, local + 30 + name_len + extra_len


def replace_member(archive: bytes, name_suffix: str, content: bytes) -> bytes:
    """The archive with a stored member's bytes replaced by `content` of the same length."""
    _central, _local, data = member_span(archive, name_suffix)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(name_suffix))
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size == len(content)
    return archive[:data] + content + archive[data + len(content) :]


def set_encrypted(archive: bytes, name_suffix: str, *, central: bool, local: bool) -> bytes:
    """The archive with bit 0 (encrypted) of the member's general-purpose flags set."""
    central_at, local_at, _data = member_span(archive, name_suffix)
    out = bytearray(archive)
    if central:
        out[central_at + 8] |= 0x01
    if local:
        out[local_at + 6] |= 0x01
    return bytes(out)


def same_length_call(module: str, name: str, argument: str, length: int) -> bytes:
    """A protocol 2 pickle of exactly `length` bytes that calls module.name(argument)."""
    arg = argument.encode()
    head = b"\x80\x02c" + f"{module}\n{name}\n".encode()
    head += b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R0"  # call, drop the result
    tail = b"}."  # and load an empty dict, as a state_dict would be
    pad = length - len(head) - len(tail) - 6
    assert pad >= 0, "the member is too short for the payload"
    return head + b"X" + struct.pack("<I", pad) + b"x" * pad + b"0" + tail
