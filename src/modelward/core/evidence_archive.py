"""The container of an evidence bundle: a deterministic POSIX ustar archive.

Members are regular files only, written in the order given, each with mode 0644, uid and gid 0,
no user or group names, mtime 0, and the archive ends with the two zero blocks padded to a
10240-byte record (what `tar` writes). `write_archive` is a pure function of the members, and
`read_archive` says whether writing its members again gives the very same bytes, so a changed
byte in a header, the padding or the trailer is caught even where `tar` would not notice (a
changed byte inside a member is caught by the digests the bundle's index lists). Sizes are
capped before anything is read. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from modelward.errors import InputError

MAX_ARCHIVE = 256 * 1024 * 1024
MAX_MEMBER = 64 * 1024 * 1024
MAX_MEMBERS = 100_000
MAX_NAME = 200


class ArchiveFormatError(InputError):
    """Not an evidence bundle: not a canonical ustar archive of plain files within the caps."""


def check_member_name(name: str) -> str:
    path = PurePosixPath(name)
    if (
        not name
        or len(name) > MAX_NAME
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in name.split("/"))
        or str(path) != name
        or any(ord(c) < 32 or c == "\\" for c in name)
    ):
        raise ArchiveFormatError(f"member name {name!r} is not a plain relative path")
    return name


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_archive(members: Sequence[tuple[str, bytes]]) -> bytes:
    """The canonical archive of `members` (name, content), in that order."""
    if len(members) > MAX_MEMBERS:
        raise ArchiveFormatError(f"more than {MAX_MEMBERS} members")
    seen: set[str] = set()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            check_member_name(name)
            if name in seen:
                raise ArchiveFormatError(f"member {name!r} appears twice")
            if len(content) > MAX_MEMBER:
                raise ArchiveFormatError(f"member {name!r} is larger than {MAX_MEMBER} bytes")
            seen.add(name)
            try:
                tar.addfile(_info(name, len(content)), io.BytesIO(content))
            except ValueError as exc:
                raise ArchiveFormatError(f"member name {name!r} does not fit ustar") from exc
    return out.getvalue()


@dataclass(frozen=True)
class ReadArchive:
    members: list[tuple[str, bytes]]
    canonical: bool  # writing the members again gives the very same bytes


def read_archive(data: bytes) -> ReadArchive:
    """The members of an archive, in order, and whether it is in canonical form;
    ArchiveFormatError for what is not a tar of plain files within the caps."""
    if len(data) > MAX_ARCHIVE:
        raise ArchiveFormatError(f"larger than {MAX_ARCHIVE} bytes")
    if len(data) < 1024 or len(data) % 512:
        raise ArchiveFormatError("not a tar archive (truncated or not a multiple of 512 bytes)")
    members: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if len(members) >= MAX_MEMBERS:
                    raise ArchiveFormatError(f"more than {MAX_MEMBERS} members")
                if not info.isreg():
                    raise ArchiveFormatError(f"member {info.name!r} is not a regular file")
                if info.size > MAX_MEMBER:
                    raise ArchiveFormatError(f"member {info.name!r} is too large")
                handle = tar.extractfile(info)
                if handle is None:
                    raise ArchiveFormatError(f"member {info.name!r} cannot be read")
                content = handle.read()
                if len(content) != info.size:
                    raise ArchiveFormatError(f"member {info.name!r} is truncated")
                members.append((check_member_name(info.name), content))
    except tarfile.TarError as exc:
        raise ArchiveFormatError(f"not a tar archive: {exc}") from exc
    if not members:
        raise ArchiveFormatError("the archive has no members")
    return ReadArchive(members, write_archive(members) == data)
