"""A minimal protobuf wire-format reader for ONNX: field walking with every length bounded.

It decodes tags, varints and length-delimited payloads and nothing else (no schema, no
groups). Every length is checked against the enclosing message before use. Malformed input
raises `ProtobufError` (a ValueError, internal to the scanners).
"""

from __future__ import annotations

from collections.abc import Iterator

from modelward.scanning.pickle_values import Buffer


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: Buffer, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ProtobufError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def walk_fields(
    data: Buffer, start: int, end: int, *, limit: int = 10_000_000
) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, value start, value end) for each field in [start, end)."""
    pos = start
    count = 0
    while pos < end:
        count += 1
        if count > limit:
            raise ProtobufError("too many fields")
        key, pos = read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value_start = pos
            _, pos = read_varint(data, pos, end)
        elif wire == 1:
            value_start, pos = pos, pos + 8
        elif wire == 5:
            value_start, pos = pos, pos + 4
        elif wire == 2:
            length, value_start = read_varint(data, pos, end)
            pos = value_start + length
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if pos > end:
            raise ProtobufError("field runs past the end of its message")
        yield number, wire, value_start, pos


def varint_value(data: Buffer, start: int, end: int) -> int:
    return read_varint(data, start, end)[0]


def text_value(data: Buffer, start: int, end: int) -> str:
    try:
        return bytes(data[start:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtobufError("string field is not UTF-8") from exc
