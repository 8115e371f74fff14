"""A tiny pickle assembler: builds pickles opcode by opcode, so payloads are never pickled from
live objects and never executed. Used only to make the scanner's test corpus."""

from __future__ import annotations

import struct


class Pickle:
    def __init__(self, proto: int | None = 2) -> None:
        self.out = bytearray()
        if proto is not None:
            self.out += b"\x80" + bytes([proto])

    def raw(self, data: bytes) -> Pickle:
        self.out += data
        return self

    # constants
    def none(self) -> Pickle:
        return self.raw(b"N")

    def int(self, value: int) -> Pickle:
        if 0 <= value < 256:
            return self.raw(b"K" + bytes([value]))
        return self.raw(b"J" + struct.pack("<i", value))

    def str(self, text: str) -> Pickle:
        data = text.encode()
        if len(data) < 256:
            return self.raw(b"\x8c" + bytes([len(data)]) + data)
        return self.raw(b"X" + struct.pack("<I", len(data)) + data)

    def binunicode(self, text: str) -> Pickle:
        data = text.encode()
        return self.raw(b"X" + struct.pack("<I", len(data)) + data)

    def string(self, text: str) -> Pickle:  # protocol 0 STRING, quoted
        return self.raw(b"S'" + text.encode() + b"'\n")

    def short_binstring(self, text: str) -> Pickle:
        data = text.encode()
        return self.raw(b"U" + bytes([len(data)]) + data)

    def bytes(self, data: bytes) -> Pickle:
        return self.raw(b"C" + bytes([len(data)]) + data)

    def false(self) -> Pickle:
        return self.raw(b"\x89")

    # containers and stack
    def mark(self) -> Pickle:
        return self.raw(b"(")

    def tuple(self) -> Pickle:
        return self.raw(b"t")

    def empty_tuple(self) -> Pickle:
        return self.raw(b")")

    def tuple1(self) -> Pickle:
        return self.raw(b"\x85")

    def tuple2(self) -> Pickle:
        return self.raw(b"\x86")

    def tuple3(self) -> Pickle:
        return self.raw(b"\x87")

    def empty_dict(self) -> Pickle:
        return self.raw(b"}")

    def empty_list(self) -> Pickle:
        return self.raw(b"]")

    def setitem(self) -> Pickle:
        return self.raw(b"s")

    def setitems(self) -> Pickle:
        return self.raw(b"u")

    def append(self) -> Pickle:
        return self.raw(b"a")

    def pop(self) -> Pickle:
        return self.raw(b"0")

    # memo
    def binput(self, index: int) -> Pickle:
        return self.raw(b"q" + bytes([index]))

    def binget(self, index: int) -> Pickle:
        return self.raw(b"h" + bytes([index]))

    def memoize(self) -> Pickle:
        return self.raw(b"\x94")

    # imports and calls
    def global_(self, module: str, name: str) -> Pickle:
        return self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def stack_global(self) -> Pickle:
        return self.raw(b"\x93")

    def inst(self, module: str, name: str) -> Pickle:
        return self.raw(b"i" + module.encode() + b"\n" + name.encode() + b"\n")

    def obj(self) -> Pickle:
        return self.raw(b"o")

    def reduce(self) -> Pickle:
        return self.raw(b"R")

    def newobj(self) -> Pickle:
        return self.raw(b"\x81")

    def newobj_ex(self) -> Pickle:
        return self.raw(b"\x92")

    def build(self) -> Pickle:
        return self.raw(b"b")

    def binpersid(self) -> Pickle:
        return self.raw(b"Q")

    def ext1(self, code: int) -> Pickle:
        return self.raw(b"\x82" + bytes([code]))

    def stop(self) -> bytes:
        self.out += b"."
        return bytes(self.out)

    # common shapes
    def call(self, module: str, name: str, *args: str) -> Pickle:
        """module.name(*args) with string arguments via GLOBAL + TUPLE + REDUCE."""
        self.global_(module, name).mark()
        for arg in args:
            self.str(arg)
        return self.tuple().reduce()


def call_pickle(module: str, name: str, *args: str, proto: int | None = 2) -> bytes:
    return Pickle(proto).call(module, name, *args).stop()
