"""`modelward serve` in a subprocess on loopback, and the CLI against it with MODELWARD_URL:
the same output and exit codes as embedded, identity from the token only, OIDC CI tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.server.harness import Server, cli, create_token, remote_env, running
from tests.oidc_issuer import AUDIENCE, TestIssuer, serve_jwks
from tests.unit.registry.bundles import bundle_files, make_bundle

USERS = {"tina": "trainer", "rita": "reviewer", "rex": "releaser", "vic": "viewer"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Server]]:
    root = tmp_path_factory.mktemp("served")
    local = {"MODELWARD_HOME": str(root / "home"), "MODELWARD_ACTOR": "root"}
    assert cli(local, "init").returncode == 0
    for name, role in USERS.items():
        assert cli(local, "users", "add", name, "--role", role).returncode == 0
    with running(local, root / "server.log") as server:
        print(f"cold start to ready: {server.started_in:.2f}s")
        yield local, server


def _as(world: tuple[dict[str, str], Server], user: str, tmp: Path) -> dict[str, str]:
    local, server = world
    return remote_env(server, create_token(local, user), tmp / f"home-{user}")


def test_remote_cli_matches_embedded(world: tuple[dict[str, str], Server], tmp_path: Path) -> None:
    local, _ = world
    tina = _as(world, "tina", tmp_path)
    bundle = make_bundle(tmp_path / "bundle")
    pushed = cli(tina, "push", str(bundle), "--model", "llama", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["created"] is True
    again = cli(tina, "push", str(bundle), "--model", "llama")
    assert again.returncode == 0 and "already stored" in again.stdout
    vic = _as(world, "vic", tmp_path)
    for args in (
        ("models", "list"),
        ("versions", "list", "llama"),
        ("show", "models:/llama/1"),
        ("show", "models:/llama/1", "--json"),
        ("decisions", "models:/llama/1", "--json"),
    ):
        remote, embedded = cli(vic, *args), cli(local, *args)
        assert remote.returncode == embedded.returncode == 0, (args, remote.stderr)
        assert remote.stdout == embedded.stdout, args
    pulled = cli(vic, "pull", "models:/llama/1", "--out", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert bundle_files(tmp_path / "out") == bundle_files(bundle)
    assert "verified" in pulled.stdout

    rita = _as(world, "rita", tmp_path)
    approved = cli(rita, "approve", "models:/llama/1", "--for", "staging")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith("rita approved models:/llama/1")
    rex = _as(world, "rex", tmp_path)
    promoted = cli(rex, "promote", "models:/llama/1", "--to", "staging", "--json")
    assert promoted.returncode in (0, 1), promoted.stderr
    decision = json.loads(promoted.stdout)
    assert decision["allowed"] is (promoted.returncode == 0)
    for args in (("releases", "staging", "--model", "llama"), ("audit", "log")):
        remote, embedded = cli(vic, *args), cli(local, *args)
        assert remote.returncode == embedded.returncode == 0, (args, remote.stderr)
        assert remote.stdout == embedded.stdout, args
    proof = cli(vic, "audit", "proof", "1", "--out", str(tmp_path / "proof.txt"))
    assert proof.returncode == 0, proof.stderr
    assert (tmp_path / "proof.txt").read_text().startswith("c2sp.org/tlog-proof")
    who = cli(vic, "whoami", "--json")
    assert json.loads(who.stdout)["actor"] == "vic"


def test_a_trainer_token_with_modelward_actor_admin_is_still_a_trainer(
    world: tuple[dict[str, str], Server], tmp_path: Path
) -> None:
    tina = _as(world, "tina", tmp_path)  # MODELWARD_ACTOR=admin is set in its environment
    assert tina["MODELWARD_ACTOR"] == "admin"
    cli(tina, "push", str(make_bundle(tmp_path / "b", seed=7)), "--model", "self-made")
    for args, fragment in (
        (("approve", "models:/self-made/1", "--for", "staging"), "may not approve"),
        (("promote", "models:/self-made/1", "--to", "staging"), "may not promote"),
        (("users", "add", "mallory", "--role", "admin"), "may not add users"),
    ):
        result = cli(tina, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr
    users = cli(world[0], "users", "list")
    assert "mallory" not in users.stdout


def test_bad_tokens_and_unreachable_servers_exit_cleanly(
    world: tuple[dict[str, str], Server], tmp_path: Path
) -> None:
    _, server = world
    env = remote_env(server, "mwt_0123456789abcdef_nope", tmp_path / "h")
    result = cli(env, "models", "list")
    assert result.returncode == 1 and "unknown token" in result.stderr
    env["MODELWARD_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    result = cli(env, "models", "list")
    assert result.returncode == 4
    assert "cannot reach the server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_registry_host_commands_refuse_while_remote(
    world: tuple[dict[str, str], Server], tmp_path: Path
) -> None:
    env = _as(world, "vic", tmp_path)
    for args in (("init",), ("tokens", "list"), ("fsck",)):
        result = cli(env, *args)
        assert result.returncode == 2, args
        assert "not available against a server" in result.stderr


def test_remote_cli_start_up_imports_no_database_code(
    world: tuple[dict[str, str], Server], tmp_path: Path
) -> None:
    env = _as(world, "vic", tmp_path)
    script = (
        "import sys\n"
        "from modelward.interfaces.cli import main\n"
        "code = main(['whoami', '--json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic',"
        " 'fastapi', 'uvicorn', 'boto3'))\n"
        "print('HEAVY', heavy, code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY [] 0" in result.stdout


def test_a_ci_job_authenticates_with_its_oidc_token(
    world: tuple[dict[str, str], Server], tmp_path: Path
) -> None:
    local, server = world
    issuer = TestIssuer("https://ci.example")
    with serve_jwks(issuer) as jwks_url:
        added = cli(
            local, "oidc", "add", issuer.url, "--audience", AUDIENCE, "--jwks-url", jwks_url
        )
        assert added.returncode == 0, added.stderr
        assert cli(local, "users", "add", "ci-train", "--role", "trainer").returncode == 0
        mapped = cli(
            local,
            "oidc",
            "map",
            issuer.url,
            "--claim",
            "repository=org/repo",
            "--claim",
            "ref=refs/heads/main",
            "--as",
            "ci-train",
        )
        assert mapped.returncode == 0, mapped.stderr
        job = remote_env(server, issuer.mint(), tmp_path / "job")
        pushed = cli(job, "push", str(make_bundle(tmp_path / "b", seed=9)), "--model", "ci")
        assert pushed.returncode == 0, pushed.stderr
        assert cli(job, "approve", "models:/ci/1", "--for", "staging").returncode == 1
        for case, token in issuer.hostile().items():
            result = cli({**job, "MODELWARD_TOKEN": token}, "whoami")
            assert result.returncode == 1, (case, result.stderr)
    log = cli(local, "audit", "log", "--json")
    events = json.loads(log.stdout)
    push = next(
        e for e in events if e["action"] == "version.push" and e["details"]["model"] == "ci"
    )
    assert push["actor"] == "ci-train"
    assert push["details"]["auth"]["iss"] == issuer.url
    assert push["details"]["auth"]["sub"] == issuer.claims()["sub"]


@pytest.mark.slow
def test_signatures_provenance_attachments_and_drills_go_over_the_server(
    world: tuple[dict[str, str], Server], tmp_path: Path
) -> None:
    local, _ = world
    tina, rita, rex = (_as(world, user, tmp_path) for user in ("tina", "rita", "rex"))
    key = tmp_path / "uploader"
    assert cli(local, "keys", "generate", "--out", str(key)).returncode == 0
    trusted = cli(local, "keys", "trust", f"{key}.pub", "--name", "tina-laptop")
    assert trusted.returncode == 0, trusted.stderr
    bundle = make_bundle(tmp_path / "signed", seed=31)
    signature = tmp_path / "signed.sig"
    assert cli(local, "sign", str(bundle), "--key", str(key)).returncode == 0
    pushed = cli(
        tina, "push", str(bundle), "--model", "signed-llm", "--json",
        "--signature", str(signature), "--public-key", f"{key}.pub",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    shown = json.loads(cli(local, "show", "models:/signed-llm/1", "--json").stdout)
    assert "uploader-signature" in json.dumps(shown)
    # a signature over other bytes: refused over the server as embedded, same exit and message
    other = make_bundle(tmp_path / "other", seed=32)
    args = ("--signature", str(signature), "--public-key", f"{key}.pub")
    remote = cli(tina, "push", str(other), "--model", "signed-llm", *args)
    embedded = cli(local, "push", str(other), "--model", "signed-llm", *args)
    assert remote.returncode == embedded.returncode == 1, (remote.stderr, embedded.stderr)
    assert remote.stderr == embedded.stderr
    # provenance is sent and checked by the server: one unsigned by a known key is refused
    provenance = tmp_path / "unsigned.dsse.json"
    provenance.write_text(json.dumps({"payloadType": "x", "payload": "e30=", "signatures": []}))
    remote = cli(tina, "push", str(other), "--model", "prov-llm", "--provenance", str(provenance))
    embedded = cli(
        local, "push", str(other), "--model", "prov-llm", "--provenance", str(provenance)
    )
    assert remote.returncode == embedded.returncode != 0, remote.stderr
    assert remote.stderr == embedded.stderr
    # promotions carry prompt templates and policy files; a drill rehearses the rollback
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")
    policy = tmp_path / "guard.yaml"
    policy.write_text("rules: []\n")
    for number, seed in ((1, 33), (2, 34)):
        if number == 2:
            second = make_bundle(tmp_path / "v2", seed=seed)
            assert cli(local, "sign", str(second), "--key", str(key)).returncode == 0
            push = cli(
                tina, "push", str(second), "--model", "signed-llm",
                "--signature", str(tmp_path / "v2.sig"), "--public-key", f"{key}.pub",
            )  # fmt: skip
            assert push.returncode == 0, push.stderr
        uri = f"models:/signed-llm/{number}"
        assert cli(rita, "approve", uri, "--for", "staging").returncode == 0
        promoted = cli(
            rex, "promote", uri, "--to", "staging", "--json",
            "--prompt-template", str(template), "--policy-file", str(policy),
        )  # fmt: skip
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        state = json.loads(promoted.stdout)["release"]["state"]
        assert list(state["prompt_templates"]) == ["chat.jinja"]
        assert list(state["policy_files"]) == ["guard.yaml"]
    remote = cli(rex, "releases", "staging", "--model", "signed-llm")
    embedded = cli(local, "releases", "staging", "--model", "signed-llm")
    assert remote.returncode == embedded.returncode == 0
    assert remote.stdout == embedded.stdout and "chat.jinja" in remote.stdout
    drilled = cli(rex, "rollback", "signed-llm", "--env", "staging", "--drill")
    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
    assert drilled.stdout.startswith("rollback drill of models:/signed-llm in staging: passed")
    as_json = cli(rex, "rollback", "signed-llm", "--env", "staging", "--drill", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["passed"] is True
