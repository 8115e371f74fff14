"""The witness as a separate process on 127.0.0.1 and the registry's CLI talking to it: cosigned
growth, `audit verify --witnesses N`, a split view refused over HTTP and logged, a wrong log key
refused, state kept across a restart, one process per state folder; and the offline proof
commands with tampered inputs. Every wait is bounded."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward

from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_checkpoint,
    parse_tlog_proof,
    sign_checkpoint,
)
from modelward.core.witness_protocol import AddCheckpointRequest
from modelward.interfaces.witness_http import http_transport
from modelward.signing.keys import load_private_key

START_TIMEOUT = 60.0


@dataclass
class Env:
    home: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_modelward(*args, env=self.env)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    for name in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL", "MODELWARD_URL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    reg = Env(home, {"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": "alice"})
    reg.ok("init")
    return reg


class Witness:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        exe = Path(sys.executable).with_name("modelward")
        self.log_path = log
        self._stderr = log.open("ab")
        self.process = subprocess.Popen(
            [str(exe), "witness", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        self.url = self._read_url()

    def _read_url(self) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=START_TIMEOUT):
            self.stop()
            pytest.fail(f"the witness did not start within {START_TIMEOUT} s")
        line = self.process.stdout.readline().decode()
        selector.close()
        if "listening on " not in line:
            self.stop()
            pytest.fail(f"the witness did not start: {line!r} {self.log_path.read_text()}")
        return line.split("listening on ", 1)[1].split(" ", 1)[0]

    def post(self, body: str) -> tuple[int, str, str]:
        reply = http_transport(timeout=10)(self.url + "/add-checkpoint", body.encode())
        return reply.status, reply.content_type, reply.body.decode()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        return self.process.returncode


@pytest.fixture
def witness_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Witness] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Witness:
        witness = Witness(list(args), env or {}, tmp_path / f"witness-{len(started)}.log")
        started.append(witness)
        return witness

    yield start
    for witness in started:
        witness.stop()


def _keygen(registry: Env, tmp_path: Path, name: str) -> Path:
    key = tmp_path / f"{name.replace('/', '_')}.key"
    registry.ok("witness", "keygen", "--out", str(key), "--name", name)
    return key


def _ledger_vkey(registry: Env) -> str:
    return registry.ok("audit", "key").stdout.strip()


def test_witness_process_cosigns_growth_and_verify_counts_it(
    registry: Env, tmp_path: Path, witness_factory: object
) -> None:
    key = _keygen(registry, tmp_path, "w1.example")
    start = witness_factory  # type: ignore[assignment]
    witness = start(
        "--init", "--key", str(key), "--state", str(tmp_path / "state"),
        "--log", _ledger_vkey(registry),
    )  # type: ignore[operator]  # fmt: skip
    registry.ok("audit", "witness", "add", "w1.example", witness.url, str(key) + ".vkey")
    assert (
        registry.run(
            "audit", "witness", "add", "w1.example", witness.url, str(key) + ".vkey"
        ).returncode
        == 2
    )
    listed = json.loads(registry.ok("audit", "witness", "list", "--json").stdout)
    assert [w["name"] for w in listed] == ["w1.example"]
    first = json.loads(
        registry.ok("audit", "checkpoint", "--witness", "w1.example", "--json").stdout
    )
    assert first["ok"] and first["witnesses"][0]["ok"]
    registry.ok("users", "add", "bob", "--role", "reviewer")
    cp = tmp_path / "cp.txt"
    second = json.loads(
        registry.ok("audit", "checkpoint", "--all-witnesses", "--out", str(cp), "--json").stdout
    )
    assert second["checkpoint"]["size"] == first["checkpoint"]["size"] + 1
    assert "— w1.example " in cp.read_text()
    verified = registry.ok("audit", "verify", "--witnesses", "1")
    assert "w1.example" in verified.stdout
    result = registry.run("audit", "verify", "--witnesses", "2")
    assert result.returncode == 1 and "2 required" in result.stdout
    # the cosigned checkpoint pins an older proof offline, with the witness's key required
    proof = tmp_path / "p0"
    registry.ok("audit", "proof", "0", "--out", str(proof))
    consistency = tmp_path / "c"
    embedded = tmp_path / "embedded"
    embedded.write_text(parse_tlog_proof(proof.read_text()).checkpoint)
    registry.ok("audit", "consistency", str(embedded), str(cp), "--out", str(consistency))
    pub = str(registry.home / "keys" / "ledger.key.pub")
    ok = registry.ok(
        "audit",
        "verify-proof",
        str(proof),
        "--key",
        pub,
        "--checkpoint",
        str(cp),
        "--consistency",
        str(consistency),
        "--witness-key",
        str(key) + ".vkey",
        "--witnesses",
        "1",
    )
    assert "cosigned by 1 distinct trusted witness" in ok.stdout
    # a new checkpoint without witnesses: the latest is no longer vouched for
    registry.ok("users", "add", "carol", "--role", "reviewer")
    registry.ok("audit", "checkpoint")
    assert registry.run("audit", "verify", "--witnesses", "1").returncode == 1
    assert witness.stop() == 0


def test_split_view_refused_logged_and_state_survives_restart(
    registry: Env, tmp_path: Path, witness_factory: object
) -> None:
    start = witness_factory
    key = _keygen(registry, tmp_path, "w1.example")
    state = tmp_path / "state"
    args = ("--key", str(key), "--state", str(state), "--log", _ledger_vkey(registry))
    witness = start("--init", *args)  # type: ignore[operator]
    registry.ok("audit", "witness", "add", "w1.example", witness.url, str(key) + ".vkey")
    registry.ok("users", "add", "bob", "--role", "reviewer")
    cosigned = json.loads(
        registry.ok("audit", "checkpoint", "--witness", witness.url, "--json").stdout
    )
    size = cosigned["checkpoint"]["size"]
    origin = cosigned["checkpoint"]["origin"]
    ledger_key = load_private_key(registry.home / "keys" / "ledger.key")
    other_view = sign_checkpoint(Checkpoint(origin, size, bytes(32)), origin, ledger_key)  # type: ignore[arg-type]
    status, content_type, body = witness.post(AddCheckpointRequest(size, (), other_view).to_text())
    assert status == 409 and content_type == "text/plain" and "split view" in body
    [entry] = [json.loads(line) for line in (state / "misbehaviour.jsonl").read_text().splitlines()]
    assert entry["kind"] == "split-view" and entry["offered"] == other_view
    # a second process on the same state folder is refused
    second = run_modelward("witness", "serve", *args, "--port", "0", timeout=60)
    assert second.returncode != 0 and "another witness" in second.stderr
    assert witness.stop() == 0
    assert "split-view" in witness.log_path.read_text()
    # restarted on the same state (and port): it remembers the size it cosigned
    port = witness.url.rsplit(":", 1)[1]
    restarted = start(*args, "--port", port)  # type: ignore[operator]
    honest = registry.ok("audit", "checkpoint").stdout
    status, content_type, body = restarted.post(AddCheckpointRequest(0, (), honest).to_text())
    assert (status, content_type, body) == (409, "text/x.tlog.size", f"{size}\n")
    registry.ok("users", "add", "carol", "--role", "reviewer")
    again = json.loads(
        registry.ok("audit", "checkpoint", "--witness", "w1.example", "--json").stdout
    )
    assert again["ok"] and again["checkpoint"]["size"] == size + 1


def test_wrong_log_key_is_refused(registry: Env, tmp_path: Path, witness_factory: object) -> None:
    start = witness_factory
    key = _keygen(registry, tmp_path, "w1.example")
    other_home = tmp_path / "other"
    run_modelward("init", env={"MODELWARD_HOME": str(other_home), "MODELWARD_ACTOR": "eve"})
    foreign = run_modelward("audit", "key", env={"MODELWARD_HOME": str(other_home)}).stdout.strip()
    origin = _ledger_vkey(registry).split("+", 1)[0]
    other_pub = str(other_home / "keys" / "ledger.key.pub")
    witness = start(
        "--init",
        "--key",
        str(key),
        "--state",
        str(tmp_path / "s"),
        "--log",
        f"{origin}={other_pub}",
        "--log",
        foreign,
    )  # type: ignore[operator]
    registry.ok("audit", "witness", "add", "w1.example", witness.url, str(key) + ".vkey")
    result = registry.run("audit", "checkpoint", "--witness", "w1.example")
    assert result.returncode == 1 and "refused (403)" in result.stdout


def test_unreachable_witness_is_reported(registry: Env, tmp_path: Path) -> None:
    key = _keygen(registry, tmp_path, "w1.example")
    registry.ok("audit", "witness", "add", "w1.example", "http://127.0.0.1:9/", str(key) + ".vkey")
    result = registry.run("audit", "checkpoint", "--witness", "w1.example")
    assert result.returncode == 1 and "unreachable" in result.stdout
    assert_clean_error(
        registry.run("audit", "checkpoint", "--witness", "nobody"), 2, "not a configured witness"
    )


def test_offline_proof_commands_name_tampering(registry: Env, tmp_path: Path) -> None:
    registry.ok("users", "add", "bob", "--role", "reviewer")
    proof = tmp_path / "proof"
    registry.ok("audit", "proof", "1", "--out", str(proof))
    old_cp = tmp_path / "old"
    registry.ok("audit", "checkpoint", "--out", str(old_cp))
    registry.ok("users", "add", "carol", "--role", "reviewer")
    new_cp = tmp_path / "new"
    registry.ok("audit", "checkpoint", "--out", str(new_cp))
    consistency = tmp_path / "consistency"
    registry.ok("audit", "consistency", str(old_cp), str(new_cp), "--out", str(consistency))
    pub = str(registry.home / "keys" / "ledger.key.pub")
    vkey = _ledger_vkey(registry)
    registry.ok("audit", "verify-proof", str(proof), "--key", vkey)
    registry.ok("audit", "verify-consistency", str(consistency), "--key", pub)
    out = registry.ok(
        "audit",
        "verify-proof",
        str(proof),
        "--key",
        pub,
        "--checkpoint",
        str(new_cp),
        "--consistency",
        str(consistency),
        "--json",
    )
    assert json.loads(out.stdout)["anchored"] == "consistent"
    assert_clean_error(
        registry.run(
            "audit", "verify-proof", str(proof), "--key", pub, "--checkpoint", str(new_cp)
        ),
        1,
        "consistency proof",
    )
    # a flipped byte in a proof hash
    lines = proof.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("index ")) + 1
    lines[at] = ("B" if lines[at][0] != "B" else "C") + lines[at][1:]
    flipped = tmp_path / "flipped"
    flipped.write_text("\n".join(lines))
    result = registry.run("audit", "verify-proof", str(flipped), "--key", pub)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    # swapped: the consistency file with its checkpoints exchanged
    text = consistency.read_text()
    head, old_block, new_block = text.split("\n\n", 1)[0], *_notes(text)
    swapped = tmp_path / "swapped"
    old_size, new_size = (
        json.loads(
            registry.ok(
                "audit", "verify-consistency", str(consistency), "--key", pub, "--json"
            ).stdout
        )[k]["size"]
        for k in ("old", "new")
    )
    swapped.write_text(
        head.replace(f"old {old_size}\nnew {new_size}", f"old {new_size}\nnew {old_size}")
        + "\n\n"
        + new_block
        + "\n"
        + old_block
    )
    assert_clean_error(
        registry.run("audit", "verify-consistency", str(swapped), "--key", pub), 1, "older"
    )
    # checkpoint from another log
    other_home = tmp_path / "other"
    run_modelward("init", env={"MODELWARD_HOME": str(other_home), "MODELWARD_ACTOR": "eve"})
    foreign_cp = tmp_path / "foreign"
    run_modelward(
        "audit", "checkpoint", "--out", str(foreign_cp), env={"MODELWARD_HOME": str(other_home)}
    )
    assert_clean_error(
        registry.run(
            "audit", "verify-proof", str(proof), "--key", pub, "--checkpoint", str(foreign_cp)
        ),
        1,
        "given checkpoint",
    )
    foreign_pub = str(other_home / "keys" / "ledger.key.pub")
    assert_clean_error(
        registry.run("audit", "verify-proof", str(proof), "--key", foreign_pub), 1, "not signed"
    )
    # malformed input and missing files are usage errors
    (tmp_path / "junk").write_text("junk\n")
    assert_clean_error(
        registry.run("audit", "verify-proof", str(tmp_path / "junk"), "--key", pub), 2, "tlog-proof"
    )
    assert_clean_error(
        registry.run("audit", "verify-consistency", str(tmp_path / "none"), "--key", pub),
        2,
        "no such",
    )
    assert_clean_error(
        registry.run("audit", "verify-proof", str(proof), "--key", "nokey"), 2, "no such key"
    )


def _notes(text: str) -> tuple[str, str]:
    blocks = text[:-1].split("\n\n")
    return blocks[1] + "\n\n" + blocks[2] + "\n", blocks[3] + "\n\n" + blocks[4] + "\n"


def test_verify_proof_uses_the_origin_to_pin_the_log(registry: Env, tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    registry.ok("audit", "proof", "0", "--out", str(proof))
    pub = str(registry.home / "keys" / "ledger.key.pub")
    assert_clean_error(
        registry.run("audit", "verify-proof", str(proof), "--key", pub, "--origin", "someone/else"),
        1,
        "someone/else",
    )
    origin = _ledger_vkey(registry).split("+", 1)[0]
    registry.ok("audit", "verify-proof", str(proof), "--key", pub, "--origin", origin)
    verifier = NoteVerifier.from_verifier_key(_ledger_vkey(registry))
    embedded = parse_tlog_proof(proof.read_text()).checkpoint
    assert open_checkpoint(embedded, verifier).size >= 1
