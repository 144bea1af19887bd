"""The document index read API: list, entry with versions, content, deficiencies worklist."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # this starlette warns at import about httpx2
    from fastapi.testclient import TestClient

from interface.store.db import read_only_engine
from interface.web.api.documents import router
from tests.test_adt_events import Harness, adt

ROOT = Path(__file__).resolve().parent.parent
MDM = ROOT / "sample_messages" / "mdm"


def mdm(
    event: str,
    number: str,
    *,
    mrn: str = "100001",
    status: str = "DI",
    author: str = "",
    obx: tuple[str, ...] = (),
    time: str = "20261120100000",
    type_: str = "HP",
    cid: str | None = None,
) -> str:
    txa = [
        "TXA",
        "1",
        type_,
        "TX",
        "20261120090000",
        "",
        "20261120091500",
        "",
        "",
        author,
        "",
        "",
        number,
        "",
        "",
        "",
        "",
        status,
        "U",
        "AV",
        "AC",
    ]
    return (
        "\r".join(
            [
                f"MSH|^~\\&|DOCS|HOSP|IF|HOSP|{time}||MDM^{event}|{cid or number + event}|P|2.5.1",
                f"EVN|{event}|{time}",
                f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
                "PV1|1|I|4W||||||||||||||||V1^^^HOSP^VN",
                "|".join(txa),
                *obx,
            ]
        )
        + "\r"
    )


@pytest.fixture
def h(engine):
    h = Harness(engine)
    h.send(adt("A28", "100001"))
    h.send(adt("A28", "100009"))
    for f in sorted(MDM.glob("*.hl7")):
        h.send(f.read_bytes(), "mdm")
    h.drain()
    assert h.items("error") == [] and h.items("held") == []
    return h


@pytest.fixture
def client(h):
    app = FastAPI()
    app.state.engine = h.db
    app.state.reader, _private = read_only_engine(h.db)  # as web.create_app does
    app.state.document_settings = h.pipeline.document_settings
    app.state.clock = h.clock
    app.include_router(router)
    with TestClient(app) as c:
        yield c


def numbers(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [d["document_number"] for d in resp.json()["documents"]]


def test_list_by_mrn_newest_first_with_filters_and_pages(client):
    """GET /api/documents filters by MRN, type (TXA-2) and status (TXA-17 or TXA-19), newest first."""
    all_ = numbers(client.get("/api/documents", params={"mrn": "100001"}))
    assert all_ == ["DOC-1007", "DOC-1006", "DOC-1005", "DOC-1004", "DOC-1002", "DOC-1001"]
    assert numbers(client.get("/api/documents", params={"mrn": "100001", "type": "cn"})) == [
        "DOC-1006",
        "DOC-1002",
    ]
    assert numbers(client.get("/api/documents", params={"status": "CA"})) == ["DOC-1004"]
    assert numbers(client.get("/api/documents", params={"status": "LA"})) == ["DOC-1001"]
    page = client.get("/api/documents", params={"mrn": "100001", "limit": 2, "offset": 2}).json()
    assert [d["document_number"] for d in page["documents"]] == all_[2:4]
    assert (page["limit"], page["offset"]) == (2, 2)
    assert numbers(client.get("/api/documents", params={"mrn": "100009"})) == []
    assert client.get("/api/documents", params={"limit": 0}).status_code == 422
    assert client.get("/api/documents", params={"offset": 2**63}).status_code == 422
    assert client.get("/api/deficiencies", params={"offset": 2**63}).status_code == 422
    assert client.get("/api/documents/DOC-1001/content", params={"version": 2**63}).status_code == 422


def test_list_entries_carry_the_contract_fields(client):
    """Each entry has the PRODUCT.md fields; a cancelled one stays listed, marked cancelled."""
    docs = {d["document_number"]: d for d in client.get("/api/documents").json()["documents"]}
    d = docs["DOC-1002"]
    for key in (
        "document_number",
        "parent_document_number",
        "mrn",
        "visit_number",
        "type",
        "status",
        "activity_at",
        "origination_at",
        "author",
        "authenticated_by",
        "authenticated_at",
        "confidentiality",
        "availability",
        "version",
        "content_type",
        "content_size",
        "content_sha256",
        "deficiencies",
    ):
        assert key in d
    assert (d["type"], d["status"], d["content_type"], d["obsolete"]) == ("CN", "AU", "application/pdf", True)
    assert d["authenticated_by"]["family"] == "JONES"
    assert docs["DOC-1004"]["cancelled"] is True


def test_merged_away_mrn_lists_the_survivors_documents(client, h):
    """After an A40 the old MRN's documents are listed under either MRN."""
    h.send(adt("A40", "100009", time="20261121000000", mrg="100001"))
    h.drain()
    assert len(numbers(client.get("/api/documents", params={"mrn": "100001"}))) == 6
    assert {d["mrn"] for d in client.get("/api/documents", params={"mrn": "100009"}).json()["documents"]} == {
        "100009"
    }


def test_entry_with_version_history(client):
    """GET /api/documents/{number}: the entry and every version, oldest first, with its event."""
    r = client.get("/api/documents/DOC-1001")
    assert r.status_code == 200
    e = r.json()
    assert (e["version"], e["status"]) == (3, "LA")
    assert [(v["version"], v["event"], v["action"]) for v in e["versions"]] == [
        (1, "T01", "created"),
        (1, "T03", "status_changed"),
        (1, "T04", "status_changed"),
        (2, "T07", "new_version"),
        (3, "T08", "new_version"),
    ]
    assert all(v["message_id"] for v in e["versions"])
    assert client.get("/api/documents/NOPE").status_code == 404


def test_content_bytes_with_media_type(client):
    """The PDF comes back as sent, typed application/pdf, and never runs in our origin."""
    r = client.get("/api/documents/DOC-1002/content")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "sandbox"
    text = client.get("/api/documents/DOC-1001/content")
    assert text.headers["content-type"].startswith("text/plain")
    assert "charset=utf-8" in text.headers["content-type"]


def test_content_of_an_older_version_and_missing_content(client):
    """?version= gives that version's content; a version without content (T07) is 404."""
    v1 = client.get("/api/documents/DOC-1001/content", params={"version": 1})
    v3 = client.get("/api/documents/DOC-1001/content")
    assert v1.status_code == v3.status_code == 200 and v1.content != v3.content
    assert client.get("/api/documents/DOC-1001/content", params={"version": 2}).status_code == 404
    assert client.get("/api/documents/DOC-1001/content", params={"version": 9}).status_code == 404
    assert client.get("/api/documents/NOPE/content").status_code == 404
    assert client.get("/api/documents/DOC-1001/content", params={"part": 9}).status_code == 404


def test_reference_pointer_answers_json(client, h):
    """Content sent as an RP reference pointer is a reference, not bytes: JSON naming it."""
    h.send(
        mdm(
            "T02",
            "DOC-RP",
            obx=("OBX|1|RP|DOC||https://docs.example.org/d/77^DOCSRV^application^pdf||||||F",),
        ),
        "mdm",
    )
    h.drain()
    assert h.items("error") == []
    r = client.get("/api/documents/DOC-RP/content")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["kind"] == "reference" and body["version"] == 1
    assert "https://docs.example.org/d/77" in body["references"][0]


def test_deficiencies_worklist_and_entry(client, h):
    """An unsigned document without author: an author finding at once, overdue after 14 days;
    filters by MRN, type and author; the finding clears when a later message fixes it."""
    h.send(mdm("T02", "DOC-X", obx=("OBX|1|TX|HP||text||||||F",)), "mdm")
    h.send(mdm("T02", "DOC-Y", author="77^BROWN^ANN", type_="DS", obx=("OBX|1|TX|HP||text||||||F",)), "mdm")
    h.drain()
    rows = client.get("/api/deficiencies", params={"mrn": "100001"}).json()["deficiencies"]
    assert {(r["document_number"], r["rule"]) for r in rows} == {("DOC-X", "author_present")}
    assert client.get("/api/documents/DOC-X").json()["deficiencies"][0]["rule"] == "author_present"
    h.advance(timedelta(days=30).total_seconds())
    rows = client.get("/api/deficiencies").json()["deficiencies"]
    assert {(r["document_number"], r["rule"]) for r in rows} == {
        ("DOC-X", "author_present"),
        ("DOC-X", "unsigned_overdue"),
        ("DOC-Y", "unsigned_overdue"),
    }
    by_author = client.get("/api/deficiencies", params={"author": "brown"}).json()
    assert [r["document_number"] for r in by_author["deficiencies"]] == ["DOC-Y"]
    assert by_author["total"] == 1
    assert client.get("/api/deficiencies", params={"type": "DS"}).json()["total"] == 1
    h.send(
        mdm("T03", "DOC-X", author="77^BROWN^ANN", status="LA", time="20261120120000").replace(
            "|AC\r", "|AC||77^BROWN^ANN^^^^^^^^^^^^20261120115500\r"
        ),
        "mdm",
    )
    h.drain()
    assert h.items("error") == []
    rows = client.get("/api/deficiencies").json()["deficiencies"]
    assert {(r["document_number"], r["rule"]) for r in rows} == {("DOC-Y", "unsigned_overdue")}
    assert client.get("/api/documents/DOC-X").json()["deficiencies"] == []
