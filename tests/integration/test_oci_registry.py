"""`modelward oci push|pull` against a stock registry: Debian's `docker-registry` (CNCF
Distribution 2.8) on 127.0.0.1, which has no referrers API, so the tag-schema fallback is what
carries the referrers. The registry computes and checks every digest itself; the pulled bundle
is verified by `model_signing` (the OpenSSF library). `.ci/run` installs the registry; its
absence is a failure, never a skip."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_signing import verifying
from safetensors.numpy import save_file
from tests.conftest import assert_clean_error, run_modelward

from modelward.core import oci
from modelward.errors import DigestMismatchError
from modelward.interfaces.cli import main
from modelward.services.context import open_registry
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.storage.oci_client import OciClient

REGISTRY_BINARY = "docker-registry"


@dataclass
class StockRegistry:
    host: str
    storage: Path

    def get(self, path: str, accept: str = oci.OCI_MANIFEST) -> httpx.Response:
        return httpx.get(f"http://{self.host}{path}", headers={"Accept": accept}, timeout=10)

    def blob_file(self, digest: str) -> Path:
        hex_digest = digest.removeprefix("sha256:")
        return (
            self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stock_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockRegistry]:
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        pytest.fail(f"{REGISTRY_BINARY} is not installed (`.ci/run` installs Debian's package)")
    folder = tmp_path_factory.mktemp("oci-registry")
    port = _free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(folder / "registry.log", "wb")  # noqa: SIM115 - closed after the process
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    host = f"127.0.0.1:{port}"
    try:
        for _ in range(100):  # up to ~10 s
            if process.poll() is not None:
                pytest.fail(f"{REGISTRY_BINARY} exited: {(folder / 'registry.log').read_text()}")
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail(f"{REGISTRY_BINARY} did not answer on {host}")
        yield StockRegistry(host, folder / "data")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@dataclass
class Pushed:
    home: Path
    env: dict[str, str]
    bundle: Path
    digest: str
    result: dict[str, object]


def _bundle(folder: Path) -> Path:
    """Files as users have them: safetensors weights written by the safetensors library."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    save_file(
        {"embed.weight": rng.standard_normal((64, 32), dtype=np.float32)},
        str(folder / "model.safetensors"),
    )
    (folder / "config.json").write_text(json.dumps({"architectures": ["TinyNet"], "hidden": 32}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "tokenizer.json").write_text(json.dumps({"vocab": {"a": 0}}))
    return folder


@pytest.fixture(scope="module")
def pushed(stock_registry: StockRegistry, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    root = tmp_path_factory.mktemp("oci-home")
    home = root / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELWARD_ACTOR", "alice")
        for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
            patch.delenv(variable, raising=False)
        initialize_registry(home)
        context = open_registry(home)
        try:
            RegistryService(context, actor="alice").push(_bundle(root / "tiny"), "tiny")
        finally:
            context.close()
    env = {"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": "alice"}
    evidence = root / "evidence.json"
    evidence.write_text('{"bundle": "evidence"}')
    target = f"{stock_registry.host}/models/tiny:v1"
    done = run_modelward(
        "oci", "push", "models:/tiny/1", target, "--evidence", str(evidence), "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    return Pushed(home, env, root / "tiny", str(result["digest"]), result)


def _cli(
    pushed: Pushed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in process (its exit code, stdout and stderr), on the pushed registry."""
    for name, value in pushed.env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def test_the_registry_computes_the_same_digests_and_keeps_referrers_under_the_fallback_tag(
    stock_registry: StockRegistry, pushed: Pushed
) -> None:
    assert pushed.result["referrers_mode"] == "tag-schema"
    by_tag = stock_registry.get("/v2/models/tiny/manifests/v1")
    assert by_tag.status_code == 200
    assert by_tag.headers["docker-content-digest"] == pushed.digest  # the registry's own hash
    manifest = by_tag.json()
    assert manifest["artifactType"] == oci.MODEL_ARTIFACT
    shown = json.loads(run_modelward("show", "models:/tiny/1", "--json", env=pushed.env).stdout)[
        "manifest"
    ]["files"]
    signed = {f["name"]: f"sha256:{f['digest']}" for f in shown}
    for layer in manifest["layers"]:
        head = httpx.head(
            f"http://{stock_registry.host}/v2/models/tiny/blobs/{layer['digest']}", timeout=10
        )
        assert head.headers["docker-content-digest"] == layer["digest"]
        assert signed[layer["annotations"][oci.ANNOTATION_FILEPATH]] == layer["digest"]
    assert len(manifest["layers"]) == len(signed) == 3

    referrers_api = stock_registry.get(f"/v2/models/tiny/referrers/{pushed.digest}")
    assert referrers_api.status_code == 404  # Distribution 2.8 has none
    index = stock_registry.get(
        f"/v2/models/tiny/manifests/{oci.fallback_tag(pushed.digest)}", oci.OCI_INDEX
    ).json()
    kinds = sorted(m["artifactType"] for m in index["manifests"])
    assert kinds == sorted([oci.SIGSTORE_BUNDLE, oci.CYCLONEDX_JSON, oci.EVIDENCE])
    for entry in index["manifests"]:
        referrer = stock_registry.get(f"/v2/models/tiny/manifests/{entry['digest']}").json()
        assert referrer["subject"]["digest"] == pushed.digest


def test_the_registry_refuses_bytes_that_do_not_match_their_digest(
    stock_registry: StockRegistry,
) -> None:
    claimed = oci.digest_of(b"the bytes we claim")
    with OciClient(stock_registry.host) as client, pytest.raises(DigestMismatchError):
        client.push_blob("models/tiny", claimed, 9, io.BytesIO(b"other one"))
    assert stock_registry.get(f"/v2/models/tiny/blobs/{claimed}").status_code == 404


def test_chunked_uploads_are_assembled_and_checked_by_the_registry(
    stock_registry: StockRegistry,
) -> None:
    data = np.random.default_rng(3).bytes(3 * (1 << 20) + 17)
    digest = oci.digest_of(data)
    with OciClient(stock_registry.host, chunk_size=1 << 20) as client:
        client.push_blob("models/chunks", digest, len(data), io.BytesIO(data))
        with client.stream_blob("models/chunks", digest, len(data)) as chunks:
            assert b"".join(chunks) == data
        wrong = oci.digest_of(data[:-1] + b"?")
        with pytest.raises(DigestMismatchError):
            client.push_blob("models/chunks", wrong, len(data), io.BytesIO(data))
    head = httpx.head(f"http://{stock_registry.host}/v2/models/chunks/blobs/{digest}", timeout=10)
    assert head.headers["docker-content-digest"] == digest
    assert stock_registry.get(f"/v2/models/chunks/blobs/{wrong}").status_code == 404


def test_pull_by_digest_with_only_a_public_key_and_model_signing_verifies_it(
    stock_registry: StockRegistry, pushed: Pushed, tmp_path: Path
) -> None:
    public_key = tmp_path / "registry.pub"
    shutil.copy(pushed.home / "keys" / "registry.key.pub", public_key)
    out = tmp_path / "pulled"
    elsewhere = {"MODELWARD_HOME": str(tmp_path / "no-registry"), "MODELWARD_ACTOR": "bob"}
    source = str(pushed.result["pull_reference"])
    done = run_modelward(
        "oci", "pull", source, "--out", str(out), "--trust", str(public_key), "--json",
        env=elsewhere,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verified"] and result["files"] == 3
    for name in ("model.safetensors", "config.json", "tokenizer/tokenizer.json"):
        assert (out / name).read_bytes() == (pushed.bundle / name).read_bytes()
    verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(
        out, Path(result["signature"])
    )


def test_bytes_changed_inside_the_registry_are_caught_and_nothing_is_written(
    stock_registry: StockRegistry,
    pushed: Pushed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digest = pushed.digest
    manifest = stock_registry.get(f"/v2/models/tiny/manifests/{digest}").json()
    weights = next(x for x in manifest["layers"] if x["mediaType"] == oci.WEIGHT_RAW)
    stored = stock_registry.blob_file(weights["digest"])
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-4] + b"\x00\x00\x80\x7f")  # the last float becomes inf
        out = tmp_path / "pulled"
        source = f"{stock_registry.host}/models/tiny@{digest}"
        done = _cli(pushed, monkeypatch, capsys, "oci", "pull", source, "--out", str(out))
        assert_clean_error(done, 1, "hashing to")
        assert not out.exists() and not (tmp_path / "pulled.sig").exists()
        assert [p.name for p in tmp_path.iterdir()] == []
    finally:
        stored.write_bytes(original)


def test_cli_errors_name_the_problem(
    stock_registry: StockRegistry,
    pushed: Pushed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(pushed, monkeypatch, capsys, *args)

    tagged = f"{stock_registry.host}/models/tiny:v1"
    assert_clean_error(cli("oci", "pull", tagged, "--out", str(tmp_path / "a")), 2, "by digest")
    missing = f"{stock_registry.host}/models/tiny@sha256:{'0' * 64}"
    assert_clean_error(cli("oci", "pull", missing, "--out", str(tmp_path / "b")), 2, "not found")
    closed = f"127.0.0.1:{_free_port()}/models/tiny:v1"
    result = cli("oci", "push", "models:/tiny/1", closed, "--json")
    assert_clean_error(result, 4, "cannot reach")
    assert json.loads(result.stdout)["error"]["exit_code"] == 4
    assert_clean_error(cli("oci", "push", "models:/tiny/9", tagged), 2, "tiny")
    pinned = str(pushed.result["pull_reference"])
    monkeypatch.setenv("MODELWARD_HOME", str(tmp_path / "none"))
    code = main(["oci", "pull", pinned, "--out", str(tmp_path / "c")])
    assert code == 2 and "--trust KEYFILE" in capsys.readouterr().err
    monkeypatch.setenv("MODELWARD_HOME", str(pushed.home))
    assert list(tmp_path.iterdir()) == []
