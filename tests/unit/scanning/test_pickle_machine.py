"""The symbolic pickle machine follows CPython's unpickler: memo, marks, protocols, imports."""

from __future__ import annotations

import collections
import pickle
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.scanning_corpus.asm import Pickle, call_pickle

from modelward.errors import InputError
from modelward.scanning.allowlist import AllowList, configured_allow, parse_global
from modelward.scanning.pickle_vm import PickleMachine

ALLOW = AllowList.default()


def run(data: bytes, allow: AllowList = ALLOW) -> tuple[list[str], list[str]]:
    machine = PickleMachine(data, allow)
    result = machine.run_one()
    return [f.rule_id for f in result.findings], [g.dotted for g in result.globals]


@pytest.mark.parametrize("proto", range(6))
def test_real_pickles_of_plain_data_are_clean(proto: int) -> None:
    value = {"a": [1, 2.5, "x", b"y", None, True], "t": (1, (2,)), "s": {3}, "f": frozenset({4})}
    value["o"] = collections.OrderedDict(k=1)
    rules, _ = run(pickle.dumps(value, protocol=proto))
    assert rules == []


def test_memoize_numbers_by_memo_size_not_by_last_put() -> None:
    # BINPUT 5 then MEMOIZE stores at len(memo) == 1, as _pickle.c does.
    data = (
        Pickle(4).str("os").binput(5).str("system").memoize()
        .binget(5).binget(1).stack_global().stop()
    )  # fmt: skip
    rules, names = run(data)
    assert names == ["os.system"]
    assert rules == ["MW-PKL-GLOBAL"]


def test_python2_names_are_mapped_below_protocol_3() -> None:
    _, names = run(call_pickle("__builtin__", "eval", "1", proto=2))
    assert names == ["builtins.eval"]
    _, names = run(call_pickle("__builtin__", "eval", "1", proto=3))
    assert names == ["__builtin__.eval"]


def test_pop_removes_an_empty_mark_like_the_c_unpickler() -> None:
    data = Pickle(2).int(1).mark().pop().stop()
    rules, _ = run(data)
    assert rules == []


def test_stack_global_needs_strings() -> None:
    rules, _ = run(Pickle(4).int(1).int(2).stack_global().stop())
    assert rules == ["MW-PKL-OPCODE"]


def test_allow_extension_exact_pair_only() -> None:
    allow = AllowList.default(["mypkg.models:Net"])
    rules, _ = run(Pickle(2).global_("mypkg.models", "Net").empty_tuple().reduce().stop(), allow)
    assert rules == []
    rules, _ = run(Pickle(4).global_("mypkg.models", "Net.__init__").stop(), allow)
    assert rules == ["MW-PKL-GLOBAL"]


def test_unknown_opcode_and_truncation() -> None:
    assert run(b"\x80\x02\xff.")[0] == ["MW-PKL-OPCODE"]
    assert run(b"\x80\x02]")[0] == ["MW-PKL-TRUNCATED"]
    assert run(b"\x80\x09.")[0] == ["MW-PKL-OPCODE"]
    assert run(b"\x80\x02.")[0] == ["MW-PKL-STACK"]


def test_frame_longer_than_data_is_truncation() -> None:
    assert run(b"\x80\x04\x95\xff\xff\x00\x00\x00\x00\x00\x00K\x01.")[0] == ["MW-PKL-TRUNCATED"]


def test_huge_lengths_do_not_allocate() -> None:
    data = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"."
    assert run(data)[0] == ["MW-PKL-TRUNCATED"]


def test_deep_nesting_is_flat_work() -> None:
    data = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."
    assert run(data)[0] == []


def test_parse_global_forms() -> None:
    assert parse_global("a.b:C.d") == ("a.b", "C.d")
    assert parse_global("a.b.C") == ("a.b", "C")
    for bad in ("", "nodots", "a:", ":b", "a b:c", "a.:b"):
        with pytest.raises(InputError):
            parse_global(bad)


def test_configured_allow_reads_toml(tmp_path: Path) -> None:
    assert configured_allow(tmp_path) == ()
    (tmp_path / "modelward.toml").write_text('[scan]\nallow = ["mypkg:Net"]\n')
    assert configured_allow(tmp_path) == ("mypkg:Net",)
    (tmp_path / "modelward.toml").write_text("[scan]\nallow = 3\n")
    with pytest.raises(InputError):
        configured_allow(tmp_path)
    (tmp_path / "modelward.toml").write_text("not toml [")
    with pytest.raises(InputError):
        configured_allow(tmp_path)
