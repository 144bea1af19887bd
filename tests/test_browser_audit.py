"""The access report in a real browser (issue 17 section 6): a clerk in Debian's headless
Chromium opens a chart; an auditor then finds that access on "Who looked at this patient",
reached from the audit log's patient search, with the patient banner; an admin reaches the same
page by the link on the chart. Fixtures as in tests/test_browser_desk.py (the seeded desk:
charts 100001 RIVERA and 100002 CHEN). Screenshots go to ``test-artifacts/audit-*.png``."""

from __future__ import annotations

import pytest

from interface.desk import users
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_browser_desk import desk  # noqa: F401  (fixture)
from tests.test_pages import PASSWORD
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def _page(browser):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx, ctx.new_page()


def test_an_auditor_sees_the_clerks_access_on_the_access_report(desk, browser, engine):  # noqa: F811
    h, base = desk
    with engine.begin() as conn:
        users.add_user(conn, "adam", "admin", PASSWORD, now=h.now)

    # 1. the clerk opens RIVERA's chart; no access-report link for a clerk
    ctx, page = _page(browser)
    log_in(page, base, "clara", "/patients/100001")
    assert "RIVERA" in page.locator("#patient-banner").inner_text()
    assert page.locator("#access-report-link").count() == 0
    ctx.close()

    # 2. the auditor searches the audit log by the MRN and follows "Who looked at this patient"
    ctx, page = _page(browser)
    log_in(page, base, "aud", "/audit")
    page.get_by_label("Patient (MRN)").fill("100001")
    page.get_by_role("button", name="Filter").click()
    page.locator("#access-report-link").click()
    page.wait_for_url(f"{base}/patients/100001/access")
    assert page.locator("h1").inner_text() == "Who looked at this patient"
    banner = page.locator("#patient-banner").inner_text()
    assert "RIVERA" in banner and "100001" in banner
    views = page.locator("#access-report tr.audit-entry").filter(has_text="clara")
    assert views.count() >= 1
    first = views.first
    assert first.locator(".audit-action").inner_text() == "Viewed"  # in words, the code on hover
    assert first.locator(".audit-action").get_attribute("title") == "view"
    assert first.locator(".audit-via").inner_text() == "Console"
    assert "clara" in page.locator("#access-users").inner_text()
    shot(page, "audit-01-access-report")
    with page.expect_download() as got:
        page.locator("#access-csv").click()
    text = open(got.value.path(), encoding="utf-8").read()
    assert text.startswith("id,at,user,via,action") and "clara" in text
    ctx.close()

    # 3. an admin reaches the same page from the chart
    ctx, page = _page(browser)
    log_in(page, base, "adam", "/patients/100001")
    page.locator("#access-report-link").click()
    page.wait_for_url(f"{base}/patients/100001/access")
    assert page.locator("#access-report tr.audit-entry").filter(has_text="clara").count() >= 1
    assert page.locator("#access-report tr.audit-entry").filter(has_text="aud").count() >= 1
    shot(page, "audit-02-from-the-chart")
    ctx.close()
