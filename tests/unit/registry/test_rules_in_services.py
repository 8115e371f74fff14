"""Rules the services keep whatever calls them (the Python API here, never the CLI): every push is
scanned on the bytes it stores, environment aliases move only by promotion, reads need the `view`
role, and security settings are ledgered registry state that `modelward.toml` cannot widen."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import modelward.scanning
import modelward.storage.staging
from modelward.core.anchors import Anchor, anchors_in
from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement
from modelward.core.roles import Action
from modelward.errors import (
    ChangedDuringReadError,
    DeniedError,
    InputError,
    PermissionDeniedError,
    VerificationError,
)
from modelward.services.audit import AuditService
from modelward.services.datasets import DatasetService
from modelward.services.evidence import EvidenceService
from modelward.services.gate import GateService
from modelward.services.gate_config import ignored_security_keys, load_gate_config
from modelward.services.ingest import ScanRefusedError, scan_for_push
from modelward.services.provenance import ProvenanceService
from modelward.services.registry import RegistryService
from modelward.services.releases import ReleaseService
from modelward.services.settings import (
    SettingsService,
    parse_setting_text,
    settings_state_checks,
)
from modelward.services.users import UserService
from modelward.storage.metadata.registry_repository import RegistryRepository
from modelward.storage.model_files import ModelFile

from .bundles import make_bundle, safetensors_bytes
from .conftest import Registry

# A protocol-0 pickle that calls os.system when loaded.
EVIL_PICKLE = b"cposix\nsystem\n(S'echo pwned'\ntR."
WEIGHTS = "model-00001-of-00001.safetensors"


def scan_predicate(registry: Registry, uri: str) -> dict[str, Any]:
    record = registry.service.resolve(uri)
    (attestation,) = registry.service.attestations(record, "scan")
    envelope = Envelope.from_dict(json.loads(attestation.document))
    return Statement.from_bytes(envelope.payload).predicate


def stored_bytes(registry: Registry, uri: str) -> dict[str, bytes]:
    record = registry.service.resolve(uri)
    return {
        entry.name: registry.blob_path(entry.digest).read_bytes()
        for entry in record.manifest().files
    }


# -- scan what you store ------------------------------------------------------------------------


def test_a_file_swapped_after_the_scan_is_not_stored_with_a_clean_scan(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=1)
    benign = (bundle / WEIGHTS).read_bytes()

    def scan_then_swap(path: Path, files: Sequence[ModelFile]) -> dict[str, Any]:
        report = scan_for_push(path, files)
        (bundle / WEIGHTS).write_bytes(EVIL_PICKLE)  # the attacker swaps the working tree
        return report

    result = registry.service.push(bundle, "llama", scanner=scan_then_swap)

    stored = stored_bytes(registry, result.version.uri)
    assert stored[WEIGHTS] == benign
    assert EVIL_PICKLE not in stored.values()
    predicate = scan_predicate(registry, result.version.uri)
    manifest = {e.name: e.digest for e in result.manifest.files}
    assert {f["path"]: f["sha256"] for f in predicate["files"]} == manifest


def test_the_default_scanner_also_scans_the_stored_bytes(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=2)
    benign = (bundle / WEIGHTS).read_bytes()
    real_scan = modelward.scanning.scan

    def scan_then_swap(*args: Any, **kwargs: Any) -> Any:
        report = real_scan(*args, **kwargs)
        (bundle / WEIGHTS).write_bytes(EVIL_PICKLE)
        return report

    monkeypatch.setattr(modelward.scanning, "scan", scan_then_swap)
    result = registry.service.push(bundle, "llama")

    assert stored_bytes(registry, result.version.uri)[WEIGHTS] == benign
    predicate = scan_predicate(registry, result.version.uri)
    assert predicate["verdict"] == "clean"
    by_path = {f["path"]: f["sha256"] for f in predicate["files"]}
    assert by_path == {e.name: e.digest for e in result.manifest.files}


def test_a_file_swapped_while_it_is_read_is_refused_and_nothing_is_stored(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=3)
    benign = (bundle / WEIGHTS).read_bytes()
    real_write = modelward.storage.staging.write_all
    swapped: list[bool] = []

    def write_then_swap(fd: int, data: bytes) -> None:
        real_write(fd, data)
        if not swapped and benign.startswith(data):
            # the weights' first chunk was read: replace the file by another one
            swapped.append(True)
            evil = bundle / "evil.tmp"
            evil.write_bytes(EVIL_PICKLE)
            os.replace(evil, bundle / WEIGHTS)

    monkeypatch.setattr(modelward.storage.staging, "write_all", write_then_swap)
    before = registry.blob_digests()
    with pytest.raises(ChangedDuringReadError, match="changed while it was being read"):
        registry.service.push(bundle, "llama")
    assert registry.blob_digests() == before
    assert registry.service.list_models() == []
    assert not any((registry.home / "staging").iterdir())


def test_a_scanner_whose_report_names_other_bytes_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=4)

    def lying(path: Path, files: Sequence[ModelFile]) -> dict[str, Any]:
        report = scan_for_push(path, files)
        for entry in report["files"]:
            entry["sha256"] = "0" * 64
        return report

    with pytest.raises(ScanRefusedError, match="what was scanned is not what would be stored"):
        registry.service.push(bundle, "llama", scanner=lying)
    with pytest.raises(ScanRefusedError) as refused:
        registry.service.push(bundle, "llama", scanner=lambda path, files: {"files": []})
    assert all("does not cover" in reason for reason in refused.value.reasons)
    assert registry.service.list_models() == []
    assert [e.action for e in registry.events()][-2:] == ["push.refused", "push.refused"]


def test_push_through_the_api_without_a_scanner_still_scans_and_refuses(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=5)
    (bundle / "extra.pkl").write_bytes(EVIL_PICKLE)
    before = registry.blob_digests()

    with pytest.raises(DeniedError, match="unsafe content"):
        registry.service.push(bundle, "llama")

    assert registry.blob_digests() == before
    assert registry.service.list_models() == []
    assert registry.events()[-1].action == "push.refused"


def test_a_single_file_push_is_scanned_with_its_digest(registry: Registry, tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(safetensors_bytes(512, 7))
    result = registry.service.push(weights, "single")
    (entry,) = scan_predicate(registry, result.version.uri)["files"]
    assert entry["sha256"] == result.manifest.files[0].digest

    evil = tmp_path / "model.bin"
    evil.write_bytes(EVIL_PICKLE)
    with pytest.raises(DeniedError, match="unsafe"):
        registry.service.push(evil, "single")


def test_prompt_templates_a_release_carries_are_scanned(registry: Registry, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", seed=6)
    registry.service.push(bundle, "llama")
    template = tmp_path / "chat.jinja"
    template.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    before = registry.blob_digests()
    gate = GateService(registry.context)
    with pytest.raises(DeniedError, match="unsafe"):
        gate.promote("models:/llama/1", "staging", prompt_templates=[template])
    assert registry.blob_digests() == before


# -- environment aliases and the view role ------------------------------------------------------


def test_environment_aliases_are_refused_by_the_service(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    for alias in ("staging", "canary", "production"):
        with pytest.raises(InputError, match="environment alias"):
            registry.service.set_alias("llama", alias, 1)
        with pytest.raises(InputError, match="environment alias"):
            registry.service.delete_alias("llama", alias)
    # the environments are the registry's setting, not a caller's argument
    SettingsService(registry.context).set("gate.environments", ["qa", "live"])
    with pytest.raises(InputError, match="environment alias"):
        registry.service.set_alias("llama", "live", 1)
    registry.service.set_alias("llama", "production", 1)
    assert registry.service.resolve("models:/llama@production").number == 1


def test_an_unknown_actor_cannot_read(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    stranger = RegistryService(registry.context, actor="mallory")
    reads = [
        lambda: stranger.show("models:/llama/1"),
        lambda: stranger.resolve("models:/llama/1"),
        lambda: stranger.list_models(),
        lambda: stranger.list_versions("llama"),
        lambda: stranger.pull("models:/llama/1", tmp_path / "out"),
        lambda: stranger.verify("models:/llama/1"),
        lambda: GateService(registry.context, "mallory").decisions("models:/llama/1"),
        lambda: GateService(registry.context, "mallory").show_policy("staging"),
        lambda: ReleaseService(registry.context, "mallory").list("llama", "staging"),
        lambda: ProvenanceService(registry.context, "mallory").lineage("models:/llama/1"),
        lambda: DatasetService(registry.context, "mallory").list(),
        lambda: EvidenceService(registry.context, "mallory").evaluations("models:/llama/1"),
        lambda: SettingsService(registry.context, "mallory").list(),
        lambda: AuditService(
            registry.context.database,
            registry.context.ledger_key,
            registry.context.origin,
            actor="mallory",
        ).log(),
    ]
    for read in reads:
        with pytest.raises(PermissionDeniedError, match="not a user of this registry"):
            read()
    assert not (tmp_path / "out").exists()


def test_a_viewer_reads_but_does_not_push_or_move_aliases(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    UserService(registry.context).add("vic", "viewer")
    viewer = RegistryService(registry.context, actor="vic")
    assert viewer.show("models:/llama/1")["uri"] == "models:/llama/1"
    with pytest.raises(PermissionDeniedError, match="may not push"):
        viewer.push(make_bundle(tmp_path / "two", seed=2), "llama")
    with pytest.raises(PermissionDeniedError, match="may not push"):
        viewer.set_alias("llama", "champion", 1)


# -- security settings are registry state -------------------------------------------------------


def test_a_toml_allow_list_does_not_widen_the_push_scan(registry: Registry, tmp_path: Path) -> None:
    (registry.home / "modelward.toml").write_text('[scan]\nallow = ["posix:system"]\n')
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "extra.pkl").write_bytes(EVIL_PICKLE)
    with pytest.raises(DeniedError, match="unsafe"):
        registry.service.push(bundle, "llama")
    warnings = ignored_security_keys(registry.home)
    assert any("[scan] allow" in w and "settings set scan.allow" in w for w in warnings)


def test_the_allow_list_setting_widens_the_scan_only_when_an_admin_sets_it(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "net.pkl").write_bytes(b"cmypkg.models\nNet\n)R.")
    with pytest.raises(DeniedError):
        registry.service.push(bundle, "llama")
    SettingsService(registry.context).set("scan.allow", ["mypkg.models:Net"])
    result = registry.service.push(bundle, "llama")
    assert scan_predicate(registry, result.version.uri)["options"]["allow"] == ["mypkg.models:Net"]


def test_toml_gate_keys_have_no_effect(registry: Registry, tmp_path: Path) -> None:
    (registry.home / "modelward.toml").write_text(
        '[gate]\noverride_roles = ["trainer"]\nenvironments = ["dev"]\nmax_override = "52w"\n'
    )
    config = load_gate_config(registry.context)
    assert not config.permissions.allows(["trainer"], Action.OVERRIDE)
    assert config.environments == ("staging", "canary", "production")
    assert config.max_override == timedelta(days=7)
    assert len(ignored_security_keys(registry.home)) == 3

    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    UserService(registry.context).add("bob", "trainer")
    expiry = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(PermissionDeniedError, match="may not override"):
        GateService(registry.context, "bob").promote(
            "models:/llama/1", "staging", override=("hotfix", expiry)
        )


def test_settings_are_changed_by_admins_only(registry: Registry) -> None:
    users = UserService(registry.context)
    for name, role in (("bob", "trainer"), ("rita", "releaser"), ("rev", "reviewer")):
        users.add(name, role)
    for actor in ("bob", "rita", "rev"):
        with pytest.raises(PermissionDeniedError, match="admin"):
            SettingsService(registry.context, actor).set("gate.override_roles", ["trainer"])
    with pytest.raises(PermissionDeniedError, match="not a user"):
        SettingsService(registry.context, "mallory").set("scan.allow", ["posix:system"])
    assert not load_gate_config(registry.context).permissions.allows(["trainer"], Action.OVERRIDE)
    # a reviewer may still read them
    views = {v.key: v for v in SettingsService(registry.context, "rev").list()}
    assert views["gate.override_roles"].value == ["admin", "releaser"]
    assert views["gate.override_roles"].source == "default"


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("scan.allow", "not a global"),
        ("gate.environments", "staging,staging"),
        ("gate.environments", "[]"),
        ("gate.override_roles", "wizard"),
        ("gate.override_roles", ""),
        ("gate.max_override", "forever"),
        ("gate.max_override", "0d"),
        ("no.such.key", "1"),
    ],
)
def test_setting_values_are_validated_per_key(key: str, text: str) -> None:
    with pytest.raises(InputError):
        parse_setting_text(key, text)


def test_settings_changes_are_in_the_ledger_anchored(registry: Registry) -> None:
    service = SettingsService(registry.context)
    view = service.set("gate.override_roles", parse_setting_text("gate.override_roles", "admin"))
    event = registry.events()[-1]
    assert (event.action, event.subject, event.actor) == (
        "settings.set",
        "setting:gate.override_roles",
        "alice",
    )
    assert event.details["value"] == ["admin"]
    assert event.details["previous"] == ["admin", "releaser"]
    assert view.ledger_seq == event.seq
    (anchor,) = anchors_in(event.details)
    assert anchor.table == "registry_settings"
    (row,) = registry.sql("SELECT id, ledger_seq FROM registry_settings")
    assert (anchor.key, row[1]) == (str(row[0]), event.seq)
    assert isinstance(anchor, Anchor) and anchor.digest is not None
    assert not load_gate_config(registry.context).permissions.allows(["releaser"], Action.OVERRIDE)
    with registry.context.database.read() as conn:
        assert settings_state_checks(conn) == []


def test_a_setting_row_written_behind_modelwards_back_is_ignored_and_reported(
    registry: Registry, tmp_path: Path
) -> None:
    registry.sql(
        "INSERT INTO registry_settings (key, value, created_at, created_by, ledger_seq) "
        "VALUES ('scan.allow', '[\"posix:system\"]', '2026-01-01T00:00:00.000000Z', 'alice', 0)"
    )
    registry.sql(
        "INSERT INTO registry_settings (key, value, created_at, created_by) "
        "VALUES ('gate.override_roles', '[\"trainer\"]', '2026-01-01T00:00:00.000000Z', 'alice')"
    )
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "extra.pkl").write_bytes(EVIL_PICKLE)
    with pytest.raises(DeniedError, match="unsafe"):
        registry.service.push(bundle, "llama")
    assert not load_gate_config(registry.context).permissions.allows(["trainer"], Action.OVERRIDE)
    views = {v.key: v for v in SettingsService(registry.context).list()}
    assert views["scan.allow"].source == "untrusted" and views["scan.allow"].value == []
    assert "does not match its ledger event" in str(views["scan.allow"].problem)
    assert "has no ledger event" in str(views["gate.override_roles"].problem)
    with registry.context.database.read() as conn:
        assert len(settings_state_checks(conn)) == 2

    # an edited value of a genuine row is caught too
    SettingsService(registry.context).set("gate.max_override", "2d")
    registry.sql("UPDATE registry_settings SET value = '\"52w\"' WHERE key = 'gate.max_override'")
    assert load_gate_config(registry.context).max_override == timedelta(days=7)


def test_staging_folders_are_removed_after_a_push_and_stale_ones_later(
    registry: Registry, tmp_path: Path
) -> None:
    staging = registry.home / "staging"
    staging.mkdir()
    stale = staging / "push-killed.staging"
    (stale / "bundle").mkdir(parents=True)
    young = staging / "push-running.staging"
    young.mkdir()
    day_ago = stale.stat().st_mtime - 2 * 24 * 3600
    os.utime(stale, (day_ago, day_ago))
    registry.service.push(make_bundle(tmp_path / "bundle"), "llama")
    assert sorted(p.name for p in staging.iterdir()) == ["push-running.staging"]


def test_a_deleted_setting_row_does_not_bring_back_an_older_value(registry: Registry) -> None:
    service = SettingsService(registry.context)
    service.set("gate.max_override", "1d")
    service.set("gate.max_override", "2d")
    registry.sql("DELETE FROM registry_settings WHERE id = (SELECT MAX(id) FROM registry_settings)")
    view = service.get("gate.max_override")
    assert view.source == "untrusted" and "is not the current one" in str(view.problem)
    assert view.value == "7d"  # the default, not the older "1d"
    registry.sql("DELETE FROM registry_settings")
    view = service.get("gate.max_override")
    assert view.source == "untrusted" and "deleted" in str(view.problem)


def test_an_injected_scanner_that_says_clean_cannot_store_an_unsafe_pickle(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "weights.bin").write_bytes(EVIL_PICKLE)

    def says_clean(path: Path, files: Any) -> dict[str, Any]:
        return {"verdict": "clean", "files": [{"path": f.name} for f in files], "findings": []}

    with pytest.raises(DeniedError, match="unsafe"):
        registry.service.push(bundle, "llama", scanner=says_clean)
    assert registry.sql("SELECT COUNT(*) FROM versions") == [(0,)]


def test_a_version_row_renumbered_with_sql_is_not_pulled(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    second = make_bundle(tmp_path / "two")
    (second / "extra.json").write_text("{}")
    registry.service.push(second, "llama")
    registry.sql("UPDATE versions SET number = 99 WHERE number = 2")
    registry.sql("UPDATE versions SET number = 2 WHERE number = 1")
    with pytest.raises(VerificationError, match="does not match the ledger"):
        registry.service.pull("models:/llama/2", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fsck_keeps_the_blobs_a_manifest_needs_when_version_files_are_edited(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "one"), "llama")
    registry.sql("UPDATE version_files SET digest = '00' || substr(digest, 3)")
    with registry.context.database.read() as conn:
        referenced = RegistryRepository(conn).referenced_digests()
    stored = set(registry.context.blobs.list_digests())
    record = registry.service.resolve("models:/llama/1")
    assert {f.digest for f in record.manifest().files} <= referenced & stored


def test_users_list_needs_a_user_and_marks_rows_written_behind_modelwards_back(
    registry: Registry,
) -> None:
    from modelward.services.users import UserService

    with pytest.raises(PermissionDeniedError):
        UserService(registry.context, "nobody").list()
    registry.sql("INSERT INTO users VALUES ('mallory', 'admin', 'now', 'alice', NULL)")
    roles = {u.name: u.role for u in UserService(registry.context).list()}
    assert roles["mallory"] == "untrusted" and roles["alice"] == "admin"
