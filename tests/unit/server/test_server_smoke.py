from __future__ import annotations

from pathlib import Path

from tests.unit.registry.bundles import make_bundle
from tests.unit.server.conftest import Served

from modelward.client import Client


def test_push_pull_roundtrip(served: Served, tmp_path: Path) -> None:
    client = Client(
        "http://testserver",
        served.tokens["trainer"],
        http=served.http,
        known_registries=tmp_path / "known.json",
    )
    bundle = make_bundle(tmp_path / "b")
    pushed = client.push(bundle, "llama")
    assert pushed["created"] and pushed["version"] == 1
    out = tmp_path / "out"
    client.pull("models:/llama/1", out)
    assert (out / "config.json").read_bytes() == (bundle / "config.json").read_bytes()


def test_unknown_paths_and_methods_answer_in_the_error_shape(served: Served) -> None:
    missing = served.http.get("/api/v1/no-such-endpoint")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFoundError"
    wrong = served.http.delete("/api/v1/whoami", headers=served.headers("viewer"))
    assert wrong.status_code == 405 and wrong.json()["error"]["exit_code"] == 2
    page = served.http.get("/ui/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
