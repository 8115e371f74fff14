"""Fuzzing the parsers: arbitrary and mutated bytes never crash, hang or blow up memory.

Every scanner is reached through `scan_buffer`, which must return a format name and report
problems as findings; an internal-error finding (`MW-FMT-UNREADABLE` from a scanner bug) fails
the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.scanning_corpus import build_corpus

from modelward.scanning.allowlist import AllowList
from modelward.scanning.context import Limits, ScanContext
from modelward.scanning.engine import scan_buffer
from modelward.scanning.pickle_vm import PickleMachine

ALLOW = AllowList.default()
SEEDS = [s.data for s in build_corpus() if 0 < len(s.data) < 200_000]
LIMITS = Limits(max_in_memory=8 << 20, max_total_expanded=64 << 20)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scan(data: bytes) -> ScanContext:
    ctx = ScanContext(allow=ALLOW, file="fuzz", numeric=True, limits=LIMITS)
    ctx.scan_nested = scan_buffer
    fmt = scan_buffer(ctx, data, "")
    assert isinstance(fmt, str)
    internal = [f for f in ctx.findings if f.rule_id == "MW-FMT-UNREADABLE"]
    assert not internal, internal
    return ctx


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _scan(data)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
    st.integers(min_value=0),
)
def test_mutated_corpus_files(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    _scan(bytes(data[: max(1, len(data) - cut % 64)]))


@FUZZ
@given(st.binary(max_size=2048))
def test_pickle_machine_on_arbitrary_bytes(data: bytes) -> None:
    machine = PickleMachine(b"\x80\x04" + data, ALLOW)
    result = machine.run_one()
    assert result.end <= len(data) + 2


@FUZZ
@given(
    st.sampled_from([b"\x80\x02", b"\x80\x04", b""]),
    st.lists(
        st.sampled_from(
            [
                b"(",
                b"t",
                b"]",
                b"a",
                b"e",
                b"}",
                b"s",
                b"u",
                b"0",
                b"1",
                b"2",
                b"N",
                b"K\x01",
                b"R",
                b"b",
                b"\x85",
                b"\x86",
                b"\x93",
                b"\x94",
                b"h\x00",
                b"q\x00",
                b"\x8c\x02os",
                b"cos\nsystem\n",
                b"\x81",
                b"o",
                b"\x8f",
                b"\x90",
                b"\x91",
                b"Q",
                b".",
            ]
        ),
        max_size=60,
    ),
)
def test_pickle_machine_on_opcode_soup(prefix: bytes, ops: list[bytes]) -> None:
    data = prefix + b"".join(ops)
    PickleMachine(data, ALLOW).run_one()
    _scan(data)
