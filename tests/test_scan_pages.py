"""The console pages of scanned paper (interface.web.pages_scan) through the real app: the
indexing queue, the batch list and upload form, a document's thumbnails, viewer and candidate
charts, and the clerk's actions, which change the store as the API's do; roles, CSRF and the
audit rows of every view."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.store import document_read
from interface.store import scan_documents as sd
from interface.store.schema import audit
from interface.web.app import create_app
from tests import scan_kit as kit
from tests.test_pages import PASSWORD, login, text_of
from tests.test_scan import CONSENT, JANE, Scan
from tests.test_web_api import TestClient, fast_hashing  # noqa: F401 (fixture)

NOTES = ["Clinic letter", "Patient: DOE, JANE", "DOB 01/01/1980"]


@pytest.fixture
def rig(engine, tmp_path, fast_hashing):  # noqa: F811
    """A chart M100 (DOE, JANE) and M200; one batch: a cover-sheeted consent (filed) and, before
    it, a letter without a sheet plus a blank page (queued, with a candidate from its text)."""
    s = Scan(engine, tmp_path)
    s.drop("mixed.pdf", kit.batch_pdf([kit.text_page(NOTES), kit.blank_page(), kit.cover_page(JANE)] + [kit.text_page(CONSENT)]))  # fmt: skip
    s.round()
    with engine.begin() as conn:
        users.add_user(conn, "clara", "clerk", PASSWORD, now=s.h.clock())
        users.add_user(conn, "ann", "analyst", PASSWORD, now=s.h.clock())
    app = create_app(engine, document_settings=s.settings, clock=s.h.clock)
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        c.csrf = login(c, "clara")
        yield s, c, app


def _audit(engine, **where) -> list:
    q = select(audit.c.action, audit.c.target_type, audit.c.target_id, audit.c.patient, audit.c.user)
    for k, v in where.items():
        q = q.where(getattr(audit.c, k) == v)
    with engine.connect() as conn:
        return list(conn.execute(q))


def test_the_queue_the_document_page_and_its_page_images(rig):
    s, c, _app = rig
    queued, filed = s.docs()
    assert queued["status"] == "queued" and filed["status"] == "filed"
    r = c.get("/scan")
    assert r.status_code == 200
    row = re.search(rf'<tr data-doc="{queued["id"]}">(.*?)</tr>', r.text, re.S).group(1)
    assert "No cover sheet" in text_of(row) and "no_cover_sheet" not in text_of(row)  # words for codes
    assert "blank pages" in text_of(row)
    assert f'data-doc="{filed["id"]}"' not in r.text  # filed: not waiting
    assert 'href="/scan"' in r.text  # in the navigation

    r = c.get(f"/scan/documents/{queued['id']}")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "not indexed to a chart yet" in page  # the banner, before it is indexed
    assert r.text.count(f'src="/scan/documents/{queued["id"]}/pages/') == 3  # 2 thumbnails, the viewer
    assert "blank (found by the engine)" in page
    cand = re.search(r'<tr data-mrn="M100">(.*?)</tr>', r.text, re.S).group(1)
    assert "DOE, JANE" in text_of(cand) and "Index to this patient" in cand
    assert _audit(s.db, action="view", target_type="scan_document", target_id=str(queued["id"]))

    img = c.get(f"/scan/documents/{queued['id']}/pages/2?size=thumb")
    assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
    assert img.headers["cache-control"] == "no-store"
    assert c.get(f"/scan/documents/{queued['id']}/pages/9").status_code == 404

    r = c.get(f"/scan/documents/{filed['id']}")
    assert "DOE, JANE" in text_of(r.text) and f'href="/documents/SCAN-{filed["id"]}?namespace=SCAN"' in r.text
    c.get(f"/scan/documents/{filed['id']}/pages/1?size=view")
    [viewed] = _audit(s.db, action="view", target_type="scan_page", target_id=f"{filed['id']}/1")
    assert viewed.patient == "M100" and viewed.user == "clara"  # page views audited with the patient


def test_delete_blank_pages_after_confirmation_then_index_to_a_candidate(rig):
    s, c, _app = rig
    queued = s.docs()[0]
    base = f"/scan/documents/{queued['id']}"
    confirm = c.get(f"{base}/delete-pages?pages=2")
    assert confirm.status_code == 200 and "The engine found it blank" in confirm.text
    assert len(s.docs()[0]["pages"]) == 2  # nothing deleted by looking
    assert c.post(f"{base}/delete-pages", data={"pages": "2"}).status_code == 403  # no CSRF token
    r = c.post(f"{base}/delete-pages", data={"pages": "2", "csrf_token": c.csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{base}?done=delete_pages"
    assert len(s.docs()[0]["pages"]) == 1 and s.docs()[0]["ocr_status"] == "pending"
    s.worker.run_once()  # the text read again for the new page list

    r = c.post(f"{base}/index", data={"mrn": "NOPE", "csrf_token": c.csrf})
    assert r.status_code == 409 and "no chart has that MRN" in r.text
    form = {"chosen": "M100", "mrn": "", "type": "CN", "document_date": "2026-10-02", "author": "Dr Who"}
    r = c.post(f"{base}/index", data={**form, "csrf_token": c.csrf}, follow_redirects=False)
    assert r.status_code == 303
    d = s.docs()[0]
    assert d["status"] == "filed" and d["mrn"] == "M100" and d["indexed_by"] == "clara"
    with s.db.connect() as conn:
        entry = document_read.get_document(conn, d["document_number"])
    assert entry["type"] == "CN" and entry["activity_at"] == "20261002" and entry["origin"] == "scan"
    chart = c.get("/patients/M100").text
    assert d["document_number"] in chart
    assert [a.patient for a in _audit(s.db, action="scan_index")] == ["M100"]
    assert {a.action for a in _audit(s.db, target_id=str(queued["id"]))} >= {"scan_delete_pages", "view"}
    again = c.post(f"{base}/index", data={**form, "csrf_token": c.csrf})
    assert again.status_code == 409 and "not waiting for a clerk" in again.text


def test_rotate_split_merge_and_delete(rig):
    s, c, _app = rig
    doc = s.docs()[0]
    base = f"/scan/documents/{doc['id']}"
    t = c.csrf
    r = c.post(
        f"{base}/rotate", data={"pages": "1", "degrees": "90", "csrf_token": t}, follow_redirects=False
    )
    assert r.status_code == 303 and s.docs()[0]["pages"][0]["rotate"] == 90
    assert c.post(f"{base}/rotate", data={"pages": "1", "degrees": "45", "csrf_token": t}).status_code == 400
    r = c.post(f"{base}/split", data={"at": "2", "csrf_token": t}, follow_redirects=False)
    new_id = int(re.search(r"/scan/documents/(\d+)", r.headers["location"]).group(1))
    assert new_id != doc["id"] and len(s.docs()[0]["pages"]) == 1
    page = c.get(base).text
    assert f'<option value="{new_id}">' in page  # the merge form offers the other queued document
    r = c.post(f"{base}/merge", data={"other": str(new_id), "csrf_token": t}, follow_redirects=False)
    assert r.status_code == 303 and len(s.docs()[0]["pages"]) == 2
    assert c.post(f"{base}/merge", data={"other": str(doc["id"]), "csrf_token": t}).status_code == 409
    r = c.post(f"{base}/delete", data={"csrf_token": t}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/scan?done=delete"
    with s.db.connect() as conn:
        assert sd.load(conn, doc["id"])["status"] == "deleted"
    actions = [a.action for a in _audit(s.db) if a.action.startswith("scan_")]
    assert actions == ["scan_rotate", "scan_split", "scan_merge", "scan_delete"]


def test_upload_form_and_the_batch_list_for_clerks_and_analysts(rig):
    s, c, app = rig
    pdf = kit.batch_pdf([kit.text_page(["Outside records", "Patient: ROE, RICHARD"])])
    files = [
        ("files", ("outside.pdf", pdf, "application/pdf")),
        ("files", ("notes.txt", b"hello", "text/plain")),
    ]
    assert c.post("/scan/batches", files=files).status_code == 403  # the form's CSRF token is needed
    r = c.post("/scan/batches", files=files, data={"csrf_token": c.csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/scan/batches?uploaded=")
    rows = {b["filename"]: b for b in s.batches()}
    assert rows["outside.pdf"]["source"] == "upload" and rows["outside.pdf"]["status"] == "received"
    assert rows["notes.txt"]["status"] == "rejected"
    page = c.get(r.headers["location"]).text
    assert "Received: batch" in page and "outside.pdf" in page
    rejected = re.search(rf'<tr data-batch="{rows["notes.txt"]["id"]}"[^>]*>(.*?)</tr>', page, re.S).group(1)
    assert "Rejected" in rejected and "not a PDF or an image" in rejected
    assert _audit(s.db, action="scan_upload")
    nothing = c.post("/scan/batches", files={"files": ("", b"", "application/octet-stream")}, data={"csrf_token": c.csrf})  # fmt: skip
    assert nothing.status_code == 400 and "Choose a scanned file" in nothing.text

    with TestClient(app, base_url="http://testserver") as a:
        a.headers["accept"] = "text/html"
        csrf = login(a, "ann")
        page = a.get("/scan/batches")
        assert page.status_code == 200 and "outside.pdf" not in page.text and "mixed.pdf" not in page.text
        assert 'id="upload"' not in page.text and 'href="/scan/batches"' in page.text
        queued = s.docs()[0]["id"]
        for path in ("/scan", f"/scan/documents/{queued}", f"/scan/documents/{queued}/pages/1"):
            assert a.get(path).status_code == 403, path
        assert a.post("/scan/batches", files=files, data={"csrf_token": csrf}).status_code == 403
