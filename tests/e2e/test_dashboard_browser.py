"""The web dashboard in a real browser: Debian's Chromium driven by Playwright, against the real server.

The flow a new customer goes through: sign up → create a key → call the API with the official `openai`
SDK → see the calls on the overview, its charts drawn → open a request → revoke the key → the SDK gets
AuthenticationError. A second test fills a demo account (seed_demo, two days) and visits every page with
data, at desktop and phone widths. Every page is screenshotted to test-artifacts/screenshots/, and no page may
raise a JavaScript error or log one to the console.

Chromium comes from the distribution (`apt-get install chromium`, see .ci/run); Playwright only drives it
(`executable_path`), so `playwright install` is never needed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import openai
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.db import connections

from accounts.models import User
from analytics.models import RequestLog
from tests.e2e.conftest import ROOT, LiveServer, wait_for_log

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "a-long-e2e-passphrase-51"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

if not Path(CHROMIUM).exists():  # pragma: no cover
    pytestmark = [pytestmark, pytest.mark.skip(reason="Chromium is not installed (apt-get install chromium)")]


@pytest.fixture(scope="module")
def web_server(django_db_setup, django_db_blocker, fake_provider, tmp_path_factory):
    """The real server, as in production but over plain http (so cookies may not require https), with
    its static files collected as `make migrate` does (whitenoise serves them)."""
    with django_db_blocker.unblock():
        call_command("collectstatic", "--noinput", verbosity=0)
    server = LiveServer(
        fake_provider,
        tmp_path_factory.mktemp("web") / "server.log",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
    ).start()
    yield server
    server.stop()


@pytest.fixture
def server(web_server, transactional_db, fake_provider, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls between browser steps are
    # still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    fake_provider.clear()
    return web_server


class Browser:
    """One Chromium page that records JavaScript errors and saves a screenshot of every page it shows."""

    def __init__(self, playwright, base_url: str, viewport: dict, prefix: str):
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(viewport=viewport, base_url=base_url)
        self.page = self.context.new_page()
        self.prefix = prefix
        self.errors: list[str] = []
        self.shots: list[Path] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def goto(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.prefix}{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def charts_drawn(self) -> int:
        """Wait for plotly to draw; return how many charts have an SVG."""
        self.page.wait_for_selector("[data-chart] .main-svg", timeout=15_000)
        return self.page.locator("[data-chart] .main-svg").count()

    def close(self) -> None:
        self.context.close()
        self.browser.close()


@pytest.fixture
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p
        # Under Playwright's event loop the test's ORM calls open a database connection of their own, which
        # Django's teardown does not see: left open, it kept the test database from being dropped.
        connections.close_all()


def card_value(page, label: str) -> str:
    card = page.locator(".kpi", has=page.locator(".kpi-label", has_text=re.compile(f"^{label}$")))
    return card.locator(".kpi-value").inner_text().strip()


def test_sign_up_create_a_key_call_the_api_see_it_then_revoke_it(server, playwright):
    web = Browser(playwright, server.url, DESKTOP, "")
    page = web.page
    try:
        web.goto("/")
        assert f"{server.url}/v1" in page.inner_text("#quickstart")
        web.shot("01-landing")

        # sign up
        page.click("text=Create a free account")
        page.wait_for_url("**/signup/")
        page.fill("#id_email", "new.customer@example.com")
        page.fill("#id_password1", PASSWORD)
        page.fill("#id_password2", PASSWORD)
        web.shot("02-sign-up")
        page.click("button:has-text('Create account')")
        page.wait_for_url("**/keys/new/")

        # create a key: the full key is shown once, with a snippet for this server
        page.fill("#id_name", "e2e key")
        page.fill("#id_monthly_budget_usd", "25")
        web.shot("03-key-create")
        page.click("button:has-text('Create key')")
        page.wait_for_url(re.compile(r".*/keys/[0-9a-f-]+/created/$"))
        raw_key = page.inner_text("[data-testid=new-key]").strip()
        assert raw_key.startswith("nm-")
        assert f'base_url="{server.url}/v1"' in page.inner_text("#snippet")
        assert raw_key in page.inner_text("#snippet")
        web.shot("04-key-created")

        # call the API with the official SDK
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=raw_key, max_retries=0)
        first = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Say hello to the dashboard"}]
        )
        request_id = first.headers["x-request-id"]
        chunks = list(
            sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Stream to the dashboard"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        wait_for_log(request_id)
        deadline = time.monotonic() + 10
        while (
            RequestLog.objects.filter(api_key__prefix=raw_key[:11]).count() < 3
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)

        # the overview shows the calls, with its charts drawn by plotly
        web.goto("/dashboard/")
        assert web.charts_drawn() >= 6
        assert card_value(page, "Requests") == "3"
        assert card_value(page, "Cost").startswith("$")
        web.shot("05-overview")

        for path, name in (
            ("/dashboard/costs/", "06-costs"),
            ("/dashboard/performance/", "07-performance"),
            ("/dashboard/recommendations/", "10-recommendations"),
            ("/settings/", "11-settings"),
        ):
            web.goto(path)
            web.shot(name)

        # the request log, and one request's page
        web.goto("/dashboard/logs/")
        assert page.locator("tbody tr").count() == 3
        web.shot("08-logs")
        page.click(f"a[href='/dashboard/logs/{request_id}/']")
        page.wait_for_url(f"**/dashboard/logs/{request_id}/")
        assert request_id in page.inner_text("h1")
        assert "gpt-4o" in page.inner_text("main")
        web.shot("09-log-detail")

        # keys: the list, the edit form, then revoke with a confirmation
        web.goto("/keys/")
        assert "e2e key" in page.inner_text("main")
        web.shot("12-keys")
        page.click("a:has-text('Edit')")
        page.wait_for_url("**/edit/")
        web.shot("13-key-edit")
        web.goto("/keys/")
        page.click("a:has-text('Revoke')")
        page.wait_for_url("**/revoke/")
        web.shot("14-key-revoke")
        page.click("button:has-text('Revoke key')")
        page.wait_for_url("**/keys/")
        assert "Revoked keys" in page.inner_text("main")

        # the SDK is refused within API_KEY_CACHE_SECONDS
        deadline = time.monotonic() + 5
        while True:
            try:
                sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
            except openai.AuthenticationError:
                break
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.2)

        # log out; the public pages
        page.click("button:has-text('Log out')")
        page.wait_for_url(f"{server.url}/")
        web.goto("/login/")
        web.shot("15-log-in")
        web.goto("/password-reset/")
        web.shot("16-password-reset")
        assert web.errors == [], web.errors
    finally:
        web.close()


def test_every_page_with_demo_traffic_at_desktop_and_phone_width(server, playwright):
    call_command("seed_demo", "--days", "2", "--seed", "1", "--password", PASSWORD, verbosity=0)
    # The test settings hash with MD5 for speed; the server knows only the production hashers.
    User.objects.filter(email="demo@example.com").update(
        is_staff=True, is_superuser=True, password=PBKDF2PasswordHasher().encode(PASSWORD, "e2e-demo-salt")
    )
    request_id = (
        RequestLog.objects.filter(user__email="demo@example.com", status_code=200)
        .exclude(request_body=None)
        .values_list("request_id", flat=True)
        .first()
    )
    pages = [
        ("/dashboard/?range=7d", "overview"),
        ("/dashboard/costs/?range=7d", "costs"),
        ("/dashboard/performance/?range=7d", "performance"),
        ("/dashboard/logs/", "logs"),
        (f"/dashboard/logs/{request_id}/", "log-detail"),
        ("/dashboard/recommendations/", "recommendations"),
        ("/keys/", "keys"),
        ("/keys/new/", "key-create"),
        ("/settings/", "settings"),
        ("/admin/", "admin"),
        ("/admin/analytics/requestlog/", "admin-request-log"),
    ]
    for viewport, prefix in ((DESKTOP, "demo-desktop-"), (PHONE, "demo-phone-")):
        web = Browser(playwright, server.url, viewport, prefix)
        page = web.page
        try:
            web.goto("/login/")
            page.fill("#id_username", "demo@example.com")
            page.fill("#id_password", PASSWORD)
            page.click("button:has-text('Log in')")
            page.wait_for_url("**/dashboard/")
            for path, name in pages:
                web.goto(path)
                if page.locator("[data-chart]").count():
                    drawn = web.charts_drawn()
                    empty = page.locator("[data-chart].chart-empty").count()
                    assert drawn + empty >= page.locator("[data-chart]").count(), path
                if viewport is PHONE:  # nothing spills sideways out of the page
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= PHONE["width"] + 1, (path, width)
                web.shot(name)
            web.goto("/")
            web.shot("landing")
            assert web.errors == [], web.errors
        finally:
            web.close()
