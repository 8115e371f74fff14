"""The console's runtime page on real runtime records: OTLP JSON spans ingested by the telemetry
service, a canary with two signed judgements, drift between two releases, and an alert
delivered on its second attempt. In-process (TestClient over https://testserver), signed in
with sessions made for principals that API tokens authenticate (one limited to a model
pattern), as the sign-in form would.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.console_world import RuntimeSeed, World, build_world, seed_runtime

from modelward.app import ServerRegistry, ServerSettings
from modelward.interfaces.http.server import create_app
from modelward.services.context import open_registry
from modelward.services.registry_init import initialize_registry
from modelward.services.tokens import TokenService
from modelward.services.users import UserService
from modelward.services.web_sessions import WebSessionService

BASE = "https://testserver"
SESSION = "__Host-modelward_session"


@dataclass
class Served:
    registry: ServerRegistry
    home: Path

    def client(self, user: str, model_pattern: str | None = None) -> TestClient:
        token = TokenService(self.registry.ctx, actor="root").create(
            user, model_pattern=model_pattern
        )
        principal = self.registry.authenticate(token.token)
        session = WebSessionService(self.registry.ctx).start(principal, self.registry.now())
        client = TestClient(create_app(self.registry), base_url=BASE)
        client.cookies.set(SESSION, session.secret)
        return client

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.home / "registry.db")
        try:
            rows = conn.execute(statement).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()


def _serve(world_home: Path, root: Path, ctx: object) -> ServerRegistry:
    return ServerRegistry(ServerSettings(home=world_home, spool_dir=root), ctx)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, RuntimeSeed]]:
    root = tmp_path_factory.mktemp("runtime")
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
            patch.delenv(variable, raising=False)
        patch.setenv("MODELWARD_HOME", str(root / "home"))
        patch.setenv("MODELWARD_ACTOR", "root")
        world: World = build_world(root)
        seed = seed_runtime(world, promote_candidate=True)
        registry = _serve(world.home, root, world.ctx)
        try:
            yield Served(registry, world.home), seed
        finally:
            registry.close()


def _article(html: str, env: str, model: str) -> str:
    found = re.search(
        rf'<article class="runtime" data-testid="runtime-{env}-{model}">(.*?)</article>',
        html,
        re.S,
    )
    assert found, f"no runtime panel of {model} in {env}"
    return found.group(1)


def _rows(html: str, testid: str) -> list[list[str]]:
    table = re.search(rf'<table data-testid="{testid}">(.*?)</table>', html, re.S)
    assert table, f"no table {testid}"
    body = table.group(1).split("<tbody>", 1)[1]
    return [
        [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_canary_shows_candidate_baseline_state_and_every_signed_judgement(
    seeded: tuple[Served, RuntimeSeed],
) -> None:
    served, seed = seeded
    assert seed.verdicts == ("inconclusive", "rollback")
    html = served.client("vic").get("/ui/runtime").text
    panel = _article(html, "staging", "llama-chat")
    assert "models:/llama-chat/2" in panel and "models:/llama-chat/1" in panel
    assert f"release <code>{seed.baseline_release_id}</code>" in panel
    assert re.search(r'data-testid="canary-state">running; latest verdict <strong>rollback', panel)
    verdicts = re.findall(r'<tr data-testid="verdict">.*?class="verdict-(\w+)"', panel, re.S)
    assert verdicts == ["rollback", "inconclusive"]  # newest first
    rows = _rows(panel, "canary-verdicts")
    # the newest judgement saw all 120 requests per arm: latency degraded, p (Holm) = 0
    latency = next(r for r in rows if "latency" in r and "degraded" in r)
    assert "120 / 120" in latency
    assert "0.32 / 0.22" in latency  # mean seconds, canary / baseline
    # the first saw 42 per arm, fewer than the 50 asked for
    assert any(r[-7:-4] == ["error", "insufficient", "42 / 42"] for r in rows)
    assert 'id="rt-1-1-verdicts"' in panel  # the verdict-over-time chart
    assert '"alpha"' in panel and '"p degraded (Holm), latency"' in panel


def test_requests_per_release_are_charted_and_totalled(
    seeded: tuple[Served, RuntimeSeed],
) -> None:
    served, _ = seeded
    html = served.client("vic").get("/ui/runtime").text
    panel = _article(html, "staging", "llama-chat")
    totals = _rows(panel, "release-totals")
    assert totals == [
        ["v1 rel-1", "120", "220.0 ms", "50.0 ms", "5.0%", "0.0%", "101.0"],
        ["v2 rel-2", "120", "320.0 ms", "80.0 ms", "10.0%", "2.5%", "150.0"],
    ]
    for signal in ("latency", "ttft", "refusal_rate", "error_rate", "output_tokens"):
        assert f'id="rt-1-1-{signal}"' in panel
    data = re.search(
        r'<script type="application/json" id="rt-1-1-latency-data">(.*?)</script>', panel, re.S
    )
    assert data is not None
    import json

    chart = json.loads(data.group(1))
    assert chart["time_x"] is True and len(chart["x"]) == 48  # 24 h in 30-minute windows
    assert set(chart["series"]) == {"v1 · rel-1", "v2 · rel-2"}
    values = [v for v in chart["series"]["v2 · rel-2"] if v is not None]
    assert len(values) >= 2 and all(300 <= v <= 340 for v in values)
    # an hour's range in minute windows keeps none of these (they ended an hour ago or more)
    short = _article(served.client("vic").get("/ui/runtime?range=1h").text, "staging", "llama-chat")
    assert 'data-testid="telemetry-empty"' in short and "last 1h" in short
    assert served.client("vic").get("/ui/runtime?range=2y").status_code == 400


def test_drift_against_the_release_before_with_its_thresholds(
    seeded: tuple[Served, RuntimeSeed], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, _ = seeded
    client = served.client("vic")
    params = {"model": "llama-chat", "environment": "staging"}
    # 120 requests a release are too few for the thresholds (insufficient data) ...
    short = _rows(client.get("/ui/runtime/drift", params=params).text, "drift")
    assert all("too few requests" in row[-1] for row in short)
    nowhere = client.get("/ui/runtime/drift", params={**params, "environment": "nowhere"})
    assert nowhere.status_code == 404
    # ... the rendering of a judged panel, with the minimum lowered for this test
    monkeypatch.setattr("modelward.runtime.drift.MIN_SAMPLES", 100)
    page = _article(client.get("/ui/runtime").text, "staging", "llama-chat")
    # the page loads drift by its own request (htmx), and links to it without JavaScript
    link = "/ui/runtime/drift?model=llama-chat&amp;environment=staging"
    assert f'hx-get="{link}"' in page and f'href="{link}"' in page
    answer = client.get(
        "/ui/runtime/drift", params={"model": "llama-chat", "environment": "staging"}
    )
    assert answer.status_code == 200
    panel = answer.text
    assert "<code>rel-2</code> against <code>rel-1</code>" in panel
    assert 'data-testid="drift-state">drift' in panel
    assert "PSI (alert ≥ 0.2)" in panel and "(≥ 0.1)" in panel
    rows = {r[0]: r for r in _rows(panel, "drift")}
    assert rows["latency"][1] == "120 / 120" and rows["latency"][-1].startswith("drift")
    assert rows["output_tokens"][4] == "0.485"  # W1 / baseline mean: 49 / 101
    assert rows["finish_reason"][-1].startswith("insufficient")


def test_alert_deliveries_show_webhook_status_and_attempts_never_the_secret(
    seeded: tuple[Served, RuntimeSeed],
) -> None:
    served, _ = seeded
    html = served.client("vic").get("/ui/runtime").text
    rows = _rows(html, "alerts")
    assert len(rows) == 1
    sent, event, webhook, status, http, attempts = rows[0][:6]
    assert (event, webhook, status, http, attempts) == (
        "canary.rollback",
        "#1 ops-pager",
        "delivered",
        "200",
        "2",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", sent)
    from tests.console_world import WEBHOOK_SECRET

    assert WEBHOOK_SECRET.hex() not in html and WEBHOOK_SECRET.decode() not in html
    assert "hooks.example.org" not in html


def test_a_viewer_limited_to_another_model_pattern_sees_none_of_it(
    seeded: tuple[Served, RuntimeSeed],
) -> None:
    served, seed = seeded
    answer = served.client("vic", model_pattern="mistral-*").get("/ui/runtime")
    assert answer.status_code == 200
    html = answer.text
    assert "llama-chat" not in html
    assert 'data-testid="no-runtime"' in html
    assert 'data-testid="alerts-hidden"' in html and 'data-testid="alerts"' not in html
    assert "ops-pager" not in html and seed.baseline_release_id not in html
    limited = served.client("vic", model_pattern="mistral-*")
    drift = limited.get("/ui/runtime/drift?model=llama-chat&environment=staging")
    assert drift.status_code == 403 and "rel-1" not in drift.text
    # a pattern that matches it sees it
    mine = served.client("vic", model_pattern="llama-*").get("/ui/runtime").text
    assert 'data-testid="runtime-staging-llama-chat"' in mine
    assert 'data-testid="alerts-hidden"' in mine


def test_a_tampered_verdict_is_shown_as_untrusted_not_as_data(
    seeded: tuple[Served, RuntimeSeed],
) -> None:
    served, _ = seeded
    served.sql("UPDATE canary_verdicts SET verdict = 'promote' WHERE id = 1")
    try:
        panel = _article(served.client("vic").get("/ui/runtime").text, "staging", "llama-chat")
    finally:
        served.sql("UPDATE canary_verdicts SET verdict = 'inconclusive' WHERE id = 1")
    assert 'data-testid="canary-problem"' in panel and "not trusted" in panel
    assert 'data-testid="canary-verdicts"' not in panel
    # the telemetry panel does not depend on it
    assert 'data-testid="release-totals"' in panel


def test_an_empty_registry_says_so_in_every_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELWARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELWARD_ACTOR", "root")
    initialize_registry(tmp_path / "home")
    ctx = open_registry(tmp_path / "home")
    UserService(ctx, actor="root").add("vic", "viewer")
    served = Served(_serve(tmp_path / "home", tmp_path, ctx), tmp_path / "home")
    try:
        html = served.client("vic").get("/ui/runtime").text
    finally:
        served.registry.close()
    assert 'data-testid="no-runtime"' in html
    assert html.count('data-testid="env-empty"') == 3  # staging, canary, production
    assert 'data-testid="alerts-empty"' in html
    assert "<canvas" not in html and 'data-chart="' not in html


def test_a_model_released_without_runtime_records_shows_each_empty_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELWARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELWARD_ACTOR", "root")
    world = build_world(tmp_path)
    served = Served(_serve(world.home, tmp_path, world.ctx), world.home)
    try:
        client = served.client("vic")
        html = client.get("/ui/runtime").text
        drift = client.get("/ui/runtime/drift?model=llama-chat&environment=staging").text
    finally:
        served.registry.close()
    panel = _article(html, "staging", "llama-chat")
    for empty in ("canary-empty", "telemetry-empty"):
        assert f'data-testid="{empty}"' in panel, empty
    assert 'data-testid="drift-empty"' in drift
    assert 'data-testid="no-runtime"' not in html
