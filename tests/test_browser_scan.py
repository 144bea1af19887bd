"""The indexing queue of scanned paper in a real browser (issue 20): a clerk in Debian's headless
Chromium (Playwright) finds the cover-sheeted document filed in the chart, opens the one without a
cover sheet in the queue, sees its thumbnails and the chart its text suggests, deletes the blank
page after confirming it, indexes the document to that patient and finds it in the chart.

The batch is made by tests.scan_kit (pages printed and rasterised: no sample files) and run
through the real scan worker with the real OCR (ocrmypdf, tesseract) on the injected clock; the
test thread runs the worker itself (``run_once``), so nothing polls. Pages are A6 and few, to
keep OCR short. Screenshots go to ``test-artifacts/scan-*.png``.
"""

from __future__ import annotations

import re

import pytest

from interface.desk import users
from interface.engine import ocr as ocrmod
from interface.web.app import WebThread, create_app
from tests import scan_kit as kit
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_pages import PASSWORD
from tests.test_scan import JANE, Scan
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

LETTER = ["Referral letter", "Patient: DOE, JANE", "DOB 01/01/1980", "Please see in clinic"]
CONSENT = ["Consent to treatment", "Signed by the patient"]


@pytest.fixture
def scanned(engine, tmp_path, fast_hashing):  # noqa: F811
    s = Scan(engine, tmp_path, ocr=ocrmod.run)
    pages = [kit.text_page(LETTER), kit.blank_page(), kit.cover_page(JANE), kit.text_page(CONSENT)]
    s.drop("batch.pdf", kit.batch_pdf(pages))
    s.round()
    letter, consent = s.docs()
    assert (letter["status"], letter["reason"]) == ("queued", "no_cover_sheet")
    assert consent["status"] == "filed", consent["reason"]
    with engine.begin() as conn:
        users.add_user(conn, "clara", "clerk", PASSWORD, now=s.h.clock())
    web = WebThread(create_app(engine, document_settings=s.settings, clock=s.h.clock), "127.0.0.1", 0)
    web.start()
    try:
        yield s, f"http://127.0.0.1:{web.port}"
    finally:
        web.stop()


def _loaded(page, selector: str) -> int:
    """Wait until every image ``selector`` finds has been drawn (the browser fetched a real PNG);
    returns how many there are."""
    page.wait_for_function(
        "sel => { const all = [...document.querySelectorAll(sel)];"
        " return all.length > 0 && all.every(e => e.complete && e.naturalWidth > 0); }",
        arg=selector,
    )
    return page.locator(selector).count()


def test_a_clerk_indexes_a_scanned_document_from_the_queue(scanned, browser):  # noqa: F811
    s, base = scanned
    letter, consent = s.docs()
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

    # 1. the cover-sheeted consent is already in the chart
    log_in(page, base, "clara", "/patients/M100")
    assert page.locator("#documents").get_by_role("link", name=consent["document_number"]).is_visible()

    # 2. the queue names why the letter waits, in words
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Scanned paper").click()
    page.wait_for_url(f"{base}/scan")
    row = page.locator(f'#scan-queue tr[data-doc="{letter["id"]}"]')
    assert "No cover sheet" in row.inner_text() and "blank pages" in row.inner_text()
    shot(page, "scan-01-queue")
    row.get_by_role("link", name=f"Scanned document {letter['id']}").click()
    page.wait_for_url(f"{base}/scan/documents/{letter['id']}")

    # 3. thumbnails and the page viewer show the pages; the text suggests DOE, JANE
    assert _loaded(page, "#thumbs img") == 2
    assert _loaded(page, "#page-view") == 1
    assert "blank (found by the engine)" in page.locator('#thumbs li[data-page="2"]').inner_text()
    candidate = page.locator('#candidates tr[data-mrn="M100"]')
    assert "DOE, JANE" in candidate.inner_text()
    shot(page, "scan-02-document")
    page.locator('#thumbs li[data-page="2"] a').click()  # the viewer turns to page 2
    page.wait_for_url(re.compile(r"\?page=2#viewer$"))
    assert "Page 2 of 2" in page.locator("#viewer h2").inner_text()

    # 4. the blank page: shown for confirmation, then deleted
    assert page.locator('#delete-pages input[value="2"]').is_checked()  # the engine's finding, ticked
    page.get_by_role("button", name="Review the pages to delete").click()
    page.wait_for_url(f"{base}/scan/documents/{letter['id']}/delete-pages?pages=2")
    assert "The engine found it blank" in page.locator("#to-delete").inner_text()
    assert _loaded(page, "#to-delete img") == 1
    assert len(s.docs()[0]["pages"]) == 2  # nothing deleted yet
    shot(page, "scan-03-confirm-delete")
    page.get_by_role("button", name="Delete 1 page(s)").click()
    page.wait_for_url(f"{base}/scan/documents/{letter['id']}?done=delete_pages")
    assert "Pages deleted" in page.locator(".notice").inner_text()
    assert page.locator("#thumbs img").count() == 1
    s.worker.run_once()  # the text read again for the one page left (real OCR)

    # 5. indexed to the suggested patient, with type, date and author
    page.reload()
    page.get_by_label("Document type").select_option(label="Consultation")
    page.get_by_label("Document date").fill("2026-10-02")
    page.get_by_label("Author").fill("Dr Who")
    page.locator('#candidates tr[data-mrn="M100"]').get_by_role(
        "button", name="Index to this patient"
    ).click()
    page.wait_for_url(f"{base}/scan/documents/{letter['id']}?done=index")
    assert "Filed to the chart" in page.locator(".notice").inner_text()
    banner = page.locator("#patient-banner").inner_text()
    assert "DOE, JANE" in banner and "M100" in banner
    filed = s.docs()[0]
    assert filed["status"] == "filed" and filed["mrn"] == "M100" and filed["indexed_by"] == "clara"
    shot(page, "scan-04-filed")

    # 6. ... and it is in the patient's chart
    page.locator("#patient-banner").get_by_role("link", name="M100").click()
    page.wait_for_url(f"{base}/patients/M100")
    docs = page.locator("#documents")
    assert docs.get_by_role("link", name=filed["document_number"]).is_visible()
    assert "Consultation" in docs.locator("tr", has_text=filed["document_number"]).inner_text()
    shot(page, "scan-05-chart")
    page.goto(f"{base}/scan")
    assert page.locator(f'#scan-queue tr[data-doc="{letter["id"]}"]').count() == 0  # left the queue
    assert not problems, problems
