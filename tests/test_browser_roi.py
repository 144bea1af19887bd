"""One release-of-information request from receipt to release in a real browser (Debian's headless
Chromium through Playwright): a clerk finds the patient and logs an attorney's request and records
the identity check; a release specialist moves it along, sees the release blocked until the
authorization checklist is complete, uploads the signed form, sees what the release leaves out
(the psychotherapy note) and releases; the packet downloads and its SHA-256 is the one shown; the
disclosure log lists the release. The database is seeded through the real engine (the sample
ADT and MDM messages, an injected clock). Screenshots go to ``test-artifacts/roi-*.png``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from interface.desk import users
from interface.store import content
from interface.web.app import WebThread, create_app
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_pages import PASSWORD
from tests.test_roi_desk import COMPLETE, NOW, SAMPLES, Harness, mdm
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def site(engine, fast_hashing):  # noqa: F811
    h = Harness(engine)
    h.now = NOW - timedelta(days=20)
    h.send((SAMPLES / "adt" / "04-a04-register-rivera.hl7").read_bytes())
    h.drain()
    for f in ("mdm_t01_original.hl7", "mdm_t02_original_pdf.hl7"):
        h.send((SAMPLES / "mdm" / f).read_bytes(), "mdm")
    h.send(mdm("T02", "PSY-1", mrn="100001", type_="PSYTX"), "mdm")
    h.drain()
    h.now = NOW
    with engine.begin() as conn:
        users.add_user(conn, "clara", "clerk", PASSWORD, now=h.now)
        users.add_user(conn, "rhea", "release", PASSWORD, now=h.now)
    app = create_app(engine, channels=list(h.channels.values()), clock=h.clock)
    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    try:
        yield h, f"http://127.0.0.1:{web.port}"
    finally:
        web.stop()


def test_one_request_from_receipt_to_release(site, browser, tmp_path):  # noqa: F811
    h, base = site
    problems: list[str] = []

    def new_page():
        ctx = browser.new_context(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
        ctx.set_default_timeout(TIMEOUT_MS)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        return page

    # 1. the clerk logs the request
    page = new_page()
    log_in(page, base, "clara", "/roi")
    page.get_by_role("link", name="New request").click()
    page.get_by_label("Family name").fill("rivera")
    page.get_by_role("button", name="Find the patient").click()
    page.get_by_role("link", name="RIVERA, ANA").click()
    assert "RIVERA" in page.locator("#patient-banner").inner_text()
    form = page.locator("#new-request-form")
    form.locator('select[name="requester_type"]').select_option("attorney")
    form.locator('input[name="requester_name"]').fill("Smith & Partners LLP")
    form.locator('textarea[name="requester_address"]').fill("1 Court Street\nSpringfield IL 62701")
    form.locator('input[name="scope_from"]').fill("2026-11-01")
    form.locator('select[name="purpose"]').select_option("legal")
    form.locator('select[name="delivery"]').select_option("mail")
    form.locator('input[name="received_on"]').fill("2026-12-01")
    shot(page, "roi-01-new-request")
    form.get_by_role("button", name="Log the request").click()
    page.wait_for_url(f"{base}/roi/1?done=roi_new")
    assert page.locator("#roi-status").inner_text() == "Received"
    assert "2026-12-31" in page.locator("#roi-due").inner_text()
    page.get_by_label("Organisation verified").check()
    page.get_by_role("button", name="Record the identity checks").click()
    assert "Verified by clara" in page.locator("#identity").inner_text()
    assert page.locator("#status").count() == 0  # a clerk logs and verifies; release work is not theirs
    page.get_by_role("link", name="Dashboard").click()  # the request's age on the clerk's dashboard
    assert "1 open request(s)" in page.locator("#roi-aging").inner_text()
    assert page.locator('#roi-buckets td[data-bucket="0–10 days"]').inner_text() == "1"
    assert page.locator("#roi-attention").count() == 0  # due in 21 days: nothing urgent

    # 2. the release specialist takes it to release
    page = new_page()
    log_in(page, base, "rhea", "/roi")
    row = page.locator('#roi-queue tr[data-id="1"]')
    assert "Smith & Partners LLP" in row.inner_text() and "Verifying" in row.inner_text()
    row.get_by_role("link", name="Request 1").click()
    page.get_by_role("button", name="Mark in progress").click()
    page.get_by_role("button", name="Mark ready").click()
    assert page.locator("#roi-status").inner_text() == "Ready"
    assert "No authorization on file" in page.locator("#release-blocks").inner_text()
    assert page.locator("#release-button").count() == 0
    auth = page.locator("#authorization-form")
    for name in ("description", "discloser", "recipient", "purpose", "expires_on", "signed_by", "signed_on"):
        auth.locator(f'input[name="{name}"]').fill(COMPLETE[name])
    auth.locator('input[name="revocation_statement"]').check()
    auth.locator('input[name="redisclosure_statement"]').check()
    auth.locator('input[name="signed_form"]').set_input_files(
        str(SAMPLES / "roi" / "signed-authorization.pdf")
    )
    auth.get_by_role("button", name="Record the authorization").click()
    missing = page.locator("#authorization-problems").inner_text()
    assert "Missing element: The statement that treatment is not conditioned on signing" in missing
    shot(page, "roi-02-authorization-incomplete")
    page.locator('#authorization-form input[name="conditioning_statement"]').check()
    page.locator("#authorization-form").get_by_role("button", name="Record the authorization").click()
    assert page.locator("#authorization-complete").is_visible()
    psy = page.locator('#release-documents tr[data-number="PSY-1"]')
    assert "psychotherapy notes are released only" in psy.inner_text()
    assert psy.locator('input[type="checkbox"]').count() == 0
    assert page.locator('#release-documents tr[data-number="DOC-1002"] input').is_checked()
    shot(page, "roi-03-what-is-released")
    page.get_by_role("button", name="Release").click()
    assert page.locator("#roi-status").inner_text() == "Released"
    packets = page.locator("#packets").inner_text()
    with page.expect_download() as dl:
        page.get_by_role("link", name="Packet 1").click()
    saved = tmp_path / "packet.pdf"
    dl.value.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"%PDF") and content.sha256_hex(data) in packets
    shot(page, "roi-04-released")

    # 3. the disclosure log lists it
    page.goto(f"{base}/roi/disclosures?mrn=100001")
    log = page.locator("#disclosures").inner_text()
    assert "Smith & Partners LLP" in log and "released here" in log
    assert problems == []
