"""The packet preview (#17): the packet a release would build now, read back with pypdf (the
release's page count, "PREVIEW — not released" on every page, no release footer), kept nowhere (no
packet row, no disclosure, the request unchanged), refused as a release would be (409 with the
same words), for the release role only, audited ``roi_preview`` against the patient; through the
desk, the REST API (GET and POST, in OpenAPI) and the console (the link and the release form's
Preview button). SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from interface.desk import roi, roi_release
from interface.desk.roi import RoiError
from interface.desk.roi_packet import PREVIEW
from interface.store.roi_schema import roi_disclosures, roi_events, roi_packets
from tests.test_roi_desk import (  # noqa: F401
    COMPLETE,
    FORM,
    NOW,
    S,
    _pdf_text,
    attorney,
    bearer,
    client,
    do,
    fast_hashing,
    h,
    new,
    ready,
    roi_audits,
    store_of,
    view,
)


def _counts(h) -> tuple[int, int, int]:
    with h.db.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (roi_packets, roi_disclosures, roi_events)
        )


def _is_preview(data: bytes, rid: int) -> list[str]:
    pages = _pdf_text(data)
    for i, text in enumerate(pages, 1):
        flat = " ".join(text.split())
        assert f"{PREVIEW}: request {rid} for" in flat and f"page {i} of {len(pages)}" in flat, i
        assert f", request {rid}, page" not in flat  # the release's footer is on no page
    return pages


def _ready_attorney(h) -> int:
    rid = attorney(h)
    ready(h, rid, checks=("organization",))
    do(h, roi.authorize, S, rid, COMPLETE, user="rel1", store_=store_of(), form=FORM)
    return rid


def test_the_preview_is_the_release_s_packet_marked_and_kept_nowhere(h):
    rid = _ready_attorney(h)
    before, status = _counts(h), view(h, rid)["status"]
    packet = do(h, roi_release.preview, S, rid, user="rel1", store_=store_of())
    pages = _is_preview(packet.pdf, rid)
    assert len(pages) == packet.page_count and "Smith & Partners LLP" in pages[0]
    assert _counts(h) == before and view(h, rid)["status"] == status == "ready"
    # a choice and a page left out, previewed, then released: the same pages
    kw = {"selected": ["DOC-1002"], "page_exclusions": {"DOC-1002": [(1, "third party's information")]}}
    chosen = do(h, roi_release.preview, S, rid, user="rel1", store_=store_of(), **kw)
    assert [m.document_number for m in chosen.manifest] == ["DOC-1002"]
    assert chosen.manifest[0].excluded_pages == ((1, "third party's information"),)
    done = do(h, roi_release.release, S, rid, user="rel1", store_=store_of(), **kw)
    assert done["page_count"] == chosen.page_count
    with h.db.connect() as conn:
        _, data = roi_release.packet_pdf(conn, done["packet_id"], store_of())
    assert not any(PREVIEW in t for t in _pdf_text(data))  # the release is not marked
    whole = do(h, roi_release.release, S, rid, user="rel1", store_=store_of())
    assert whole["page_count"] == packet.page_count  # paper by the page: the fee too
    # refused as the release is, with the same words
    blocked = new(h)
    with pytest.raises(RoiError) as preview_refusal:
        do(h, roi_release.preview, S, blocked, user="rel1", store_=store_of())
    with pytest.raises(RoiError) as release_refusal:
        do(h, roi_release.release, S, blocked, user="rel1", store_=store_of())
    assert str(preview_refusal.value) == str(release_refusal.value)
    assert preview_refusal.value.kind == "conflict" and "not ready" in str(preview_refusal.value)
    with pytest.raises(RoiError, match="PSY-1 cannot be released: Sensitive"):
        do(h, roi_release.preview, S, rid, user="rel1", store_=store_of(), selected=["PSY-1"])


def test_the_api_preview_for_the_release_role_audited_against_the_patient(client, h):
    rel, clerk = bearer(client, "release"), bearer(client, "clerk")
    rid = new(h, delivery="secure_download")
    blocked = client.get(f"/api/roi/requests/{rid}/preview", headers=rel)
    released = client.post(f"/api/roi/requests/{rid}/release", json={}, headers=rel)
    assert blocked.status_code == released.status_code == 409
    assert blocked.json()["detail"] == released.json()["detail"]
    ready(h, rid)
    before = _counts(h)
    assert client.get(f"/api/roi/requests/{rid}/preview", headers=clerk).status_code == 403
    r = client.get(f"/api/roi/requests/{rid}/preview", headers=rel)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "no-store"
    pages = _is_preview(r.content, rid)
    one = client.get(f"/api/roi/requests/{rid}/preview", params={"document": "NOTE-1"}, headers=rel)
    assert one.status_code == 200 and len(_is_preview(one.content, rid)) < len(pages)
    body = {"documents": ["DOC-1002"], "exclude_pages": {"DOC-1002": [{"page": 1, "reason": "third party"}]}}
    posted = client.post(f"/api/roi/requests/{rid}/preview", json=body, headers=rel)
    assert (
        posted.status_code == 200 and "Page 1 left out: third party" in _is_preview(posted.content, rid)[-1]
    )
    bad = client.post(f"/api/roi/requests/{rid}/preview", json={"documents": ["PSY-1"]}, headers=rel)
    assert bad.status_code == 409 and "PSY-1 cannot be released" in bad.json()["detail"]
    assert client.get("/api/roi/requests/999/preview", headers=rel).status_code == 404
    assert _counts(h) == before  # no packet, no disclosure, no event
    looks = [a for a in roi_audits(h) if a.action == "roi_preview"]
    assert len(looks) == 3 and {(a.user, a.patient, a.via, a.target_id) for a in looks} == {
        ("release1", "100001", "api", str(rid))
    }
    assert f'"pages": {len(pages)}' in looks[0].detail
    done = client.post(f"/api/roi/requests/{rid}/release", json={}, headers=rel).json()
    assert done["page_count"] == len(pages)
    op = client.get("/api/openapi.json").json()["paths"]["/api/roi/requests/{request_id}/preview"]
    assert "application/pdf" in op["get"]["responses"]["200"]["content"]
    assert "application/pdf" in op["post"]["responses"]["200"]["content"]


def test_the_console_preview_link_and_button(client, h):
    rel = {**bearer(client, "release"), "accept": "text/html"}
    clerk = {**bearer(client, "clerk"), "accept": "text/html"}
    rid = new(h, delivery="secure_download")
    not_yet = client.get(f"/roi/{rid}", headers=rel).text
    assert 'id="preview-button"' not in not_yet and 'id="preview-link"' not in not_yet
    refused = client.get(f"/roi/{rid}/preview.pdf", headers=rel)
    assert refused.status_code == 409 and "not ready" in refused.text
    ready(h, rid)
    page = client.get(f"/roi/{rid}", headers=rel).text
    assert f'formaction="/roi/{rid}/preview.pdf"' in page and 'id="preview-button"' in page
    assert f'href="/roi/{rid}/preview.pdf"' in page
    assert client.get(f"/roi/{rid}/preview.pdf", headers=clerk).status_code == 403
    before = _counts(h)
    r = client.get(f"/roi/{rid}/preview.pdf", headers=rel)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert 'filename="roi-preview-' in r.headers["content-disposition"]
    default = _is_preview(r.content, rid)
    form = {"document": ["DOC-1002"], "exclude_pages": "DOC-1002 1 third party's information"}
    posted = client.post(f"/roi/{rid}/preview.pdf", data=form, headers=rel)
    assert posted.status_code == 200
    assert "Page 1 left out: third party's information" in _is_preview(posted.content, rid)[-1]
    bad = client.post(f"/roi/{rid}/preview.pdf", data={"document": ["PSY-1"]}, headers=rel)
    assert (
        bad.status_code == 409 and "PSY-1 cannot be released" in bad.text and 'id="release-form"' in bad.text
    )
    assert _counts(h) == before and view(h, rid)["status"] == "ready"
    looks = [a for a in roi_audits(h) if a.action == "roi_preview"]
    assert [(a.via, a.patient) for a in looks] == [("console", "100001")] * 2
    assert len(default) >= 3
