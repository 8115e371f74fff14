"""A symbolic pickle machine that follows CPython's unpickler opcode by opcode, without executing.

It keeps the same object stack, mark stack (with the C unpickler's fence), memo (with MEMOIZE's
`len(memo)` numbering), protocol number and line-reading rules as `_pickle.c`, so a pickle that
loads has exactly one meaning here. Imports (GLOBAL, INST, STACK_GLOBAL) are resolved the way
`Unpickler.find_class` resolves them, including Python 2 name mapping below protocol 3, and are
checked against an allow-list. Calls produce `Instance` placeholders, never objects; nothing read
is ever imported, called or evaluated. It does not know what a persistent id means: that is the
job of a `persistent_load` hook a container scanner passes in (PyTorch, for example).
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from typing import Any

from modelward.scanning.allowlist import AllowList
from modelward.scanning.gadgets import describe_global
from modelward.scanning.pickle_values import (
    Buffer,
    Global,
    Instance,
    Opaque,
    PickleDict,
    PickleResult,
    PickleSet,
    PickleStop,
    RawFinding,
    short_repr,
)

MAX_OPCODES = 50_000_000
MAX_INLINE_BYTES = 1 << 20
MAX_FINDINGS_PER_PICKLE = 50
HIGHEST_PROTOCOL = 5


PersistentLoad = Callable[[Any, int], Any]
BuildHook = Callable[["PickleMachine", Instance, int], None]


class PickleMachine:
    """Runs pickles symbolically over a buffer starting at `pos`; one instance per stream."""

    def __init__(
        self,
        data: Buffer,
        allow: AllowList,
        *,
        pos: int = 0,
        end: int | None = None,
        persistent_load: PersistentLoad | None = None,
        build_hook: BuildHook | None = None,
    ) -> None:
        self.data = data
        self.allow = allow
        self.pos = pos
        self.end = len(self.data) if end is None else end
        self.persistent_load = persistent_load
        self.build_hook = build_hook
        self.opcodes = 0

    # reading ------------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise PickleStop(
                "MW-PKL-TRUNCATED", self.pos, "the pickle ends in the middle of an opcode"
            )
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def _skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise PickleStop(
                "MW-PKL-TRUNCATED", self.pos, "the pickle ends in the middle of an opcode"
            )
        self.pos += n

    def _readline(self) -> bytes:
        start = self.pos
        limit = min(self.end, start + MAX_INLINE_BYTES)
        index = self.data.find(b"\n", start, limit)
        if index < 0:
            raise PickleStop("MW-PKL-TRUNCATED", start, "a text operand has no line end")
        self.pos = index + 1
        return bytes(self.data[start:index])

    def _u(self, fmt: str, size: int) -> int:
        value: int = struct.unpack(fmt, self._read(size))[0]
        return value

    # one pickle ---------------------------------------------------------------------------
    def run_one(self) -> PickleResult:
        """Interpret opcodes until STOP; never raises for bad input (it becomes a finding)."""
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.globals: list[Global] = []
        self.findings: list[RawFinding] = []
        self.effects = 0  # calls and attribute sets: what runs code in any loader
        start = self.pos
        try:
            value = self._loop()
            return PickleResult(start, self.pos, value, self.globals, self.findings, True)
        except PickleStop as stop:
            self._note(stop.rule_id, stop.offset, stop.message)
            return PickleResult(start, self.pos, None, self.globals, self.findings, False)
        except (RecursionError, MemoryError):
            self._note("MW-PKL-STACK", self.pos, "the pickle is nested too deeply to follow")
            return PickleResult(start, self.pos, None, self.globals, self.findings, False)

    def _note(self, rule_id: str, offset: int, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS_PER_PICKLE:
            finding = RawFinding(rule_id, offset, message)
            if finding not in self.findings:
                self.findings.append(finding)

    # stack helpers mirroring _pickle.c's Pdata with a fence at the last mark
    def _fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def _pop(self, at: int) -> Any:
        if len(self.stack) <= self._fence():
            raise PickleStop("MW-PKL-STACK", at, "an opcode pops from an empty stack")
        return self.stack.pop()

    def _top(self, at: int) -> Any:
        if len(self.stack) <= self._fence():
            raise PickleStop("MW-PKL-STACK", at, "an opcode needs a value but the stack is empty")
        return self.stack[-1]

    def _pop_mark(self, at: int) -> list[Any]:
        if not self.marks:
            raise PickleStop("MW-PKL-STACK", at, "an opcode needs a MARK but none is set")
        mark = self.marks.pop()
        items = self.stack[mark:]
        del self.stack[mark:]
        return items

    # imports ------------------------------------------------------------------------------
    def _find_class(self, module: str, name: str, at: int) -> Global:
        if self.proto < 3:
            module, name = _fix_imports(module, name)
        allowed = self.allow.allows(module, name)
        found = Global(module, name, allowed)
        self.globals.append(found)
        if not allowed:
            self._note("MW-PKL-GLOBAL", at, describe_global(module, name))
        return found

    def _call(self, func: Any, args: Any, at: int, how: str) -> Instance:
        self.effects += 1
        if not isinstance(func, Global):
            self._note(
                "MW-PKL-CALL",
                at,
                f"{how} calls {short_repr(func)}, a value built while loading rather than an "
                "allowed import; a loader would run whatever it turns out to be",
            )
        return Instance(func, args)

    # the interpreter ----------------------------------------------------------------------
    def _loop(self) -> Any:
        while True:
            at = self.pos
            if at >= self.end:
                raise PickleStop("MW-PKL-TRUNCATED", at, "the pickle ends before its STOP opcode")
            self.opcodes += 1
            if self.opcodes > MAX_OPCODES:
                raise PickleStop("MW-FMT-LIMIT", at, "the pickle has more opcodes than the limit")
            op = self.data[at]
            self.pos = at + 1
            handler = _DISPATCH.get(op)
            if handler is None:
                raise PickleStop("MW-PKL-OPCODE", at, f"byte 0x{op:02x} is not a pickle opcode")
            if op == 0x2E:  # STOP
                return self._pop(at)
            handler(self, at)

    # opcode bodies (each takes the opcode's offset)
    def op_mark(self, at: int) -> None:
        self.marks.append(len(self.stack))

    def op_pop(self, at: int) -> None:
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()
        else:
            self._pop(at)

    def op_pop_mark(self, at: int) -> None:
        self._pop_mark(at)

    def op_dup(self, at: int) -> None:
        self.stack.append(self._top(at))

    def op_float(self, at: int) -> None:
        line = self._readline()
        try:
            self.stack.append(float(line.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise PickleStop("MW-PKL-OPCODE", at, "FLOAT operand is not a number") from None

    def op_int(self, at: int) -> None:
        line = self._readline()
        if line == b"00":
            self.stack.append(False)
        elif line == b"01":
            self.stack.append(True)
        else:
            self.stack.append(_parse_int(line, at, "INT"))

    def op_long(self, at: int) -> None:
        line = self._readline()
        if line.endswith(b"L"):
            line = line[:-1]
        self.stack.append(_parse_int(line, at, "LONG"))

    def op_binint(self, at: int) -> None:
        self.stack.append(self._u("<i", 4))

    def op_binint1(self, at: int) -> None:
        self.stack.append(self._read(1)[0])

    def op_binint2(self, at: int) -> None:
        self.stack.append(self._u("<H", 2))

    def op_long1(self, at: int) -> None:
        self._push_long(self._read(1)[0], at)

    def op_long4(self, at: int) -> None:
        n = self._u("<i", 4)
        if n < 0:
            raise PickleStop("MW-PKL-OPCODE", at, "LONG4 has a negative byte count")
        self._push_long(n, at)

    def _push_long(self, n: int, at: int) -> None:
        if n > 4096:
            self._skip(n)
            self.stack.append(Opaque("big integer", n))
        else:
            self.stack.append(int.from_bytes(self._read(n), "little", signed=True))

    def op_binfloat(self, at: int) -> None:
        self.stack.append(struct.unpack(">d", self._read(8))[0])

    def op_none(self, at: int) -> None:
        self.stack.append(None)

    def op_newtrue(self, at: int) -> None:
        self.stack.append(True)

    def op_newfalse(self, at: int) -> None:
        self.stack.append(False)

    def op_string(self, at: int) -> None:
        line = self._readline()
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise PickleStop("MW-PKL-OPCODE", at, "STRING operand is not quoted")
        try:
            raw = codecs.escape_decode(line[1:-1])[0]
        except ValueError:
            raise PickleStop("MW-PKL-OPCODE", at, "STRING operand has a bad escape") from None
        self.stack.append(_as_text(raw))

    def op_binstring(self, at: int) -> None:
        n = self._u("<i", 4)
        if n < 0:
            raise PickleStop("MW-PKL-OPCODE", at, "BINSTRING has a negative byte count")
        self.stack.append(self._blob(n, text=True))

    def op_short_binstring(self, at: int) -> None:
        self.stack.append(self._blob(self._read(1)[0], text=True))

    def op_unicode(self, at: int) -> None:
        line = self._readline()
        try:
            self.stack.append(line.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise PickleStop("MW-PKL-OPCODE", at, "UNICODE operand does not decode") from None

    def op_binunicode(self, at: int) -> None:
        self._push_unicode(self._u("<I", 4), at)

    def op_short_binunicode(self, at: int) -> None:
        self._push_unicode(self._read(1)[0], at)

    def op_binunicode8(self, at: int) -> None:
        self._push_unicode(self._u("<Q", 8), at)

    def _push_unicode(self, n: int, at: int) -> None:
        if n > MAX_INLINE_BYTES:
            self._skip(n)
            self.stack.append(Opaque("long string", n))
            return
        try:
            self.stack.append(bytes(self._read(n)).decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise PickleStop("MW-PKL-OPCODE", at, "a unicode operand is not UTF-8") from None

    def _blob(self, n: int, text: bool = False) -> Any:
        if n > MAX_INLINE_BYTES:
            self._skip(n)
            return Opaque("long bytes", n)
        raw = bytes(self._read(n))
        return _as_text(raw) if text else raw

    def op_binbytes(self, at: int) -> None:
        self.stack.append(self._blob(self._u("<I", 4)))

    def op_short_binbytes(self, at: int) -> None:
        self.stack.append(self._blob(self._read(1)[0]))

    def op_binbytes8(self, at: int) -> None:
        self.stack.append(self._blob(self._u("<Q", 8)))

    def op_bytearray8(self, at: int) -> None:
        self.stack.append(self._blob(self._u("<Q", 8)))

    def op_next_buffer(self, at: int) -> None:
        raise PickleStop(
            "MW-PKL-OPCODE", at, "NEXT_BUFFER needs out-of-band buffers that a file cannot carry"
        )

    def op_readonly_buffer(self, at: int) -> None:
        self._top(at)

    def op_empty_tuple(self, at: int) -> None:
        self.stack.append(())

    def op_tuple(self, at: int) -> None:
        self.stack.append(tuple(self._pop_mark(at)))

    def op_tuple1(self, at: int) -> None:
        self.stack.append((self._pop(at),))

    def op_tuple2(self, at: int) -> None:
        b = self._pop(at)
        a = self._pop(at)
        self.stack.append((a, b))

    def op_tuple3(self, at: int) -> None:
        c = self._pop(at)
        b = self._pop(at)
        a = self._pop(at)
        self.stack.append((a, b, c))

    def op_empty_list(self, at: int) -> None:
        self.stack.append([])

    def op_list(self, at: int) -> None:
        self.stack.append(self._pop_mark(at))

    def op_empty_dict(self, at: int) -> None:
        self.stack.append(PickleDict())

    def op_dict(self, at: int) -> None:
        items = self._pop_mark(at)
        if len(items) % 2:
            raise PickleStop("MW-PKL-STACK", at, "DICT has an odd number of items")
        self.stack.append(PickleDict(list(zip(items[::2], items[1::2], strict=True))))

    def op_empty_set(self, at: int) -> None:
        self.stack.append(PickleSet())

    def op_frozenset(self, at: int) -> None:
        self.stack.append(PickleSet(self._pop_mark(at), frozen=True))

    def op_additems(self, at: int) -> None:
        items = self._pop_mark(at)
        target = self._top(at)
        if isinstance(target, PickleSet) and not target.frozen:
            target.items.extend(items)
        else:
            self._method_on(target, "add", at)

    def op_append(self, at: int) -> None:
        value = self._pop(at)
        self._extend(self._top(at), [value], at)

    def op_appends(self, at: int) -> None:
        items = self._pop_mark(at)
        self._extend(self._top(at), items, at)

    def _extend(self, target: Any, items: list[Any], at: int) -> None:
        if isinstance(target, list):
            if len(target) < 1_000_000:
                target.extend(items)
        else:
            self._method_on(target, "append", at)

    def op_setitem(self, at: int) -> None:
        value = self._pop(at)
        key = self._pop(at)
        self._set_items(self._top(at), [(key, value)], at)

    def op_setitems(self, at: int) -> None:
        items = self._pop_mark(at)
        if len(items) % 2:
            raise PickleStop("MW-PKL-STACK", at, "SETITEMS has an odd number of items")
        self._set_items(self._top(at), list(zip(items[::2], items[1::2], strict=True)), at)

    def _set_items(self, target: Any, pairs: list[tuple[Any, Any]], at: int) -> None:
        if isinstance(target, PickleDict):
            for key, _ in pairs:
                if isinstance(key, list | PickleDict) or (
                    isinstance(key, PickleSet) and not key.frozen
                ):
                    raise PickleStop("MW-PKL-STACK", at, "a dict key is unhashable")
            if len(target.items) < 1_000_000:
                target.items.extend(pairs)
        else:
            self._method_on(target, "__setitem__", at)

    def _method_on(self, target: Any, method: str, at: int) -> None:
        """Appending to a non-list calls a method of whatever the target is."""
        if isinstance(target, Instance) and isinstance(target.func, Global):
            self.effects += 1
            return  # a method of an allowed (or already reported) class
        if isinstance(target, Global):
            self.effects += 1
            self._note(
                "MW-PKL-CALL",
                at,
                f"the pickle calls {method} on the imported object {target.dotted}",
            )
            return
        raise PickleStop("MW-PKL-STACK", at, f"{method} on a {type(target).__name__} fails")

    # memo
    def op_get(self, at: int) -> None:
        self._memo_get(_parse_int(self._readline(), at, "GET"), at)

    def op_binget(self, at: int) -> None:
        self._memo_get(self._read(1)[0], at)

    def op_long_binget(self, at: int) -> None:
        self._memo_get(self._u("<I", 4), at)

    def _memo_get(self, index: int, at: int) -> None:
        if index not in self.memo:
            raise PickleStop("MW-PKL-STACK", at, f"memo slot {index} is read before it is set")
        self.stack.append(self.memo[index])

    def op_put(self, at: int) -> None:
        index = _parse_int(self._readline(), at, "PUT")
        if index < 0:
            raise PickleStop("MW-PKL-STACK", at, "PUT uses a negative memo index")
        self.memo[index] = self._top(at)

    def op_binput(self, at: int) -> None:
        self.memo[self._read(1)[0]] = self._top(at)

    def op_long_binput(self, at: int) -> None:
        index = self._u("<i", 4)
        if index < 0:
            raise PickleStop("MW-PKL-STACK", at, "LONG_BINPUT uses a negative memo index")
        self.memo[index] = self._top(at)

    def op_memoize(self, at: int) -> None:
        self.memo[len(self.memo)] = self._top(at)

    # imports and calls
    def op_global(self, at: int) -> None:
        module = _utf8_line(self._readline(), at)
        name = _utf8_line(self._readline(), at)
        self.stack.append(self._find_class(module, name, at))

    def op_stack_global(self, at: int) -> None:
        name = self._pop(at)
        module = self._pop(at)
        if isinstance(module, str) and isinstance(name, str):
            self.stack.append(self._find_class(module, name, at))
            return
        if isinstance(module, Instance | Global | Opaque) or isinstance(
            name, Instance | Global | Opaque
        ):
            self._note(
                "MW-PKL-GLOBAL-UNRESOLVED",
                at,
                f"STACK_GLOBAL imports a name computed while loading ({short_repr(module)}, "
                f"{short_repr(name)}); it cannot be checked, so it is refused",
            )
            self.stack.append(Global("?", "?", False))
            return
        raise PickleStop("MW-PKL-OPCODE", at, "STACK_GLOBAL operands are not strings")

    def op_inst(self, at: int) -> None:
        module = _utf8_line(self._readline(), at)
        name = _utf8_line(self._readline(), at)
        # pickle.py imports the class before it looks for the MARK; _pickle.c the other way round
        cls = self._find_class(module, name, at)
        args = tuple(self._pop_mark(at))
        self.effects += 1
        self.stack.append(Instance(cls, args))

    def op_obj(self, at: int) -> None:
        items = self._pop_mark(at)
        if not items:
            raise PickleStop("MW-PKL-STACK", at, "OBJ has no class")
        self.stack.append(self._call(items[0], tuple(items[1:]), at, "OBJ"))

    def op_reduce(self, at: int) -> None:
        args = self._pop(at)
        func = self._pop(at)
        if not isinstance(args, tuple):
            raise PickleStop("MW-PKL-OPCODE", at, "REDUCE arguments are not a tuple")
        self.stack.append(self._call(func, args, at, "REDUCE"))

    def op_newobj(self, at: int) -> None:
        args = self._pop(at)
        cls = self._pop(at)
        if not isinstance(args, tuple):
            raise PickleStop("MW-PKL-OPCODE", at, "NEWOBJ arguments are not a tuple")
        self.stack.append(self._call(cls, args, at, "NEWOBJ"))

    def op_newobj_ex(self, at: int) -> None:
        kwargs = self._pop(at)
        args = self._pop(at)
        cls = self._pop(at)
        if not isinstance(args, tuple) or not isinstance(kwargs, PickleDict):
            raise PickleStop("MW-PKL-OPCODE", at, "NEWOBJ_EX arguments have the wrong types")
        self.stack.append(self._call(cls, args, at, "NEWOBJ_EX"))

    def op_build(self, at: int) -> None:
        state = self._pop(at)
        target = self._top(at)
        self.effects += 1
        if isinstance(target, Global):
            self._note(
                "MW-PKL-BUILD-GLOBAL",
                at,
                f"BUILD sets attributes on the imported object {target.dotted}; "
                "this can rewire code that runs later",
            )
            return
        if isinstance(target, Instance):
            target.state = state
            if self.build_hook is not None:
                self.build_hook(self, target, at)
            return
        if state is not None:
            raise PickleStop("MW-PKL-STACK", at, "BUILD on a value that has no attributes")

    def op_ext(self, at: int, size: int) -> None:
        code = self._u({1: "<B", 2: "<H", 4: "<i"}[size], size)
        if code <= 0:
            raise PickleStop("MW-PKL-OPCODE", at, "EXT code must be positive")
        self._note(
            "MW-PKL-EXT",
            at,
            f"the pickle imports extension code {code} from the copyreg registry, whose meaning "
            "depends on the loading process; it cannot be checked",
        )
        self.stack.append(Global("copyreg", f"<ext {code}>", False))

    def op_persid(self, at: int) -> None:
        line = self._readline()
        try:
            pid: Any = line.decode("ascii")
        except UnicodeDecodeError:
            raise PickleStop("MW-PKL-OPCODE", at, "PERSID operand is not ASCII") from None
        self.stack.append(self._persistent(pid, at))

    def op_binpersid(self, at: int) -> None:
        self.stack.append(self._persistent(self._pop(at), at))

    def _persistent(self, pid: Any, at: int) -> Any:
        if self.persistent_load is None:
            self._note(
                "MW-PKL-PERSID",
                at,
                "the pickle refers to a persistent id; the standard loader refuses it and a "
                "custom loader decides alone what it means",
            )
            return Opaque("persistent id")
        return self.persistent_load(pid, at)

    def op_proto(self, at: int) -> None:
        proto = self._read(1)[0]
        if proto > HIGHEST_PROTOCOL:
            raise PickleStop("MW-PKL-OPCODE", at, f"unsupported pickle protocol {proto}")
        self.proto = proto

    def op_frame(self, at: int) -> None:
        size = self._u("<Q", 8)
        if self.pos + size > self.end:
            raise PickleStop("MW-PKL-TRUNCATED", at, "a FRAME is longer than the data left")


def _parse_int(line: bytes, at: int, what: str) -> int:
    try:
        return int(line.decode("ascii"), 0)
    except (ValueError, UnicodeDecodeError):
        try:
            return int(line.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise PickleStop("MW-PKL-OPCODE", at, f"{what} operand is not an integer") from None


def _utf8_line(line: bytes, at: int) -> str:
    if not line:
        raise PickleStop("MW-PKL-OPCODE", at, "an import names an empty module or object")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise PickleStop("MW-PKL-OPCODE", at, "an import name is not UTF-8") from None


def _as_text(raw: bytes) -> str | bytes:
    # Unpicklers decode 8-bit strings with their `encoding` (ASCII by default, UTF-8 or latin-1
    # in torch and numpy); for import names all of these agree on ASCII text.
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _fix_imports(module: str, name: str) -> tuple[str, str]:
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        mapped: tuple[str, str] = _compat_pickle.NAME_MAPPING[(module, name)]
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


# opcode byte (hex) : handler, as in pickle.py and _pickle.c; 2e (STOP) is handled inline
_OPCODE_TABLE = """
28:mark 2e:mark 30:pop 31:pop_mark 32:dup 46:float 49:int 4a:binint 4b:binint1 4c:long
4d:binint2 4e:none 50:persid 51:binpersid 52:reduce 53:string 54:binstring
55:short_binstring 56:unicode 58:binunicode 61:append 62:build 63:global 64:dict
7d:empty_dict 65:appends 67:get 68:binget 69:inst 6a:long_binget 6c:list 5d:empty_list
6f:obj 70:put 71:binput 72:long_binput 73:setitem 74:tuple 29:empty_tuple 75:setitems
47:binfloat 80:proto 81:newobj 82:ext1 83:ext2 84:ext4 85:tuple1 86:tuple2 87:tuple3
88:newtrue 89:newfalse 8a:long1 8b:long4 42:binbytes 43:short_binbytes
8c:short_binunicode 8d:binunicode8 8e:binbytes8 8f:empty_set 90:additems 91:frozenset
92:newobj_ex 93:stack_global 94:memoize 95:frame 96:bytearray8 97:next_buffer
98:readonly_buffer
"""


def _build_dispatch() -> dict[int, Callable[[PickleMachine, int], None]]:
    dispatch: dict[int, Callable[[PickleMachine, int], None]] = {}
    for token in _OPCODE_TABLE.split():
        code, name = token.split(":")
        if name.startswith("ext"):
            size = int(name[3:])
            dispatch[int(code, 16)] = lambda vm, at, size=size: vm.op_ext(at, size)  # type: ignore[misc]
        else:
            dispatch[int(code, 16)] = getattr(PickleMachine, f"op_{name}")
    return dispatch


_DISPATCH = _build_dispatch()
PICKLE_OPCODES = frozenset(_DISPATCH)
