"""The release-of-information console pages with a real app (token auth, so no CSRF field needed):
the queue with due dates and overdue marked, a request logged from the patient search, the
identity checklist, status moves (clerks may log and verify, not move or release), the
authorization checklist with the signed form uploaded (missing elements named), what a release
sends and leaves out, the release and the packet downloaded, the disclosure log, an entered
disclosure and the accounting (page and PDF letter); every view audited."""

from __future__ import annotations

from sqlalchemy import select

from interface.store import content
from interface.store.schema import audit
from tests.test_roi_desk import COMPLETE, FORM, NOW, bearer, client, fast_hashing, h, new  # noqa: F401


def page(c, role):
    return {**bearer(c, role), "accept": "text/html"}


def test_from_the_queue_to_the_release_in_the_console(client, h):
    clerk, rel = page(client, "clerk"), page(client, "release")
    late = new(h, received_on="2026-11-01")
    q = client.get("/roi", headers=clerk)
    assert q.status_code == 200 and f'href="/roi/{late}"' in q.text and "overdue 9 day(s)" in q.text
    assert 'href="/roi"' in q.text  # the nav link
    found = client.get("/roi/new", params={"family": "riv"}, headers=clerk)
    assert 'href="/roi/new?mrn=100001"' in found.text
    form = client.get("/roi/new", params={"mrn": "100001"}, headers=clerk)
    assert "RIVERA" in form.text and 'id="new-request-form"' in form.text
    r = client.post(
        "/roi/new",
        data={
            "mrn": "100001",
            "requester_type": "attorney",
            "requester_name": "Smith & Partners LLP",
            "requester_address": "1 Court Street\nSpringfield IL 62701",
            "scope_from": "2026-11-01",
            "scope_to": "2026-11-30",
            "purpose": "legal",
            "delivery": "mail",
            "received_on": "2026-12-01",
        },
        headers=clerk,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    url = r.headers["location"].split("?")[0]
    rid = int(url.rsplit("/", 1)[1])
    view = client.get(url, headers=clerk)
    assert "Request %d" % rid in view.text and "2026-12-31" in view.text and "patient-banner" in view.text
    assert "Paper copy at $0.25 per page" in view.text and 'id="release-form"' not in view.text
    client.post(f"/roi/{rid}/verify", data={"check": "organization"}, headers=clerk, follow_redirects=False)
    assert client.post(f"/roi/{rid}/status", data={"status": "in_progress"}, headers=clerk).status_code == 403
    for s in ("in_progress", "ready"):
        assert (
            client.post(
                f"/roi/{rid}/status", data={"status": s}, headers=rel, follow_redirects=False
            ).status_code
            == 303
        )
    blocked = client.get(url, headers=rel).text
    assert 'data-element="authorization"' in blocked and 'id="release-button"' not in blocked
    checklist = {k: ("1" if v is True else v) for k, v in COMPLETE.items() if k != "conditioning_statement"}
    r = client.post(
        f"/roi/{rid}/authorization",
        data=checklist,
        files={"signed_form": ("auth.pdf", FORM, "application/pdf")},
        headers=rel,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    missing = client.get(url, headers=rel).text
    assert "Missing element: The statement that treatment is not conditioned on signing" in missing
    client.post(f"/roi/{rid}/authorization", data={**checklist, "conditioning_statement": "1"}, headers=rel)
    ok = client.get(url, headers=rel).text
    assert 'id="authorization-complete"' in ok and "auth.pdf" in ok and 'id="release-button"' in ok
    assert 'data-number="PSY-1"' in ok and "psychotherapy notes are released only" in ok
    r = client.post(
        f"/roi/{rid}/release",
        data={"document": ["DOC-1002", "NOTE-1"], "exclude_pages": "NOTE-1 1 third party's information"},
        headers=rel,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    released = client.get(url, headers=rel).text
    assert "Released" in released and "page 1 left out: third party&#39;s information" in released
    pdf = client.get("/roi/packets/1", headers=rel)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert content.sha256_hex(pdf.content) in released
    log = client.get("/roi/disclosures", params={"mrn": "100001"}, headers=rel)
    assert "Smith &amp; Partners LLP" in log.text and "released here" in log.text
    client.post(
        "/roi/disclosures",
        data={
            "mrn": "100001",
            "disclosed_on": "2026-03-03",
            "recipient_name": "County Health Department",
            "recipient_type": "public_health",
            "purpose": "Communicable disease report",
            "basis": "public_health",
            "description": "Laboratory result",
        },
        headers=rel,
    )
    acc = client.post("/roi/accounting", data={"mrn": "100001", "format": "html"}, headers=rel)
    assert acc.status_code == 200 and "1 disclosure(s) to account for" in acc.text
    assert "County Health Department" in acc.text
    letter = client.post("/roi/accounting", data={"mrn": "100001", "format": "pdf"}, headers=rel)
    assert letter.content.startswith(b"%PDF")
    assert client.get("/roi/disclosures", headers=clerk).status_code == 403
    bad = client.post("/roi/accounting", data={"mrn": "100001", "start": "2019-01-01"}, headers=rel)
    assert bad.status_code == 400 and "at most 6 years" in bad.text
    with h.db.connect() as conn:
        actions = {
            r.action for r in conn.execute(select(audit.c.action).where(audit.c.target_type == "roi_request"))
        }
    assert {"roi_list", "roi_new", "roi_view", "roi_verify", "roi_authorize", "roi_release"} <= actions
    assert {"roi_packet_download", "roi_disclosures", "roi_log_disclosure", "roi_accounting"} <= actions
