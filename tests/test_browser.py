"""The console in a real browser: Debian's headless Chromium driven by Playwright for Python.

The real app (``create_app`` + ``WebThread`` on 127.0.0.1, port 0) and a real ``Worker`` thread
run against a database seeded by real messages through ``Engine`` and ``Worker`` (one fails its
mapping at PID-7). A clerk logs in, finds a patient, opens a message, fixes and resubmits the
failed one and sees the chart change, retries one, discards one with a reason; an auditor then
finds all of it in the audit trail. Each step saves a screenshot in ``test-artifacts/``.

Chromium comes from the ``chromium`` Debian package (``make browser-deps``), never a download; if
it is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from interface.engine.processing import Worker
from interface.web.app import WebThread, create_app
from tests.test_pages import NOW, PASSWORD, Clock, seed

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 20_000  # generous: CI machines can be slow; passing runs take a fraction


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def live(engine):
    """The seeded database served by the real app, with a worker thread applying the queue."""
    clock = Clock(NOW)
    s = seed(engine, clock)
    # No runtime: no MLLP listeners here (like `interface web` beside the engine), so the
    # dashboard judges health by the queue alone.
    app = create_app(
        engine,
        channels=list(s.channels.values()),
        runtime=None,
        document_settings=s.pipeline.document_settings,
    )
    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    worker = Worker(engine, s.pipeline, clock=utcnow)
    worker.start(idle_wait=0.2)
    try:
        yield s, f"http://127.0.0.1:{web.port}"
    finally:
        worker.stop()
        web.stop()


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make browser-deps)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], timeout=30_000)
        try:
            yield b
        finally:
            b.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def log_in(page, base: str, name: str, start: str = "/") -> None:
    page.goto(base + start)
    assert "/login" in page.url  # not logged in: sent to the login form, keeping where to return
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(base + start) + r"$"))


def reload_until(page, predicate, what: str, timeout: float = 20.0) -> None:
    """Reload until the page shows what the worker thread should have done (a real thread and a
    real server: bounded by a deadline)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(100)
        page.reload()


def test_clerk_works_the_error_queue_and_the_auditor_sees_it(live, browser):
    s, base = live
    fix, retry, discard = s.items["fix"], s.items["retry"], s.items["discard"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # 0. log in; the dashboard (kept open in a second tab) marks the channel with an error item
    log_in(page, base, "carl", "/")
    dash = ctx.new_page()
    dash.goto(base + "/")
    adt = dash.locator('[data-channel="adt"]')
    assert "Needs attention" in adt.inner_text() and "1 in error queue" in adt.inner_text()
    dash.evaluate("window.notReloaded = true")
    shot(dash, "00-dashboard")

    # 1. find a patient
    page.get_by_role("link", name="Patients").click()
    page.get_by_label("Family name").fill("riv")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=re.compile(r"RIVERA, ANA")).click()
    assert re.search(r"RIVERA, ANA MARIA", page.locator("h1").inner_text())
    assert page.locator("#birth-date").inner_text() == "1984-03-12"
    assert "9434765919" not in page.content()  # NHS number masked
    shot(page, "01-patient-chart")

    # 2. open a message: search by control id, parsed view with field names, reveal with a reason
    page.get_by_role("link", name="Messages", exact=True).click()
    page.get_by_label("Control ID").fill("BAD0001")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#message-list tbody tr")
    assert rows.count() == 1
    rows.first.get_by_role("link").first.click()
    page.wait_for_url(f"{base}/messages/{s.messages['bad']}")
    assert page.locator("tr#PID-7.failing").is_visible()
    assert page.locator("tr#PID-5 th abbr").get_attribute("title").startswith("PID-5 Patient Name")
    # the banner names the chart's patient to a clerk; the message itself stays masked
    assert "RIVERA, ANA" in page.locator("#patient-banner").inner_text()
    assert "RIVERA" not in page.locator("main").inner_text().replace(
        page.locator("#patient-banner").inner_text(), ""
    )
    page.get_by_role("link", name="Raw").click()
    page.get_by_label("Reason to reveal patient identifiers").fill("checking the failed A08")
    page.get_by_role("button", name="Reveal").click()
    assert "RIVERA^ANNABEL" in page.locator("#raw").inner_text()
    shot(page, "02-message-revealed")

    # 3. fix and resubmit the failed item; the worker applies it and the chart changes
    page.goto(f"{base}/errors")
    assert page.locator(".groups").get_by_text("Invalid value").is_visible()
    page.locator("#error-list").get_by_role("link", name=str(fix), exact=True).click()
    assert "PID-7 (Date Time of Birth)" in page.locator("#failing-field").inner_text()
    page.get_by_label("Reason to reveal the message to edit it").fill("fix birth date typo")
    page.get_by_role("button", name="Reveal").click()
    editor = page.locator("#raw-editor")
    # console.js selects the failing field's value in the editor
    selected = editor.evaluate("e => e.value.slice(e.selectionStart, e.selectionEnd)")
    assert selected == "19840399"
    editor.fill(editor.input_value().replace("19840399", "19840312"))
    shot(page, "03-edit-before-resubmit")
    page.get_by_role("button", name="Resubmit edited message").click()
    assert "Edited copy resubmitted" in page.locator(".notice").inner_text()
    reload_until(
        page, lambda: "status-done" in page.locator("h1").inner_html(), "the resubmitted item to apply"
    )
    page.goto(f"{base}/patients/100001")
    assert "RIVERA, ANNABEL MARIA" in page.locator("h1").inner_text()
    shot(page, "04-chart-after-resubmit")

    # 4. retry one: tick exactly that row and use the bulk button
    page.goto(f"{base}/errors")
    page.get_by_label(f"Select item {retry}", exact=True).check()
    page.get_by_role("button", name="Retry selected").click()
    assert "Put back in the queue: 1 item(s)." in page.locator(".notice").inner_text()
    page.goto(f"{base}/errors/{retry}")
    reload_until(page, lambda: "status-done" in page.locator("h1").inner_html(), "the retried item to apply")
    shot(page, "05-retried")

    # 5. discard one: the browser insists on a reason, then the item is discarded
    page.goto(f"{base}/errors/{discard}")
    page.get_by_role("button", name="Discard").click()
    assert page.url == f"{base}/errors/{discard}"  # required reason: nothing was sent
    assert page.locator("#discard-reason").evaluate("e => !e.validity.valid")
    page.get_by_label("Reason to discard").fill("status change for a document never sent")
    page.get_by_role("button", name="Discard").click()
    assert "Discarded" in page.locator(".notice").inner_text()
    assert "Discarded" in page.locator("h1").inner_text()  # the status in words
    shot(page, "06-discarded")
    page.goto(f"{base}/errors")
    assert page.locator("#error-list tbody").inner_text().strip() == "No items."

    # the open dashboard refreshes in place (htmx, no page load) and shows the channels healthy
    with dash.expect_response(lambda r: r.url.endswith("/dashboard/channels")) as resp:
        dash.get_by_role("link", name="Refresh now").click()
    assert resp.value.status == 200
    assert dash.locator('[data-channel="adt"]').count() == 1  # swapped in place, not nested
    assert "OK" in dash.locator('[data-channel="adt"] h3').inner_text()
    assert dash.locator(".card.unhealthy").count() == 0
    assert dash.evaluate("window.notReloaded") is True
    shot(dash, "06b-dashboard-healthy")

    # 6. the auditor sees every action, with who and why
    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "aud", "/audit")
    table = page.locator("#audit-log tbody").inner_text()
    assert re.search(rf"carl\s+Resubmitted an edited message\s+Error item {fix}", table)
    assert re.search(rf"carl\s+Retried an error item\s+Error item {retry}", table)
    assert re.search(
        rf"carl\s+Discarded an error item\s+Error item {discard}\s+.*status change for a document never sent",
        table,
    )
    assert re.search(r"carl\s+Revealed masked data\s+Message \d+\s+.*fix birth date typo", table)
    assert re.search(r"carl\s+Viewed\s+Patient 100001", table)
    page.get_by_label("Action").fill("discard")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#audit-log tbody tr").count() == 1
    shot(page, "07-audit-trail")
    assert not errors, errors
    ctx.close()
