"""The scanner reads containers and streams the way their loaders do.

Zip: miniz (torch) and Python's zipfile take the zip64 end record whenever its locator is there.
Pickle sniffing: a stream is a pickle when a loader would do something with it, text otherwise.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from modelward.scanning import scan
from modelward.scanning.pickle_vm import PICKLE_OPCODES
from modelward.scanning.sniff import sniff

REAL = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "real"


# ---- zip64 end records ----------------------------------------------------------------------
def _torch_archive() -> bytearray:
    return bytearray((REAL / "torch" / "state_dict.pt").read_bytes())


def test_a_zip64_end_record_with_unsaturated_fields_is_read(tmp_path: Path) -> None:
    data = _torch_archive()
    eocd = data.rfind(b"PK\x05\x06")
    entries = struct.unpack("<H", data[eocd + 10 : eocd + 12])[0]
    assert entries < 0xFFFF  # torch writes the record even when nothing needs it
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    report = scan(path, use_config=False)
    assert report.verdict == "clean", report.to_text()


def test_end_records_that_disagree_are_malformed(tmp_path: Path) -> None:
    data = _torch_archive()
    eocd = data.rfind(b"PK\x05\x06")
    entries = struct.unpack("<H", data[eocd + 10 : eocd + 12])[0]
    data[eocd + 8 : eocd + 12] = struct.pack("<HH", entries - 1, entries - 1)
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    report = scan(path, use_config=False)
    assert report.verdict == "malformed"
    assert any("zip64" in f.message for f in report.findings if f.rule_id == "MW-ZIP-STRUCTURE")


def test_a_zip64_locator_pointing_nowhere_is_malformed(tmp_path: Path) -> None:
    data = _torch_archive()
    locator = data.rfind(b"PK\x06\x07")
    data[locator + 8 : locator + 16] = struct.pack("<Q", 3)
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    report = scan(path, use_config=False)
    assert report.verdict == "malformed"
    assert "MW-ZIP-STRUCTURE" in {f.rule_id for f in report.findings}


def test_a_multi_disk_zip64_locator_is_malformed(tmp_path: Path) -> None:
    data = _torch_archive()
    locator = data.rfind(b"PK\x06\x07")
    data[locator + 16 : locator + 20] = struct.pack("<I", 2)
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    assert scan(path, use_config=False).verdict == "malformed"


# ---- pickle or text -------------------------------------------------------------------------
PRINTABLE_OPCODES = sorted(chr(c) for c in PICKLE_OPCODES if 32 < c < 127)


@pytest.mark.parametrize("letter", PRINTABLE_OPCODES)
def test_prose_starting_with_an_opcode_letter_is_text(letter: str) -> None:
    prose = f"{letter}opyright 2024, the authors: all rights reserved\nsee the LICENSE file\n"
    assert sniff(prose.encode()) == "text"


@pytest.mark.parametrize(
    "text",
    [
        "cosine_schedule:\n  warmup_steps: 500\n",
        "copyright 2024 the authors\nall rights reserved\n",
        "cc-by-4.0\nAttribution 4.0 International\n",
        "class Config:\n    hidden = 64\n",
        "cat\ndog\nbird\n",  # imports module "at" then fails: nothing is called
        "import torch\nimport numpy as np\n",
        "x = 1\n",  # also a valid zlib header (0x78 0x20), but it does not inflate
        "x^2 + y^2\n",
        "BZh9 is not a bzip2 stream\n",
        "N.B. the weights are in model.safetensors\n",
    ],
)
def test_text_files_of_model_repositories_are_text(text: str) -> None:
    assert sniff(text.encode()) == "text"


@pytest.mark.parametrize(
    "stream",
    [
        b"cos\nsystem\n(S'echo pwned'\ntR.",  # a whole protocol 0 pickle, all ASCII
        b"cos\nsystem\n(S'echo pwned'\ntR and then prose that is not a pickle\n",
        b"cos\nsystem\nthe import alone is refused, as the gadget is known\n",
        b"cbuiltins\nexec\n(S'print(1)'\ntR.",
        b"(ios\nsystem\nS'echo pwned'\n.",  # INST: pickle.py imports before it needs the MARK
        b"cmymodule\nNet\n.",  # imports and loads to STOP
    ],
)
def test_text_that_a_loader_runs_is_an_unsafe_pickle(tmp_path: Path, stream: bytes) -> None:
    assert sniff(stream) == "pickle"
    path = tmp_path / "notes.txt"
    path.write_bytes(stream)
    assert scan(path, use_config=False).verdict == "unsafe"


def test_plain_protocol_0_and_1_pickles_are_still_pickles() -> None:
    import pickle

    for protocol in (0, 1):
        assert sniff(pickle.dumps({"a": [1, 2.5, "x"]}, protocol=protocol)) == "pickle"


def test_real_compressed_streams_are_still_recognised() -> None:
    import bz2

    assert sniff(zlib.compress(b"x" * 100)) == "zlib"
    assert sniff(zlib.compress(b"x" * 100, 9)) == "zlib"
    assert sniff(bz2.compress(b"x" * 100)) == "bz2"
    assert sniff(bz2.compress(b"")) == "bz2"
