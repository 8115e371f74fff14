"""The pieces of evidence bundles on their own: the canonical archive (deterministic, every
changed header byte noticed, caps), and approvals signed as in-toto statements that name the
reviewer's authenticated identity and their own ledger event."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.unit.registry.conftest import Registry

from modelward.core.dsse import Envelope
from modelward.core.evidence_archive import ArchiveFormatError, read_archive, write_archive
from modelward.core.intoto import Statement
from modelward.core.principal import Principal, bind_principal
from modelward.services.approval_attestation import (
    APPROVAL_PREDICATE_TYPE,
    approval_envelope_of,
    check_approval_statement,
)
from modelward.services.evidence_verify import EvidenceTrust
from modelward.services.gate import GateService
from modelward.services.users import UserService
from modelward.signing.keys import Verifier

MEMBERS = [("index.dsse.json", b"{}"), ("a/b.json", b"x" * 700), ("c.txt", b"")]


def test_the_archive_is_deterministic_and_read_by_tar() -> None:
    data = write_archive(MEMBERS)
    assert data == write_archive(list(MEMBERS))
    assert len(data) % 10240 == 0
    read = read_archive(data)
    assert read.canonical and read.members == MEMBERS
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [(i.name, i.mtime, i.uid, i.mode) for i in tar] == [
            (name, 0, 0, 0o644) for name, _ in MEMBERS
        ]
    script = "import sys; from modelward.core.evidence_archive import write_archive as w; "
    script += f"sys.stdout.buffer.write(w({MEMBERS!r}))"
    for seed in ("0", "1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, env=env, timeout=60, check=True
        )
        assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(data).digest()


def test_every_header_byte_changed_is_noticed() -> None:
    data = write_archive(MEMBERS)
    for at in range(512):  # the first header
        changed = data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]
        try:
            read = read_archive(changed)
        except ArchiveFormatError:
            continue
        assert not read.canonical or read.members != MEMBERS, at


@pytest.mark.parametrize(
    "members",
    [
        [("../escape", b"x")],
        [("/abs", b"x")],
        [("a//b", b"x")],
        [("same", b"1"), ("same", b"2")],
    ],
)
def test_bad_member_names_are_refused(members: list[tuple[str, bytes]]) -> None:
    with pytest.raises(ArchiveFormatError):
        write_archive(members)


def test_what_is_not_an_archive_is_bad_input() -> None:
    for data in (b"", b"x" * 1024, write_archive(MEMBERS)[:700]):
        with pytest.raises(ArchiveFormatError):
            read_archive(data)
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("evil")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ArchiveFormatError, match="not a regular file"):
        read_archive(link.getvalue())


def _approved(registry: Registry, tmp_path: Path) -> tuple[dict[str, object], int]:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"a": 1}')
    registry.service.push(bundle, "m")
    UserService(registry.context, actor="alice").add("rev", "reviewer")
    principal = Principal("rev", "https://issuer.example", token_id="tok-7", subject="sub-rev")
    with bind_principal(principal):
        result = GateService(registry.context, actor="rev").approve(
            "models:/m/1", "production", comment="looks right", sign_off=True
        )
    event = registry.events()[result["ledger_seq"]]
    return event.details, result["ledger_seq"]


def test_approvals_are_signed_statements_naming_identity_and_event(
    registry: Registry, tmp_path: Path
) -> None:
    details, seq = _approved(registry, tmp_path)
    envelope = Envelope.from_dict(approval_envelope_of(details))
    key = Verifier(registry.context.signer.public_key)
    assert any(key.is_valid(s.sig, envelope.pae()) for s in envelope.signatures)
    statement = Statement.from_bytes(envelope.payload)
    assert statement.predicate_type == APPROVAL_PREDICATE_TYPE
    reviewer = statement.predicate["reviewer"]
    assert reviewer == {
        "name": "rev",
        "authenticated": True,
        "issuer": "https://issuer.example",
        "subject": "sub-rev",
        "tokenId": "tok-7",
    }
    assert statement.predicate["ledger"]["seq"] == seq
    event = registry.events()[seq]
    root = registry.service.resolve("models:/m/1").root_digest
    arguments = {
        "root_digest": root,
        "event_seq": seq,
        "event_actor": event.actor,
        "event_recorded_at": event.recorded_at,
        "event_details": event.details,
        "origin": registry.context.origin,
    }
    assert check_approval_statement(statement, **arguments) == []  # type: ignore[arg-type]
    # the statement must agree with the event that carries it
    assert check_approval_statement(statement, **{**arguments, "event_seq": seq + 1})  # type: ignore[arg-type]
    assert check_approval_statement(statement, **{**arguments, "root_digest": "0" * 64})  # type: ignore[arg-type]
    forged = {**event.details, "comment": "something else"}
    assert check_approval_statement(statement, **{**arguments, "event_details": forged})  # type: ignore[arg-type]
    assert registry.audit_verify().ok


def test_an_index_changed_without_changing_its_meaning_still_fails(
    registry: Registry, tmp_path: Path
) -> None:
    """Whitespace or an extra (bogus) signature in the index leave it parseable and the
    registry's signature valid; the bytes are still not what the registry wrote."""
    import json as json_module

    from modelward.services.evidence_bundle import export_bundle
    from modelward.services.evidence_verify import EvidenceTrust, verify_evidence_bundle

    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"a": 1}')
    registry.service.push(bundle, "m")
    data = export_bundle(registry.context, "models:/m/1", actor="alice")
    trust = EvidenceTrust(
        registry=Verifier(registry.context.signer.public_key),
        ledger=registry.context.ledger_key.public_key(),
    )
    assert verify_evidence_bundle(data, trust).ok
    members = read_archive(data).members
    index = members[0][1]
    extra = json_module.loads(index)
    extra["signatures"].append({"keyid": "", "sig": "AAAA"})
    for changed in (
        index.replace(b"\n  ", b"\n\t", 1),
        json_module.dumps(extra, indent=2, sort_keys=True).encode() + b"\n",
    ):
        report = verify_evidence_bundle(
            write_archive([(members[0][0], changed), *members[1:]]), trust
        )
        assert [c.link for c in report.failures] == ["index"]


def _trust_of(registry: Registry) -> EvidenceTrust:
    return EvidenceTrust(
        registry=Verifier(registry.context.signer.public_key),
        ledger=registry.context.ledger_key.public_key(),
    )


def test_an_override_release_is_shown_and_a_tampered_row_is_left_out_and_named(
    registry: Registry, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from modelward.errors import NotFoundError
    from modelward.services.evidence_bundle import EvidenceBundleService
    from modelward.services.evidence_verify import verify_evidence_bundle

    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"a": 1}')
    registry.service.push(bundle, "m")
    gate = GateService(registry.context, actor="alice")
    # unsigned by a trusted uploader: staging denies; an admin breaks glass
    result = gate.promote(
        "models:/m/1",
        "staging",
        override=("incident 42 hotfix", datetime.now(UTC) + timedelta(hours=4)),
    )
    assert result.decision.overridden and result.release is not None
    service = EvidenceBundleService(registry.context, actor="alice")
    exported = service.export(model="m", environment="staging")
    assert exported.release_id == result.release.release_id and not exported.omitted
    report = verify_evidence_bundle(exported.data, _trust_of(registry))
    assert report.ok, [c.line() for c in report.failures]
    lines = {c.link: c.detail for c in report.checks}
    assert "OVERRIDE of alice ('incident 42 hotfix')" in lines["decision 1"]
    assert "OVERRIDE by alice" in lines[f"release {result.release.release_id}"]
    with pytest.raises(NotFoundError):
        service.export(model="m", environment="production")
    # someone edits the stored decision behind modelward's back: the export leaves it out and
    # says why, and verify fails naming it
    registry.sql("UPDATE gate_decisions SET facts = '{}' WHERE id = 1")
    tampered = service.export("models:/m/1")
    assert any(item.startswith("decision 1:") for item in tampered.omitted)
    failed = {
        c.link: c.detail
        for c in verify_evidence_bundle(tampered.data, _trust_of(registry)).failures
    }
    assert "left out at export" in failed["decision 1"]
    assert "names decision" in failed[f"release {result.release.release_id}"]
