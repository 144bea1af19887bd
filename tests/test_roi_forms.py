"""A ROI console form the desk refuses is shown again, as it was filled in, with the reason beside
it and a 4xx status (400 invalid, 409 not now, 422 an unknown value): the new request, the identity
checklist, status moves, withdrawal, denial, extension, the authorization checklist, revocation, the
release (page exclusions), a download link, the hand-entered disclosure and the accounting.
Nothing is changed by a refused form."""

from __future__ import annotations

import html

import pytest

from interface.desk import roi
from tests.test_roi_desk import NOW, S, bearer, client, do, fast_hashing, h, new, ready  # noqa: F401


def page(c, role="release"):
    return {**bearer(c, role), "accept": "text/html"}


def refused(r, form: str, status: int, words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text[-2000:])
    assert r.headers["content-type"].startswith("text/html")
    text = html.unescape(r.text)
    assert f'id="{form}-refused"' in r.text, r.text[-3000:]
    assert words in text, text[-3000:]
    return r.text


NEW = {
    "mrn": "100001",
    "requester_type": "attorney",
    "requester_name": "Smith & Partners LLP",
    "requester_address": "1 Court Street",
    "scope_from": "2026-11-01",
    "scope_to": "2026-11-30",
    "purpose": "legal",
    "delivery": "email",
    "received_on": "2026-12-01",
    "purpose_text": "personal injury claim",
}


def test_a_refused_new_request_keeps_what_was_entered(client, h):
    c = client
    r = c.post("/roi/new", data=NEW, headers=page(c, "clerk"))  # e-mail delivery without an address
    text = refused(r, "new", 400, "delivery by e-mail needs the requester's e-mail address")
    assert 'value="Smith &amp; Partners LLP"' in text and 'value="2026-11-01"' in text
    assert '<option value="attorney" selected>' in text and '<option value="email" selected>' in text
    assert 'value="personal injury claim"' in text and "RIVERA" in text  # the banner, the form again
    r = c.post("/roi/new", data={**NEW, "mrn": "NOPE", "delivery": "mail"}, headers=page(c, "clerk"))
    refused(r, "new", 422, "no patient with this MRN")
    r = c.post(
        "/roi/new", data={**NEW, "delivery": "mail", "scope_to": "2026-10-01"}, headers=page(c, "clerk")
    )
    refused(r, "new", 400, "the scope's date range ends before it starts")
    with h.db.connect() as conn:
        assert roi.queue(conn, S, NOW.date()) == []


@pytest.mark.parametrize(
    "path,data,form,status,words,kept",
    [
        ("status", {"status": "in_progress"}, "status", 409, "identity is not verified", None),
        (
            "status",
            {"status": "withdrawn", "note": " "},
            "withdraw",
            400,
            "say why the request is withdrawn",
            None,
        ),
        ("deny", {"reason": "   "}, "deny", 400, "reason is required", None),
        (
            "authorization",
            {"description": "All notes", "expires_on": "next June"},
            "authorization",
            400,
            "expires on must be a date",
            'value="All notes"',
        ),
        (
            "revoke",
            {"reason": "the patient's letter of 2026-12-09"},
            "revoke",
            409,
            "the request has no authorization",
            "the patient&#39;s letter of 2026-12-09",
        ),
        (
            "release",
            {"exclude_pages": "DOC-1002 three pages"},
            "release",
            400,
            "write the document, the page number and the reason",
            "DOC-1002 three pages",
        ),
        (
            "release",
            {"document": "DOC-1002"},
            "release",
            409,
            "cannot release: The request is received, not ready",
            None,
        ),
    ],
)
def test_a_refused_request_form_is_shown_again_beside_its_reason(
    client, h, path, data, form, status, words, kept
):
    rid = new(h, requester_type="attorney", purpose="legal", delivery="mail", requester_address="1 Court St")
    r = client.post(f"/roi/{rid}/{path}", data=data, headers=page(client))
    text = refused(r, form, status, words)
    assert f"Request {rid}" in text and 'id="refusal-summary"' in text
    if kept:
        assert kept in text
    with h.db.connect() as conn:
        assert roi.view(conn, S, rid, NOW.date())["status"] == "received"


def test_the_second_extension_and_a_verify_on_a_closed_request(client, h):
    rid = new(h)
    assert (
        client.post(
            f"/roi/{rid}/extend",
            data={"reason": "records off site"},
            headers=page(client),
            follow_redirects=False,
        ).status_code
        == 303
    )
    r = client.post(f"/roi/{rid}/extend", data={"reason": "still off site"}, headers=page(client))
    text = refused(r, "extend", 409, "already extended 1 time(s)")
    assert 'value="still off site"' in text
    do(h, roi.set_status, S, rid, "withdrawn", user="rel1", note="the patient came in person")
    r = client.post(f"/roi/{rid}/verify", data={"check": "photo_id"}, headers=page(client, "clerk"))
    refused(r, "verify", 409, "the request is withdrawn")
    assert client.post("/roi/999/deny", data={"reason": "x"}, headers=page(client)).status_code == 404


def test_a_refused_link_disclosure_and_accounting(client, h):
    rid = new(h)
    ready(h, rid)
    shown = client.post(f"/roi/{rid}/release", data={"document": "DOC-1002"}, headers=page(client))
    assert shown.status_code == 200 and 'id="new-link-url"' in shown.text  # the link, shown this once
    r = client.post(f"/roi/{rid}/links", data={"packet_id": "1", "days": "400"}, headers=page(client))
    text = refused(r, "link", 400, "a link works for 1 to 90 days")
    assert 'value="400"' in text
    entered = {
        "mrn": "100001",
        "disclosed_on": "2027-01-01",
        "recipient_name": "County Health Department",
        "recipient_type": "public_health",
        "purpose": "Communicable disease report",
        "basis": "public_health",
        "description": "Laboratory result",
    }
    r = client.post("/roi/disclosures", data=entered, headers=page(client))
    text = refused(r, "log-disclosure", 400, "not in the future")
    assert 'value="County Health Department"' in text and 'value="2027-01-01"' in text
    assert '<option value="public_health" selected>Public health (45 CFR' in text
    r = client.post("/roi/accounting", data={"mrn": "100001", "start": "2019-01-01"}, headers=page(client))
    text = refused(r, "accounting", 400, "at most 6 years")
    assert 'value="2019-01-01"' in text
    r = client.post("/roi/accounting", data={"mrn": "NOPE"}, headers=page(client))
    refused(r, "accounting", 422, "no patient with this MRN")
