"""Files written by torch.save here and now scan clean, and the scanner's model of torch's zip
reader matches torch.load (torch is a test dependency: nothing here is skipped without it)."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch_zip_edit import replace_member, same_length_call, set_encrypted

from modelward.scanning import scan


def _training_state() -> dict[str, object]:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "checkpoint": {
            "epoch": 1,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
        },
        "parameter": nn.Parameter(torch.ones(2)),
        "sparse": torch.eye(3).to_sparse(),
        "half": {"w": torch.randn(2, 2, dtype=torch.bfloat16), "ids": torch.arange(4)},
    }


def test_fresh_torch_save_files_scan_clean(tmp_path: Path) -> None:
    for name, obj in _training_state().items():
        torch.save(obj, tmp_path / f"{name}.pt")
        torch.save(obj, tmp_path / f"{name}.legacy.pt", _use_new_zipfile_serialization=False)
        torch.save(obj, tmp_path / f"{name}.p4.pt", pickle_protocol=4)
    torch.save(_training_state()["state_dict"], tmp_path / "pytorch_model.bin")
    report = scan(tmp_path, use_config=False)
    assert report.verdict == "clean", report.to_text()
    formats = {r.path: r.format for r in report.files}
    assert formats["checkpoint.pt"] == "torch-zip"
    assert formats["checkpoint.legacy.pt"] == "torch-legacy"
    assert formats["pytorch_model.bin"] == "torch-zip"


def test_torch_honours_the_encrypted_flag_where_the_scanner_says(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    archive = buffer.getvalue()
    local_only = set_encrypted(archive, "/data.pkl", central=False, local=True)
    central = set_encrypted(archive, "/data.pkl", central=True, local=False)
    assert torch.equal(torch.load(io.BytesIO(local_only))["w"], torch.ones(2))
    try:
        torch.load(io.BytesIO(central))
    except RuntimeError as exc:
        assert "encryption" in str(exc)
    else:
        raise AssertionError("torch.load read a member its central directory marks encrypted")
    (tmp_path / "local.pt").write_bytes(local_only)
    (tmp_path / "central.pt").write_bytes(central)
    assert scan(tmp_path / "local.pt", use_config=False).verdict == "clean"
    assert {f.rule_id for f in scan(tmp_path / "central.pt", use_config=False).findings} == {
        "MW-ARC-ENCRYPTED"
    }


def test_torch_runs_the_payload_the_scanner_refuses(tmp_path: Path) -> None:
    """The in-place edit the malicious-variant tests use is a real attack on torch.load."""
    buffer = io.BytesIO()
    torch.save({"note": "x" * 100}, buffer)
    archive = buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        size = next(i.file_size for i in zf.infolist() if i.filename.endswith("/data.pkl"))
    # a harmless call stands in for os.system: len("payload") runs and its result is dropped
    evil = replace_member(archive, "/data.pkl", same_length_call("builtins", "len", "x", size))
    evil = set_encrypted(evil, "/data.pkl", central=False, local=True)
    assert torch.load(io.BytesIO(evil), weights_only=False) == {}
    (tmp_path / "evil.pt").write_bytes(evil)
    report = scan(tmp_path / "evil.pt", use_config=False)
    assert report.verdict == "unsafe"
    assert any("builtins.len" in f.message for f in report.findings)


# -- torch.export archives (.pt2) ---------------------------------------------------------------


def _exported(path: Path) -> Path:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model.register_buffer("scale", torch.tensor([2.0]))
    program = torch.export.export(model, (torch.randn(1, 4),))
    torch.export.save(program, path)
    return path


def _rewritten(source: Path, target: Path, extra: dict[str, bytes], drop: str = "") -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            if drop and info.filename.endswith(drop):
                continue
            data = zin.read(info.filename)
            zout.writestr(info, extra.pop(info.filename, data))
        for name, data in extra.items():
            zout.writestr(name, data)
    return target


def test_a_torch_export_archive_scans_clean_and_loads(tmp_path: Path) -> None:
    path = _exported(tmp_path / "model.pt2")
    report = scan(path, use_config=False)
    assert report.verdict == "clean", report.to_text()
    assert report.files[0].format == "pt2"
    assert torch.export.load(path).module()(torch.randn(1, 4)).shape == (1, 2)


def test_compiled_code_in_a_torch_export_archive_is_unsafe(tmp_path: Path) -> None:
    path = _exported(tmp_path / "model.pt2")
    prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    elf = b"\x7fELF\x02\x01\x01" + bytes(57) + b"code"
    evil = _rewritten(path, tmp_path / "evil.pt2", {f"{prefix}/data/aotinductor/model.so": elf})
    report = scan(evil, use_config=False)
    assert report.verdict == "unsafe"
    assert any(f.rule_id == "MW-CODE-NATIVE" for f in report.files[0].findings)


def test_a_pickle_payload_in_a_torch_export_archive_is_unsafe(tmp_path: Path) -> None:
    path = _exported(tmp_path / "model.pt2")
    names = zipfile.ZipFile(path).namelist()
    [sample] = [n for n in names if n.endswith("sample_inputs/model.pt")] or [
        f"{names[0].split('/')[0]}/data/sample_inputs/model.pt"
    ]
    payload = b"cposix\nsystem\n(S'echo pwned'\ntR."
    evil = _rewritten(path, tmp_path / "evil.pt2", {sample: payload})
    report = scan(evil, use_config=False)
    assert report.verdict == "unsafe", report.to_text()


def test_a_truncated_torch_export_weight_is_malformed(tmp_path: Path) -> None:
    path = _exported(tmp_path / "model.pt2")
    prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    short = _rewritten(path, tmp_path / "short.pt2", {f"{prefix}/data/weights/weight_0": b"\0" * 4})
    report = scan(short, use_config=False)
    assert report.verdict == "malformed"
    assert any(f.rule_id == "MW-PT2-WEIGHTS" for f in report.files[0].findings)


def test_a_raw_weight_the_config_does_not_name_is_not_recognised(tmp_path: Path) -> None:
    path = _exported(tmp_path / "model.pt2")
    prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    odd = _rewritten(
        path, tmp_path / "odd.pt2", {f"{prefix}/data/weights/stray": bytes(range(128, 256))}
    )
    report = scan(odd, use_config=False)
    assert report.verdict == "malformed"
