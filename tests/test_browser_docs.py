"""In real Chromium: Swagger UI at /api/docs and the login page work under the console's CSP
(no Content-Security-Policy violation, nothing fetched from another site)."""

from __future__ import annotations

import pytest

from interface.web.app import WebThread, create_app
from tests.test_browser import TIMEOUT_MS, browser, shot  # noqa: F401  (fixture)
from tests.test_web_api import PASSWORD, make_user

pytestmark = pytest.mark.browser


@pytest.fixture
def served(engine):
    make_user(engine, "ann", "clerk")
    web = WebThread(create_app(engine), "127.0.0.1", 0)
    web.start()
    try:
        yield f"http://127.0.0.1:{web.port}"
    finally:
        web.stop()


def _watch(page, base):
    problems, foreign = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((base, "data:")) else None)
    return problems, foreign


def test_swagger_ui_renders_under_the_csp(served, browser):  # noqa: F811
    """/api/docs shows the operations of /api/openapi.json, with no CSP violation."""
    page = browser.new_page()
    problems, foreign = _watch(page, served)
    page.goto(served + "/api/docs")
    page.locator(".opblock-summary-path", has_text="/api/health").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".opblock").count() > 20
    page.get_by_role("button", name="Authorize").first.wait_for(timeout=TIMEOUT_MS)
    shot(page, "api-docs")
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert foreign == []


def test_login_page_styled_and_working_under_the_csp(served, browser):  # noqa: F811
    """The login page's own stylesheet applies (centred card), and signing in works."""
    page = browser.new_page()
    problems, foreign = _watch(page, served)
    page.goto(served + "/login")
    assert page.eval_on_selector("main", "e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"
    page.get_by_label("User name").fill("ann")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(served + "/", timeout=TIMEOUT_MS)
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert foreign == []
