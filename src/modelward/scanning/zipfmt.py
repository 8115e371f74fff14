"""A strict zip reader: the central directory as loaders trust it, checked against local headers.

PyTorch (miniz), NumPy and Keras (Python's zipfile) all find members through the end-of-central-
directory record and the central directory, then read each member at the offset it names, sized
by the local header. This reader does the same and reports every place where two readers could
disagree: a local header whose name, method or sizes differ from the central entry, data hidden
between members, members that overlap, prepended bytes. It also enforces path, link, count,
size and ratio limits. Member bytes are read only on request, with decompression bounded by the
declared size. It never writes to disk.

Both readers take the zip64 end record whenever its locator is present (torch writes one into
every archive), and the encryption flag from the central directory only; this reader does too.
"""

from __future__ import annotations

import stat
import struct
import zlib
from dataclasses import dataclass

from modelward.scanning.context import ScanContext, at
from modelward.scanning.pickle_values import Buffer

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"


class ZipStructureError(Exception):
    """The archive cannot be read at all; the message says why."""


@dataclass
class ZipMember:
    name: str
    flags: int
    method: int
    compressed_size: int
    size: int
    local_offset: int
    data_offset: int
    mode: int
    is_unix: bool

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


def read_zip(data: Buffer, ctx: ScanContext, where: str) -> list[ZipMember] | None:
    """Parse and check the archive; None (with a finding) when it cannot be read at all."""
    try:
        members, cd_offset = _read_central(data, ctx, where)
    except (ZipStructureError, struct.error) as exc:
        ctx.add("MW-ZIP-STRUCTURE", where, f"the zip archive cannot be read: {exc}")
        return None
    _check_members(data, members, ctx, where, cd_offset)
    return members


def _read_central(data: Buffer, ctx: ScanContext, where: str) -> tuple[list[ZipMember], int]:
    size = len(data)
    search_from = max(0, size - 22 - 65535)
    eocd = data.rfind(_EOCD, search_from) if hasattr(data, "rfind") else -1
    if eocd < 0 or eocd + 22 > size:
        raise ZipStructureError("no end-of-central-directory record")
    (_, disk, cd_disk, _entries_here, entries, cd_size, cd_offset, comment_len) = struct.unpack(
        "<4sHHHHIIH", bytes(data[eocd : eocd + 22])
    )
    if eocd + 22 + comment_len != size:
        ctx.add(
            "MW-ZIP-STRUCTURE",
            at(where, f"offset {eocd}"),
            "bytes follow the end-of-central-directory record",
        )
    cd_end = eocd
    saturated = 0xFFFF in (entries, disk, cd_disk) or 0xFFFFFFFF in (cd_size, cd_offset)
    zip64 = _read_zip64_end(data, eocd, ctx, where)
    if zip64 is None and saturated:
        raise ZipStructureError("zip64 sizes without a zip64 locator")
    if zip64 is not None:
        # miniz (torch) and Python's zipfile use the zip64 record whenever its locator is there,
        # whatever the 32-bit fields say; readers without zip64 support use the 32-bit fields.
        record_offset, disk64, cd_disk64, entries64, cd_size64, cd_offset64 = zip64
        narrow = (disk, cd_disk, entries, cd_size, cd_offset)
        wide = (disk64, cd_disk64, entries64, cd_size64, cd_offset64)
        if any(n != w and n not in (0xFFFF, 0xFFFFFFFF) for n, w in zip(narrow, wide, strict=True)):
            ctx.add(
                "MW-ZIP-STRUCTURE",
                at(where, f"offset {eocd}"),
                "the end record and the zip64 end record describe different central "
                "directories; readers with and without zip64 support see different members",
            )
        disk, cd_disk, entries, cd_size, cd_offset = wide
        cd_end = record_offset
    if disk != 0 or cd_disk != 0:
        raise ZipStructureError("multi-disk archives are not supported")
    if cd_offset + cd_size > cd_end:
        raise ZipStructureError("the central directory lies outside the file")
    if cd_offset + cd_size != cd_end:
        ctx.add(
            "MW-ZIP-STRUCTURE",
            where,
            "the central directory does not end where the end record says; readers that "
            "correct for prepended data and readers that do not see different members",
        )
    if entries > ctx.limits.max_members or entries > cd_size // 46 + 1:
        raise ZipStructureError(f"the archive claims {entries} members")
    members: list[ZipMember] = []
    pos = cd_offset
    for _ in range(entries):
        members.append(_read_entry(data, pos, cd_offset + cd_size))
        pos = members[-1].data_offset  # temporary: next central entry position
        members[-1].data_offset = -1
    if pos != cd_offset + cd_size:
        ctx.add("MW-ZIP-STRUCTURE", where, "the central directory has bytes no entry accounts for")
    for member in members:
        member.data_offset = _local_data_offset(data, member, ctx, where, cd_offset)
    return members, cd_offset


def _read_zip64_end(
    data: Buffer, eocd: int, ctx: ScanContext, where: str
) -> tuple[int, int, int, int, int, int] | None:
    """The zip64 end record that the locator before `eocd` points to, or None without one."""
    locator = eocd - 20
    if locator < 0 or bytes(data[locator : locator + 4]) != _EOCD64_LOCATOR:
        return None
    _, _locator_disk, record_offset, disks = struct.unpack(
        "<4sIQI", bytes(data[locator : locator + 20])
    )
    if disks > 1:
        raise ZipStructureError("multi-disk archives are not supported")
    if record_offset + 56 > locator or bytes(data[record_offset : record_offset + 4]) != _EOCD64:
        raise ZipStructureError("the zip64 locator does not point to a zip64 end record")
    (_, record_size, _made_by, _needed, disk, cd_disk, _here, entries, cd_size, cd_offset) = (
        struct.unpack("<4sQHHIIQQQQ", bytes(data[record_offset : record_offset + 56]))
    )
    if record_size < 44:
        raise ZipStructureError("the zip64 end record is too short")
    if record_offset + 56 != locator or record_size != 44:
        # Python 3.11's zipfile reads the record from just before the locator and ignores both
        # the locator's offset and any extensible data; miniz follows the offset.
        ctx.add(
            "MW-ZIP-STRUCTURE",
            at(where, f"offset {record_offset}"),
            "the zip64 end record is not directly before its locator; readers disagree on "
            "where the central directory is",
        )
    return record_offset, disk, cd_disk, entries, cd_size, cd_offset


def _read_entry(data: Buffer, pos: int, cd_end: int) -> ZipMember:
    if pos + 46 > cd_end or bytes(data[pos : pos + 4]) != _CENTRAL:
        raise ZipStructureError(f"central directory entry at offset {pos} is not valid")
    fields = struct.unpack("<4sBBHHHHHIIIHHHHHII", bytes(data[pos : pos + 46]))
    (_, _version, system, _needed, flags, method, _t, _d, _crc, csize, usize,
     name_len, extra_len, comment_len, _disk, _internal, external, local) = fields  # fmt: skip
    end = pos + 46 + name_len + extra_len + comment_len
    if end > cd_end:
        raise ZipStructureError(f"central directory entry at offset {pos} overruns")
    raw_name = bytes(data[pos + 46 : pos + 46 + name_len])
    extra = bytes(data[pos + 46 + name_len : pos + 46 + name_len + extra_len])
    usize, csize, local = _apply_zip64(extra, usize, csize, local)
    name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
    return ZipMember(
        name=name,
        flags=flags,
        method=method,
        compressed_size=csize,
        size=usize,
        local_offset=local,
        data_offset=end,
        mode=(external >> 16) & 0xFFFF,
        is_unix=system == 3,
    )


def _apply_zip64(extra: bytes, usize: int, csize: int, local: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            values = [struct.unpack("<Q", body[i : i + 8])[0] for i in range(0, len(body) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if local == 0xFFFFFFFF and values:
                local = values.pop(0)
        pos += 4 + length
    return usize, csize, local


def _local_data_offset(
    data: Buffer, member: ZipMember, ctx: ScanContext, where: str, cd_offset: int
) -> int:
    pos = member.local_offset
    location = at(where, member.name)
    if pos + 30 > cd_offset or bytes(data[pos : pos + 4]) != _LOCAL:
        raise ZipStructureError(f"member {member.name!r} has no local header at offset {pos}")
    fields: tuple[int, ...] = struct.unpack("<4xHHHHHIIIHH", bytes(data[pos : pos + 30]))
    (_v, flags, method, _t, _d, _crc, csize, usize, name_len, extra_len) = fields
    raw_name = bytes(data[pos + 30 : pos + 30 + name_len])
    local_name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
    if local_name != member.name:
        ctx.add(
            "MW-ZIP-HEADER-MISMATCH",
            location,
            f"the local header names this member {local_name!r}; a reader that walks local "
            "headers sees a different file than one that uses the directory",
        )
    if method != member.method:
        ctx.add(
            "MW-ZIP-HEADER-MISMATCH",
            location,
            "local and central headers give different compression methods",
        )
    if (
        not flags & 0x08
        and csize != 0xFFFFFFFF
        and (csize != member.compressed_size or usize != member.size)
    ):
        ctx.add(
            "MW-ZIP-HEADER-MISMATCH",
            location,
            "local and central headers give different sizes for this member",
        )
    start = pos + 30 + name_len + extra_len
    if start + member.compressed_size > cd_offset:
        raise ZipStructureError(f"member {member.name!r} runs into the central directory")
    return start


def _check_members(
    data: Buffer, members: list[ZipMember], ctx: ScanContext, where: str, cd_offset: int
) -> None:
    seen: set[str] = set()
    total = 0
    for member in members:
        location = at(where, member.name)
        problem = unsafe_member_path(member.name)
        if problem:
            ctx.add("MW-ARC-PATH", location, f"the member path {problem}")
        if member.name in seen:
            ctx.add(
                "MW-ARC-DUPLICATE",
                location,
                "two members share this name; readers disagree on which one they load",
            )
        seen.add(member.name)
        if member.is_unix and stat.S_ISLNK(member.mode):
            ctx.add("MW-ARC-LINK", location, "the member is a symbolic link")
        if member.flags & 0x01:
            ctx.add(
                "MW-ARC-ENCRYPTED",
                location,
                "the central directory marks the member as encrypted, so torch.load and "
                "Python's zipfile refuse to read it; its bytes were scanned as stored, for "
                "readers that ignore the flag",
            )
        total += member.size
        if member.size > ctx.limits.max_member_bytes or (
            member.size > (1 << 20)
            and member.size > ctx.limits.max_ratio * max(member.compressed_size, 1)
        ):
            ctx.add(
                "MW-ARC-BOMB",
                location,
                f"the member expands from {member.compressed_size} to {member.size} bytes",
            )
    if total > ctx.limits.max_total_expanded:
        ctx.add("MW-ARC-BOMB", where, f"the archive expands to {total} bytes")
    spans = sorted((m.local_offset, m.data_offset + m.compressed_size, m.name) for m in members)
    spans.append((cd_offset, cd_offset, "central directory"))
    cursor = 0
    for start, end, name in spans:
        if start < cursor:
            ctx.add(
                "MW-ARC-BOMB",
                at(where, name),
                "the member overlaps another member's data (an overlapping-entry bomb)",
            )
        elif start > cursor and data.find(_LOCAL, cursor, start) >= 0:
            ctx.add(
                "MW-ZIP-HIDDEN",
                at(where, f"offset {cursor}"),
                "a local file header sits between members but the directory does not list it",
            )
        cursor = max(cursor, end)


def unsafe_member_path(name: str) -> str | None:
    """Why an archive member name could escape an extraction folder, or None."""
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash, which Windows treats as a separator"
    if name.startswith("/"):
        return "is absolute"
    if len(name) >= 2 and name[1] == ":":
        return "starts with a drive letter"
    if any(part == ".." for part in name.split("/")):
        return "contains '..'"
    return None


def read_member(data: Buffer, member: ZipMember, ctx: ScanContext, where: str) -> bytes | None:
    """The member's bytes, decompressed with a bound; None (with a finding) if impossible."""
    location = at(where, member.name)
    # An encrypted member is read as stored all the same: torch (miniz) honours the flag only in
    # the central directory and ignores it in the local header, other readers differ, and bytes
    # that really are encrypted fail to parse and are reported.
    if member.size > ctx.limits.max_in_memory:
        ctx.add("MW-FMT-LIMIT", location, "the member is too large to check in memory")
        return None
    if member.size > (1 << 20) and member.size > ctx.limits.max_ratio * max(
        member.compressed_size, 1
    ):
        return None  # already reported as a bomb by the directory check
    raw = data[member.data_offset : member.data_offset + member.compressed_size]
    if member.method == 0:
        if member.compressed_size != member.size:
            ctx.add("MW-ZIP-STRUCTURE", location, "a stored member's two sizes differ")
        return bytes(raw)
    if member.method != 8:
        ctx.add(
            "MW-ZIP-STRUCTURE",
            location,
            f"compression method {member.method} is not one model loaders use",
        )
        return None
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(bytes(raw), member.size + 1)
    except zlib.error as exc:
        ctx.add("MW-ZIP-STRUCTURE", location, f"the member does not inflate: {exc}")
        return None
    if len(out) != member.size:
        ctx.add(
            "MW-ARC-BOMB" if len(out) > member.size else "MW-ZIP-STRUCTURE",
            location,
            f"the member inflates to a size other than the {member.size} bytes declared",
        )
        return None
    return out
