"""The identity desk in a real browser (issue 16, "Right patient, right chart"): a clerk in Debian's
headless Chromium (Playwright) works an identity mismatch, files an unknown patient's document to
the chart the candidate list suggests, and reads the chart-prep worklist; an auditor then finds
the clerk's actions in the audit trail.

The database is seeded through the real engine and worker with the identity rules on
(tests.test_identity_engine.harness, an injected clock): the ADT samples make charts 100001
(RIVERA) and 100002 (CHEN); the sample ``mdm_t11_cancel.hl7`` names another person (DOE) than
chart 100001 and becomes an ``identity_mismatch`` item; a document for an MRN no chart has waits
out the channel's hold and becomes an ``unknown_patient`` item; the SIU sample books CHEN. The
test thread drains the queue itself after each action (``Harness.drain``), so nothing polls.
Screenshots go to ``test-artifacts/desk-*.png``.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from interface.desk import users
from interface.web.app import WebThread, create_app
from tests.test_adt_events import ROOT
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_identity_engine import harness, mdm
from tests.test_pages import PASSWORD
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

SAMPLES = ROOT / "sample_messages"
UNKNOWN_DOC = "DOC-7001"  # dictated for MRN 100077, which no chart has: it is CHEN's (100002)


@pytest.fixture
def desk(engine, fast_hashing):  # noqa: F811
    h = harness(engine)  # real channels (mdm holds an unknown patient 1 day) and identity rules
    for f in sorted((SAMPLES / "adt").glob("*.hl7"))[:8]:  # CHEN 100002 and RIVERA 100001
        assert h.send(f.read_bytes()).status == "accepted", f.name
    h.drain()
    for name in ("mdm_t01_original.hl7", "mdm_t11_cancel.hl7"):
        assert h.send((SAMPLES / "mdm" / name).read_bytes(), "mdm").status == "accepted", name
    h.send(mdm(UNKNOWN_DOC, "100077", name="CHEN^WEI", dob="19571102", sex="M"), "mdm")
    assert h.send((SAMPLES / "siu" / "01-s12-book-chen.hl7").read_bytes(), "siu").status == "accepted"
    h.drain()
    assert [i.reason for i in h.items("error")] == ["identity_mismatch"]
    assert len(h.items("held")) == 1
    h.advance(h.channels["mdm"].hold_unknown_patient_seconds + 60)  # past the hold
    h.drain()
    assert sorted(i.reason for i in h.items("error")) == ["identity_mismatch", "unknown_patient"]
    with engine.begin() as conn:
        users.add_user(conn, "clara", "clerk", PASSWORD, now=h.now)
        users.add_user(conn, "aud", "auditor", PASSWORD, now=h.now)
    app = create_app(
        engine,
        channels=list(h.channels.values()),
        runtime=None,
        document_settings=h.pipeline.document_settings,
        clock=h.clock,
    )
    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    try:
        yield h, f"http://127.0.0.1:{web.port}"
    finally:
        web.stop()


def test_a_clerk_works_the_identity_desk_and_chart_prep(desk, browser):  # noqa: F811
    h, base = desk
    (mismatch,) = h.items("error")[:1]
    (unknown,) = [i for i in h.items("error") if i.reason == "unknown_patient"]
    assert mismatch.reason == "identity_mismatch"
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

    # 1. the error queue names the mismatch in words
    log_in(page, base, "clara", "/errors")
    groups = page.locator(".groups")
    assert groups.get_by_text("Message names a different patient than the chart").is_visible()
    assert groups.get_by_text("Unknown patient").is_visible()
    row = page.locator(f'#error-list tr[data-item="{mismatch.id}"]')
    assert "Message names a different patient than the chart" in row.inner_text()
    assert "identity_mismatch" not in row.inner_text()  # the code stays out of sight (a title only)
    shot(page, "desk-01-error-queue")

    # ... opening it shows whose chart it is and the two patients side by side
    row.get_by_role("link", name=str(mismatch.id), exact=True).click()
    page.wait_for_url(f"{base}/errors/{mismatch.id}")
    banner = page.locator("#patient-banner").inner_text()
    assert "RIVERA, ANA" in banner and "1984-03-12" in banner and "100001" in banner
    compare = page.locator("#identity-compare")
    assert compare.is_visible()
    family = compare.locator('tr[data-field="family"]')
    assert "identity-mismatch" in family.get_attribute("class")
    assert "RIVERA" in family.inner_text() and "DOE" not in family.inner_text()  # message side masked
    marked = family.locator("mark").filter(has_text="RIVERA")
    assert marked.is_visible()
    # highlighted for real: the browser paints the marked difference on a coloured background
    background = marked.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent"), background
    assert compare.locator("tr.identity-mismatch").count() >= 2  # family name and birth date at least
    same = compare.locator("tr.identity-same")
    if same.count():  # rows that agree are shown but not highlighted
        assert same.first.locator("mark").count() == 0
    shot(page, "desk-02-mismatch-masked")

    # ... revealing the message (a reason asked for) shows the other person, highlighted too
    page.get_by_label(re.compile("Reason to reveal")).fill("which patient is this?")
    page.get_by_role("button", name="Reveal").click()
    family = page.locator('#identity-compare tr[data-field="family"]')
    assert family.locator("mark").filter(has_text="DOE").is_visible()
    birth = page.locator('#identity-compare tr[data-field="birth_date"]')
    assert "identity-mismatch" in birth.get_attribute("class")
    assert "1980-01-15" in birth.inner_text() or "19800115" in birth.inner_text()
    shot(page, "desk-03-mismatch-revealed")

    # ... sending it back needs a reason: the browser refuses the empty form, then it goes
    page.goto(f"{base}/errors/{mismatch.id}")
    send_back = page.locator("#send-back")
    send_back.get_by_role("button", name="Send back to sender").click()
    assert page.url == f"{base}/errors/{mismatch.id}"
    assert send_back.locator("input[name=reason]").evaluate("e => !e.validity.valid")
    send_back.get_by_label("Reason to send it back").fill("dictated for another patient")
    send_back.get_by_role("button", name="Send back to sender").click()
    page.wait_for_url(f"{base}/errors/{mismatch.id}?done=send_back")
    assert "Sent back to the sender" in page.locator(".notice").inner_text()
    assert "Discarded" in page.locator("h1").inner_text()  # the status in words
    assert "Sent back by clara: dictated for another patient" in page.locator("#identity").inner_text()
    shot(page, "desk-04-sent-back")
    page.goto(f"{base}/errors")
    listed = page.locator("#error-list tbody").inner_text()
    assert page.locator(f'#error-list tr[data-item="{mismatch.id}"]').count() == 0  # left the failed list
    assert "Message names a different patient" not in page.locator(".groups").inner_text()
    assert "Unknown patient" in listed

    # 2. the unknown patient: the candidate list scores the charts and says why
    page.locator(f'#error-list tr[data-item="{unknown.id}"]').get_by_role(
        "link", name=str(unknown.id), exact=True
    ).click()
    page.wait_for_url(f"{base}/errors/{unknown.id}")
    assert "not in the chart" in page.locator("#patient-banner").inner_text()
    candidates = page.locator("#candidates tbody tr")
    best = candidates.first
    assert "CHEN, WEI" in best.inner_text() and "100002" in best.inner_text()
    assert "birth date: same" in best.inner_text()
    assert re.match(r"\s*\d", best.locator("td").first.inner_text())  # a score
    for i in range(1, candidates.count()):  # best first
        assert float(candidates.nth(i).locator("td").first.inner_text()) <= float(
            best.locator("td").first.inner_text()
        )
    shot(page, "desk-05-candidates")
    best.get_by_role("button", name="File to this chart").click()
    page.wait_for_url(f"{base}/errors/{unknown.id}?done=file")
    assert "A copy with the chosen MRN was resubmitted" in page.locator(".notice").inner_text()
    h.drain()  # the linked copy with MRN 100002, checked again and filed

    # ... the document is then on CHEN's chart
    page.goto(f"{base}/patients/100002")
    assert "CHEN, WEI" in page.locator("h1").inner_text()  # whose chart
    assert page.locator("#documents").get_by_role("link", name=UNKNOWN_DOC).is_visible()
    shot(page, "desk-06-filed-on-chart")
    page.goto(f"{base}/errors")
    assert page.locator("#error-list tbody").inner_text().strip() == "No items."

    # 3. chart prep: CHEN's booking (8 December) is in a 30-day window, with the chart's problems
    page.get_by_role("link", name="Chart prep").click()
    page.wait_for_url(f"{base}/chart-prep")
    page.get_by_label("Next").fill("30")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"days=30"))
    chen = page.locator("#chart-prep tbody tr").filter(has_text="CHEN, WEI")
    assert chen.count() == 1
    text = chen.inner_text()
    assert "2026-12-08 09:30" in text and "1957-11-02" in text and "100002" in text
    todo = chen.locator("ul.problems li")
    assert todo.count() >= 1
    for i in range(todo.count()):
        item = todo.nth(i).inner_text()
        assert re.search(r"[A-Za-z]+ [a-z]+", item) and not re.search(r"\b[a-z]+_[a-z_]+\b", item), item
    assert any("no consent" in t.lower() for t in todo.all_inner_texts())  # CHEN has none on file
    shot(page, "desk-07-chart-prep")

    # the auditor finds the clerk's actions, with who and why
    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "aud", "/audit")
    table = page.locator("#audit-log tbody").inner_text()
    assert re.search(
        rf"clara\s+Sent back to the sender\s+Error item {mismatch.id}\s+.*dictated for another patient", table
    )
    assert re.search(rf"clara\s+Filed to another chart\s+Error item {unknown.id}", table)
    assert re.search(r"clara\s+Revealed masked data\s+Error item", table) or "which patient is this?" in table
    shot(page, "desk-08-audit")
    assert not problems, problems
    ctx.close()
