"""The scanner on files written by the real libraries (tests/fixtures/real, see make_fixtures.py).

Every fixture must scan clean, in the format its loader reads it as; malicious variants built
from the same real files (a payload in a torch archive's data.pkl, with and without the encrypted
flag; a payload before a NumPy pickle; text that really is a pickle) must still be refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch_zip_edit import replace_member, same_length_call, set_encrypted  # noqa: E402

from modelward.scanning import scan  # noqa: E402

REAL = ROOT / "tests" / "fixtures" / "real"
MANIFEST: dict[str, dict[str, str]] = json.loads((REAL / "manifest.json").read_text())
PAYLOAD = ("os", "system", "echo pwned")


def _expected_format(rel: str) -> set[str]:
    name = Path(rel).name
    if rel.startswith("torch/"):
        return {"torch-legacy"} if name.startswith("legacy_") else {"torch-zip"}
    if rel.startswith("numpy"):
        return {{".pkl": "pickle", ".npy": "npy", ".npz": "npz"}[Path(rel).suffix]}
    if name.endswith(".json"):
        return {"json"}
    return {"text", "jinja"}


def test_the_fixtures_are_small_and_all_listed() -> None:
    files = [p for p in REAL.rglob("*") if p.is_file()]
    listed = {REAL / rel for rel in MANIFEST}
    assert listed <= set(files)
    assert set(files) - listed == {REAL / "make_fixtures.py", REAL / "manifest.json"}
    assert sum(p.stat().st_size for p in files) < 2_000_000
    folders = {rel.split("/")[0] for rel in MANIFEST}
    assert folders == {"torch", "numpy1", "numpy2", "hf"}


@pytest.mark.parametrize("rel", sorted(MANIFEST))
def test_real_file_scans_clean(rel: str) -> None:
    path = REAL / rel
    report = scan(path, use_config=False)
    assert report.verdict == "clean", report.to_text()
    assert not [f for f in report.findings if f.impact != "info"], report.to_text()
    (result,) = report.files
    assert result.format in _expected_format(rel), (rel, result.format)


def test_every_real_file_has_its_sha256_in_the_report() -> None:
    report = scan(REAL, use_config=False)
    for result in report.files:
        assert result.sha256 == hashlib.sha256((REAL / result.path).read_bytes()).hexdigest()
    assert all(entry["sha256"] for entry in report.to_dict()["files"])


def test_the_whole_fixture_folder_scans_clean() -> None:
    report = scan(REAL, use_config=False)
    assert report.verdict == "clean", report.to_text()
    assert len(report.files) == len(MANIFEST) + 2
    assert all(r.sha256 is not None for r in report.files)


def test_numpy_pickles_of_every_protocol_and_both_majors_are_present() -> None:
    for major in (1, 2):
        for protocol in range(6):
            assert f"numpy{major}/array_protocol{protocol}.pkl" in MANIFEST
    made = {MANIFEST[f"numpy{m}/array.npy"]["made_by"].split()[1][0] for m in (1, 2)}
    assert made == {"1", "2"}
    five = (REAL / "numpy2/array_protocol5.pkl").read_bytes()
    assert b"_frombuffer" in five and b"numpy._core.numeric" in five
    assert b"numpy.core.numeric" in (REAL / "numpy1/array_protocol5.pkl").read_bytes()


def test_torch_archives_carry_a_zip64_end_record() -> None:
    # torch writes one into every archive, which is what made them all "malformed" (item 15)
    for rel in MANIFEST:
        if rel.startswith("torch/") and not Path(rel).name.startswith("legacy_"):
            data = (REAL / rel).read_bytes()
            assert b"PK\x06\x06" in data[-200:] and b"PK\x06\x07" in data[-100:], rel


# ---- malicious variants of the real files ---------------------------------------------------
TORCH_FILES = [
    "torch/state_dict.pt",
    "torch/optimizer_adamw.pt",
    "torch/checkpoint.pt",
    "torch/pytorch_model.bin",
]


def _evil_torch(rel: str) -> bytes:
    data = (REAL / rel).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        size = next(i.file_size for i in zf.infolist() if i.filename.endswith("/data.pkl"))
    return replace_member(data, "/data.pkl", same_length_call(*PAYLOAD, size))


@pytest.mark.parametrize("rel", TORCH_FILES)
@pytest.mark.parametrize(
    ("central", "local"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_a_payload_in_a_real_torch_archive_is_unsafe_encrypted_or_not(
    tmp_path: Path, rel: str, central: bool, local: bool
) -> None:
    evil = set_encrypted(_evil_torch(rel), "/data.pkl", central=central, local=local)
    path = tmp_path / Path(rel).name
    path.write_bytes(evil)
    report = scan(path, use_config=False)
    assert report.verdict == "unsafe", report.to_text()
    hits = [f for f in report.findings if f.rule_id == "MW-PKL-GLOBAL"]
    assert hits and "os.system" in hits[0].message and "data.pkl" in hits[0].location
    encrypted = [f for f in report.findings if f.rule_id == "MW-ARC-ENCRYPTED"]
    assert bool(encrypted) == central  # torch honours the central flag only


@pytest.mark.parametrize(("central", "local"), [(False, True), (True, False)])
def test_the_encrypted_flag_on_a_benign_torch_archive(
    tmp_path: Path, central: bool, local: bool
) -> None:
    """torch 2.13 loads an archive whose local header says encrypted and refuses one whose
    central directory does (`unsupported encryption`); the report says just that."""
    data = (REAL / "torch/state_dict.pt").read_bytes()
    path = tmp_path / "state_dict.pt"
    path.write_bytes(set_encrypted(data, "/data.pkl", central=central, local=local))
    report = scan(path, use_config=False)
    if central:
        assert report.verdict == "malformed"
        assert {f.rule_id for f in report.findings} == {"MW-ARC-ENCRYPTED"}
    else:
        assert report.verdict == "clean", report.to_text()


def test_a_torch_archive_with_a_case_variant_pickle_is_unsafe(tmp_path: Path) -> None:
    """torch finds records through miniz, which compares names ignoring ASCII case."""
    source = zipfile.ZipFile(io.BytesIO((REAL / "torch/state_dict.pt").read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in source.infolist():
            zf.writestr(info.filename, source.read(info))
        zf.writestr("state_dict/DATA.pkl", source.read("state_dict/data.pkl"))
    path = tmp_path / "case.pt"
    path.write_bytes(out.getvalue())
    report = scan(path, use_config=False)
    assert report.verdict == "unsafe"
    assert "MW-ARC-DUPLICATE" in {f.rule_id for f in report.findings}


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("major", [1, 2])
def test_a_payload_before_a_real_numpy_pickle_is_unsafe(
    tmp_path: Path, protocol: int, major: int
) -> None:
    # pickle.load runs the call, pops its result and goes on to load the array as before
    payload = b"cos\nsystem\n(S'echo pwned'\ntR0"
    real = (REAL / f"numpy{major}/mixed_protocol{protocol}.pkl").read_bytes()
    path = tmp_path / "arrays.pkl"
    path.write_bytes(payload + real)
    report = scan(path, use_config=False)
    assert report.verdict == "unsafe", report.to_text()
    assert any("os.system" in f.message for f in report.findings)


def test_a_legacy_torch_file_with_a_payload_before_the_magic_is_unsafe(tmp_path: Path) -> None:
    real = (REAL / "torch/legacy_checkpoint.pt").read_bytes()
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR0" + real)
    report = scan(path, use_config=False)
    assert report.verdict == "unsafe", report.to_text()
