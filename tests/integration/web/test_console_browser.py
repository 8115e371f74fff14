"""The web console in headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright),
against `modelward serve --workers 2` on 127.0.0.1 (so a session made by one process is used by
the other) and a test OIDC provider on 127.0.0.1.

One journey, as the people who use it: a reviewer signs in with OIDC, finds a model, opens a
version and approves it; a releaser (signed in with an API token) promotes it; a trainer sees
no button and is denied when forging the form; the releaser rolls back after a confirmation
that names what changes, and downloads a ledger proof that verifies offline. Every page looked
at is screenshotted (and copied to docs/console/ when MODELWARD_CONSOLE_SCREENSHOTS is set).
No request leaves 127.0.0.1, and no page logs a Content-Security-Policy violation.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.console_world import HOSTILE_COMMENT, HOSTILE_FILE, build_world, seed_runtime
from tests.integration.server.harness import running
from tests.oidc_issuer import TestIssuer, serve_issuer

from modelward.services.oidc import OidcService
from modelward.services.tokens import TokenService

CHROMIUM = Path("/usr/bin/chromium")
CLIENT_ID = "modelward-console"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "console"

pytestmark = pytest.mark.slow


class Journey:
    def __init__(self, base: str, shots: Path, browser: Any) -> None:
        self.base = base
        self.shots = shots
        self.browser = browser
        self.outside: list[str] = []
        self.csp_errors: list[str] = []
        self.taken: list[Path] = []

    def context(self, **kwargs: Any) -> Any:
        context = self.browser.new_context(accept_downloads=True, **kwargs)

        def guard(route: Any) -> None:
            host = urllib.parse.urlsplit(route.request.url).hostname
            if host not in ("127.0.0.1", "localhost"):
                self.outside.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        context.route("**/*", guard)
        return context

    def page(self, context: Any) -> Any:
        page = context.new_page()
        page.on(
            "console",
            lambda m: (
                self.csp_errors.append(m.text)
                if "Content Security Policy" in m.text or "Refused to" in m.text
                else None
            ),
        )
        return page

    def shot(self, page: Any, name: str, full: bool = True) -> None:
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=full)
        self.taken.append(path)


@pytest.fixture
def world_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`.ci/run` installs it: apt-get install -y chromium)"
        )
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELWARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELWARD_ACTOR", "root")
    issuer = TestIssuer()
    with serve_issuer(issuer, CLIENT_ID) as (idp, authorization):
        world = build_world(tmp_path)
        seed_runtime(world, promote_candidate=False)  # a split canary: staging stays on v1
        oidc = OidcService(world.ctx, actor="root")
        oidc.add_issuer(issuer.url, CLIENT_ID, jwks_url=f"{idp}/.well-known/jwks.json")
        oidc.map_claims(issuer.url, {"sub": "rita@example.org"}, "rita")
        tokens = {
            who: TokenService(world.ctx, actor="root").create(who).token for who in ("rex", "tina")
        }
        world.ctx.close()
        env = {
            "MODELWARD_HOME": str(world.home),
            "MODELWARD_CONSOLE_OIDC_ISSUER": issuer.url,
            "MODELWARD_CONSOLE_OIDC_CLIENT_ID": CLIENT_ID,
            "MODELWARD_CONSOLE_OIDC_AUTHORIZE_URL": f"{idp}/authorize",
            "MODELWARD_CONSOLE_OIDC_TOKEN_URL": f"{idp}/token",
        }
        with running(env, tmp_path / "server.log", workers=2) as server:
            yield {
                "url": server.url,
                "tokens": tokens,
                "home": world.home,
                "authorization": authorization,
            }


def _sign_in_with_token(journey: Journey, page: Any, token: str) -> None:
    page.goto(f"{journey.base}/ui/models")
    assert page.url.endswith("/ui/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in with a token").click()
    page.wait_for_url("**/ui/models")


def test_console_journey(world_server: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "shots"
    shots.mkdir()
    base = world_server["url"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        journey = Journey(base, shots, browser)
        try:
            _journey(journey, world_server, expect)
        finally:
            browser.close()
    assert journey.outside == [], "the console made requests off this machine"
    assert journey.csp_errors == [], journey.csp_errors
    if os.environ.get("MODELWARD_CONSOLE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        for path in journey.taken:
            shutil.copy(path, DOCS / path.name)


def _journey(journey: Journey, world: dict[str, Any], expect: Any) -> None:
    base = journey.base
    laptop = {"viewport": {"width": 1280, "height": 800}}

    # -- a reviewer signs in with OIDC (authorization code + PKCE) -----------------------------
    reviewer_context = journey.context(**laptop)
    reviewer = journey.page(reviewer_context)
    reviewer.goto(f"{base}/")
    reviewer.wait_for_url("**/ui/login")
    journey.shot(reviewer, "01-sign-in")
    reviewer.get_by_test_id("oidc-login").click()
    reviewer.wait_for_url("**/ui/models")
    assert world["authorization"].redeemed == ["rita@example.org"]
    cookies = {c["name"]: c for c in reviewer_context.cookies()}
    session = cookies["__Host-modelward_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"
    assert session["path"] == "/"
    expect(reviewer.get_by_test_id("whoami")).to_contain_text("rita reviewer")

    # -- find a model: typing filters the list in place (htmx) --------------------------------
    reviewer.get_by_test_id("search").fill("llama")
    expect(reviewer.locator("#models-table tbody tr")).to_have_count(1)
    expect(reviewer.locator("#models-table")).to_contain_text("llama-chat")
    assert "q=llama" in reviewer.url
    journey.shot(reviewer, "02-models")
    reviewer.get_by_role("link", name="llama-chat", exact=True).click()
    reviewer.wait_for_url("**/ui/models/llama-chat")
    expect(reviewer.locator(".chart-area canvas")).to_have_count(1)  # the metrics chart
    journey.shot(reviewer, "03-model")

    # -- open a version and approve it ----------------------------------------------------------
    reviewer.get_by_role("link", name="v2", exact=True).first.click()
    reviewer.wait_for_url("**/versions/2")
    expect(reviewer.get_by_test_id("file-name").filter(has_text=HOSTILE_FILE)).to_have_count(1)
    expect(reviewer.get_by_test_id("promote-form")).to_have_count(0)
    form = reviewer.get_by_test_id("approve-form")
    form.get_by_label("Environment").select_option("staging")
    form.get_by_label("Comment").fill(HOSTILE_COMMENT)
    form.get_by_role("button", name="Approve").click()
    expect(reviewer.get_by_test_id("flash")).to_contain_text("approved")
    expect(reviewer.get_by_test_id("approval")).to_contain_text(HOSTILE_COMMENT)
    assert reviewer.evaluate("window.__xss === undefined && !document.querySelector('img[src=x]')")
    journey.shot(reviewer, "04-version")
    reviewer.goto(f"{base}/ui/diff?a=models:/llama-chat/1&b=models:/llama-chat/2")
    expect(reviewer.locator("tr.added")).to_contain_text(HOSTILE_FILE)
    journey.shot(reviewer, "05-diff")

    # -- a releaser (API token) promotes it -----------------------------------------------------
    releaser_context = journey.context(**laptop)
    releaser = journey.page(releaser_context)
    _sign_in_with_token(journey, releaser, world["tokens"]["rex"])
    releaser.goto(f"{base}/ui/models/llama-chat/versions/2")
    expect(releaser.get_by_test_id("approve-form")).to_have_count(0)
    promote = releaser.get_by_test_id("promote-form")
    promote.get_by_label("To").select_option("staging")
    promote.get_by_label("Flags (KEY=VALUE, one a line)").fill("temperature=0.3\nsafety=strict")
    promote.get_by_role("button", name="Promote").click()
    expect(releaser.get_by_test_id("promotion-result")).to_contain_text("allowed")
    journey.shot(releaser, "06-promoted")

    # -- a trainer sees no button, and a forged form is refused by the service ------------------
    trainer_context = journey.context(**laptop)
    trainer = journey.page(trainer_context)
    _sign_in_with_token(journey, trainer, world["tokens"]["tina"])
    trainer.goto(f"{base}/ui/models/llama-chat/versions/2")
    expect(trainer.get_by_test_id("approve-form")).to_have_count(0)
    expect(trainer.get_by_test_id("promote-form")).to_have_count(0)
    csrf = trainer.locator("input[name=csrf_token]").first.get_attribute("value")
    trainer.evaluate(
        """([csrf]) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/ui/models/llama-chat/versions/2/promote';
            for (const [k, v] of [['csrf_token', csrf], ['environment', 'staging']]) {
                const input = document.createElement('input');
                input.type = 'hidden'; input.name = k; input.value = v; form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        }""",
        [csrf],
    )
    trainer.wait_for_url("**/promote")
    expect(trainer.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(trainer.get_by_test_id("error-message")).to_contain_text("trainer")
    journey.shot(trainer, "07-trainer-denied")

    # -- the releaser rolls back, after a confirmation naming what changes ----------------------
    releaser.goto(f"{base}/ui/environments")
    journey.shot(releaser, "08-environments")
    releaser.get_by_role("link", name="llama-chat").first.click()
    releaser.wait_for_url("**/ui/environments/staging/models/llama-chat")
    expect(releaser.get_by_test_id("current-state")).to_contain_text("v2")
    journey.shot(releaser, "09-releases")
    releaser.get_by_role("link", name="Roll back to this…").first.click()
    changes = releaser.get_by_test_id("rollback-changes")
    expect(changes).to_contain_text("version 2 → 1")
    expect(changes).to_contain_text("feature flag")
    journey.shot(releaser, "10-rollback-confirm")
    releaser.get_by_role("button", name="Roll back now").click()
    expect(releaser.get_by_test_id("flash")).to_contain_text("rolled-back")
    expect(releaser.get_by_test_id("current-state")).to_contain_text("v1")

    # -- the ledger, and a proof that verifies offline ------------------------------------------
    releaser.goto(f"{base}/ui/ledger")
    journey.shot(releaser, "11-ledger")
    with releaser.expect_download() as download_info:
        releaser.get_by_test_id("proof-3").click()
    proof = Path(download_info.value.path()).read_text()
    _check_proof(world["home"], proof, 3)

    # -- datasets and the runtime page --------------------------------------------------------
    releaser.goto(f"{base}/ui/datasets")
    journey.shot(releaser, "12-datasets")
    releaser.goto(f"{base}/ui/runtime")
    panel = releaser.get_by_test_id("runtime-staging-llama-chat")
    expect(panel.get_by_test_id("canary-state")).to_contain_text("latest verdict rollback")
    expect(panel.get_by_test_id("verdict")).to_have_count(2)
    # the verdict chart and the five request charts are drawn (canvas), none is empty
    expect(panel.locator(".chart-area canvas")).to_have_count(6)
    expect(panel.locator(".chart-empty")).to_have_count(0)
    expect(releaser.get_by_test_id("alert")).to_contain_text("delivered")
    # drift arrives by its own request (htmx): after the rollback, neither release served any
    expect(panel.get_by_test_id("drift-state")).to_contain_text("not judged")
    releaser.get_by_label("Time range").select_option("6h")  # keyboard-reachable native form
    releaser.get_by_role("button", name="Show").click()
    releaser.wait_for_url("**/ui/runtime?range=6h")
    expect(releaser.get_by_test_id("runtime-range")).to_contain_text("windows of 5 minutes")
    expect(releaser.get_by_test_id("drift-state")).to_contain_text("not judged")
    journey.shot(releaser, "13-runtime")

    # -- on a phone ---------------------------------------------------------------------------
    phone_context = journey.context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    phone_context.add_cookies([{**session, "name": session["name"]}])
    phone = journey.page(phone_context)
    phone.goto(f"{base}/ui/models/llama-chat/versions/1")
    expect(phone.get_by_test_id("whoami")).to_contain_text("rita")
    journey.shot(phone, "14-version-phone", full=False)

    # -- keyboard: the skip link is the first stop and lands on the content --------------------
    reviewer.goto(f"{base}/ui/models")
    reviewer.keyboard.press("Tab")
    assert reviewer.evaluate("document.activeElement.textContent") == "Skip to content"
    reviewer.keyboard.press("Enter")
    assert reviewer.evaluate("document.activeElement.id") == "main"

    # -- sign out revokes the session, in this browser and for a copy of the cookie ------------
    reviewer.get_by_role("button", name="Sign out").click()
    reviewer.wait_for_url("**/ui/login")
    phone.goto(f"{base}/ui/models")
    assert phone.url.endswith("/ui/login")


def _check_proof(home: Path, proof: str, seq: int) -> None:
    from modelward.services.audit import verify_proof_file
    from modelward.services.context import open_registry

    context = open_registry(home)
    try:
        checked = verify_proof_file(proof, context.ledger_key.public_key(), origin=context.origin)
    finally:
        context.close()
    assert checked.index == seq
