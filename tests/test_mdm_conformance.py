"""MDM conformance (issue 14, docs/hl7-conformance.md "Documents (MDM)"): raw MDM bytes in through
an ``ack: on_process`` mdm channel -> the ACK (MSA-1, ERR-2/3/4) and the stored document index out.
Reused numbers, edits with replacement, unknown parents, cancels, EI namespaces, formatted text."""

from __future__ import annotations

import warnings

import pytest
from fastapi import FastAPI
from sqlalchemy import update

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.config.channels import load_channels
from interface.engine.inbound import Engine
from interface.store import document_read
from interface.store import documents as D
from interface.store.db import read_only_engine
from interface.store.document_schema import documents
from interface.web.api.documents import router
from tests.test_adt_events import ROOT, Harness, adt

SAMPLES = ROOT / "sample_messages" / "mdm"
REPORT = "OBX|1|TX|HP||Report text||||||F"


def mdm(
    event: str,
    number: str,
    *,
    parent: str = "",
    mrn: str = "100001",
    cid: str | None = None,
    time: str = "20261120100000",
    availability: str = "AV",
    obx: tuple[str, ...] = (REPORT,),
) -> bytes:
    """An MDM message: ``number``/``parent`` are TXA-12/TXA-13 as sent (EI components included)."""
    txa = [
        "TXA",
        "1",
        "HP",
        "TX",
        "20261120090000",
        "",
        "20261120091500",
        "",
        "",
        "1234^SMITH^JOHN",
        "",
        "",
        number,
        parent,
        "",
        "",
        "",
        "AU",
        "U",
        availability,
        "AC",
    ]
    segs = [
        f"MSH|^~\\&|DOCS|HOSP|IF|HOSP|{time}||MDM^{event}|{cid or event + number}|P|2.5.1",
        f"EVN|{event}|{time}",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
        "PV1|1|I|4W||||||||||||||||V1^^^HOSP^VN",
        "|".join(txa),
        *obx,
    ]
    return ("\r".join(segs) + "\r").encode()


@pytest.fixture
def h(engine) -> Harness:
    channels = [
        c.model_copy(update={"ack": c.ack.model_copy(update={"when": "on_process"})})
        if c.name == "mdm"
        else c
        for c in load_channels(ROOT / "channels")
    ]
    h = Harness(engine, channels=channels)
    h.engine = Engine(engine, clock=h.clock, processor=h.worker)
    h.send(adt("A28", "100001", name="DOE^JANE^Q", dob="19800115"))
    h.drain()
    return h


def ack(out) -> tuple[str, list[str] | None]:
    """(MSA-1, ERR fields or None) of an ACK."""
    segs = out.ack.decode().split("\r")
    msa = next(s for s in segs if s.startswith("MSA|")).split("|")
    err = next((s.split("|") for s in segs if s.startswith("ERR|")), None)
    return msa[1], err


def doc(h: Harness, number: str, namespace: str | None = None) -> dict | None:
    with h.db.connect() as conn:
        return document_read.get_document(conn, number, namespace=namespace)


def content(h: Harness, number: str, **kw) -> bytes | None:
    with h.db.connect() as conn:
        got = document_read.get_content(conn, number, h.pipeline.document_settings, **kw)
    return got[0] if got else None


@pytest.fixture
def client(h):
    app = FastAPI()
    app.state.engine = h.db
    app.state.reader, _private = read_only_engine(h.db)
    app.state.document_settings = h.pipeline.document_settings
    app.state.clock = h.clock
    app.include_router(router)
    with TestClient(app) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# 2. a reused unique document number


@pytest.mark.parametrize("event", ["T01", "T02"])
def test_original_over_an_existing_number_is_ae_205_and_changes_nothing(h, event):
    """A T01/T02 whose TXA-12 is already indexed is AE, ERR-2 TXA-12, ERR-3 205, ERR-4 E; the stored
    document keeps its content and version, and the message waits in the error queue."""
    assert ack(h.send(mdm("T02", "D1", cid="A"), "mdm"))[0] == "AA"
    before = doc(h, "D1")
    out = h.send(
        mdm(event, "D1", cid="B", time="20261120110000", obx=("OBX|1|TX|HP||Someone else's report||||||F",)),
        "mdm",
    )
    code, err = ack(out)
    assert code == "AE" and err[2] == "TXA^1^12" and err[3].startswith("205^") and err[4] == "E"
    after = doc(h, "D1")
    assert (after["version"], after["content_sha256"], after["message_id"]) == (
        before["version"],
        before["content_sha256"],
        before["message_id"],
    )
    assert content(h, "D1") == b"Report text"
    assert [v["action"] for v in after["versions"]] == ["created"]
    (item,) = h.items("error")
    assert (item.reason, item.error_location) == ("duplicate_document", "TXA-12")
    assert "D1" in item.last_error and "already in the index" in item.last_error


def test_resend_of_the_same_message_is_still_a_duplicate_not_an_error(h):
    """The same T02 resent (same control id and bytes) gets the first ACK again; no error item."""
    raw = mdm("T02", "D1", cid="A")
    first = h.send(raw, "mdm")
    again = h.send(raw, "mdm")
    assert again.status == "duplicate" and again.ack == first.ack and ack(again)[0] == "AA"
    assert h.items("error") == [] and len(doc(h, "D1")["versions"]) == 1


@pytest.mark.parametrize("event", ["T05", "T06", "T09", "T10"])
def test_addendum_and_replacement_over_an_existing_number_are_205(h, event):
    """T05/T06/T09/T10 create a new document: a TXA-12 already indexed is AE 205 at TXA-12, and
    neither the parent nor the indexed document changes."""
    h.send(mdm("T02", "P1"), "mdm")
    h.send(mdm("T02", "X1"), "mdm")
    code, err = ack(h.send(mdm(event, "X1", parent="P1", time="20261120110000"), "mdm"))
    assert (code, err[2], err[3][:3]) == ("AE", "TXA^1^12", "205")
    assert doc(h, "P1")["availability"] == "AV" and doc(h, "P1")["replaced_by"] is None
    assert (doc(h, "X1")["version"], doc(h, "X1")["parent_document_number"]) == (1, None)


# ---------------------------------------------------------------------------------------------
# 3. edits, replacements, cancels


def test_t08_with_a_new_number_replaces_the_parent(h, client):
    """T08 whose TXA-12 is new and TXA-13 the edited document: the new document is indexed, the
    parent is obsolete, linked both ways (replaces / replaced_by); the API shows the links."""
    h.send(mdm("T02", "P1^DOCS"), "mdm")
    out = h.send(
        mdm(
            "T08",
            "E1^DOCS",
            parent="P1^DOCS",
            time="20261120110000",
            obx=("OBX|1|TX|HP||Edited text||||||F",),
        ),
        "mdm",
    )
    assert ack(out) == ("AA", None)
    new, old = doc(h, "E1"), doc(h, "P1")
    assert (new["replaces"], new["replaces_namespace"], new["parent_document_number"]) == ("P1", "DOCS", "P1")
    assert (old["availability"], old["obsolete"], old["replaced_by"], old["replaced_by_namespace"]) == (
        "OB",
        True,
        "E1",
        "DOCS",
    )
    assert content(h, "E1") == b"Edited text" and content(h, "P1") == b"Report text"
    assert [v["action"] for v in old["versions"]] == ["created", "replaced"]
    body = client.get("/api/documents/P1").json()
    assert (body["replaced_by"], body["obsolete"], body["status"]) == ("E1", True, "AU")
    assert client.get("/api/documents/E1").json()["replaces"] == "P1"


def test_t08_with_the_same_number_is_a_new_version(h):
    """T08 for a known TXA-12 is an edit in place: version 2 with the new text, version 1 kept."""
    h.send(mdm("T02", "D1"), "mdm")
    h.send(mdm("T08", "D1", time="20261120110000", obx=("OBX|1|TX|HP||Edited||||||F",)), "mdm")
    e = doc(h, "D1")
    assert (e["version"], e["replaced_by"], e["replaces"]) == (2, None, None)
    assert content(h, "D1") == b"Edited" and content(h, "D1", version=1) == b"Report text"


def test_t04_with_other_content_keeps_the_earlier_content_as_a_version(h):
    """T04 (status change with content) over stored content that differs: version 2 holds the new
    text, version 1 still serves the old; the same content again keeps the version."""
    h.send(mdm("T02", "D1"), "mdm")
    h.send(mdm("T04", "D1", cid="S1", time="20261120110000", obx=("OBX|1|TX|HP||Signed text||||||F",)), "mdm")
    e = doc(h, "D1")
    assert (e["version"], [v["action"] for v in e["versions"]]) == (2, ["created", "status_changed"])
    assert content(h, "D1") == b"Signed text" and content(h, "D1", version=1) == b"Report text"
    h.send(mdm("T04", "D1", cid="S2", time="20261120120000", obx=("OBX|1|TX|HP||Signed text||||||F",)), "mdm")
    assert doc(h, "D1")["version"] == 2


@pytest.mark.parametrize("event", ["T05", "T08", "T10"])
def test_unknown_parent_is_204_at_txa13_naming_it(h, event):
    """An addendum, edit with replacement or replacement whose TXA-13 is not indexed: AE, ERR-2
    TXA-13, ERR-3 204; the error names the parent number; nothing is indexed."""
    out = h.send(mdm(event, "N1", parent="GHOST-7"), "mdm")
    code, err = ack(out)
    assert (code, err[2], err[3][:3]) == ("AE", "TXA^1^13", "204")
    (item,) = h.items("error")
    assert (item.reason, item.error_location) == ("unknown_document", "TXA-13")
    assert "parent document GHOST-7 is not in the index" in item.last_error
    assert doc(h, "N1") is None


def test_edit_of_an_unknown_document_without_parent_is_204_at_txa12(h):
    """T07 for a number the index does not hold, with no TXA-13: 204 at TXA-12."""
    code, err = ack(h.send(mdm("T07", "N2", obx=()), "mdm"))
    assert (code, err[2], err[3][:3]) == ("AE", "TXA^1^12", "204")


def test_cancel_is_not_served_as_current_but_its_versions_are(h, client):
    """T11: the entry says cancelled; /content answers 410 naming the readable versions;
    ?version= still serves the old content; /api/documents lists it with status CA."""
    h.send(mdm("T02", "D1", availability="UN"), "mdm")
    assert ack(h.send(mdm("T11", "D1", time="20261120110000", availability="CA", obx=()), "mdm"))[0] == "AA"
    body = client.get("/api/documents/D1").json()
    assert (body["cancelled"], body["availability"]) == (True, "CA")
    r = client.get("/api/documents/D1/content")
    assert r.status_code == 410 and r.json()["status"] == "cancelled" and r.json()["versions"] == [1]
    old = client.get("/api/documents/D1/content", params={"version": 1})
    assert old.status_code == 200 and old.content == b"Report text"
    assert old.headers["x-document-status"] == "cancelled"
    assert [
        d["document_number"]
        for d in client.get("/api/documents", params={"status": "CA"}).json()["documents"]
    ] == ["D1"]


def test_samples_t09_t10_link_both_ways(h):
    """The sample T09/T10 replacements: parent replaced_by, replacement replaces."""
    for name in (
        "mdm_t02_original_pdf.hl7",
        "mdm_t06_addendum_text.hl7",
        "mdm_t09_replacement.hl7",
        "mdm_t10_replacement_content.hl7",
    ):
        assert h.send((SAMPLES / name).read_bytes(), "mdm").status == "processed", name  # MSH-15 AL: CA
    assert (doc(h, "DOC-1006")["replaces"], doc(h, "DOC-1002")["replaced_by"]) == ("DOC-1002", "DOC-1006")
    assert (doc(h, "DOC-1007")["replaces"], doc(h, "DOC-1005")["replaced_by"]) == ("DOC-1005", "DOC-1007")
    assert doc(h, "DOC-1005")["replaces"] is None  # an addendum has a parent but replaces nothing
    assert doc(h, "DOC-1006")["namespace"] == "TRANSCRIBE"


# ---------------------------------------------------------------------------------------------
# 12. document numbers are EI


def test_same_number_in_two_namespaces_is_two_documents(h, client):
    """D1^LAB and D1^RAD are two documents; each status change finds its own; the API needs
    ?namespace= for the number alone (409 listing them)."""
    assert ack(h.send(mdm("T02", "D1^LAB", cid="L"), "mdm"))[0] == "AA"
    assert (
        ack(h.send(mdm("T02", "D1^RAD", cid="R", obx=("OBX|1|TX|HP||Radiology||||||F",)), "mdm"))[0] == "AA"
    )
    h.send(mdm("T11", "D1^RAD", cid="RX", time="20261120110000", obx=()), "mdm")
    assert (doc(h, "D1", "LAB")["availability"], doc(h, "D1", "RAD")["availability"]) == ("AV", "CA")
    assert content(h, "D1", namespace="LAB") == b"Report text"
    assert content(h, "D1", namespace="RAD", version=1) == b"Radiology"
    r = client.get("/api/documents/D1")
    assert r.status_code == 409 and sorted(r.json()["namespaces"]) == ["LAB", "RAD"]
    assert client.get("/api/documents/D1/content").status_code == 409
    lab = client.get("/api/documents/D1", params={"namespace": "LAB"}).json()
    assert (lab["namespace"], lab["availability"]) == ("LAB", "AV")
    assert client.get("/api/documents/D1/content", params={"namespace": "LAB"}).content == b"Report text"
    assert [
        d["namespace"] for d in client.get("/api/documents", params={"namespace": "RAD"}).json()["documents"]
    ] == ["RAD"]


def test_a_bare_number_held_in_two_namespaces_is_204(h):
    """T03 for D1 without a namespace while D1^LAB and D1^RAD are indexed: AE 204 at TXA-12 naming
    both; neither document changes."""
    h.send(mdm("T02", "D1^LAB", cid="L"), "mdm")
    h.send(mdm("T02", "D1^RAD", cid="R"), "mdm")
    code, err = ack(h.send(mdm("T03", "D1", time="20261120110000", obx=()), "mdm"))
    assert (code, err[2], err[3][:3]) == ("AE", "TXA^1^12", "204")
    (item,) = h.items("error")
    assert "LAB" in item.last_error and "RAD" in item.last_error
    assert [doc(h, "D1", ns)["last_event"] for ns in ("LAB", "RAD")] == ["T02", "T02"]


def test_universal_id_is_the_authority_without_a_namespace(h):
    """TXA-12 D1^^1.2.3^ISO: the universal ID is the authority; another universal ID is another document."""
    h.send(mdm("T02", "D1^^1.2.3^ISO", cid="U1"), "mdm")
    h.send(mdm("T02", "D1^^1.2.4^ISO", cid="U2"), "mdm")
    assert h.items("error") == []
    e = doc(h, "D1", "1.2.3")
    assert (e["namespace"], e["universal_id"], e["universal_id_type"]) == (None, "1.2.3", "ISO")


def test_a_stored_document_without_namespace_keeps_working(h, client):
    """A document stored before namespaces were kept (authority ""): a namespaced T03 finds it by
    number and records the namespace; the API finds it by the number alone."""
    h.send(mdm("T02", "OLD1"), "mdm")
    with h.db.begin() as conn:  # as migration 0005 leaves a row written before it
        conn.execute(
            update(documents)
            .where(documents.c.document_number == "OLD1")
            .values(namespace=None, authority="")
        )
    assert doc(h, "OLD1")["namespace"] is None
    assert ack(h.send(mdm("T03", "OLD1^DOCS", time="20261120110000", obx=()), "mdm"))[0] == "AA"
    e = doc(h, "OLD1")
    assert (e["namespace"], e["last_event"], len(e["versions"])) == ("DOCS", "T03", 2)
    assert client.get("/api/documents/OLD1").json()["namespace"] == "DOCS"
    # and a bare T02 over it is still a reuse, never a second document
    code, err = ack(h.send(mdm("T02", "OLD1", cid="again", time="20261120120000"), "mdm"))
    assert (code, err[3][:3]) == ("AE", "205")


# ---------------------------------------------------------------------------------------------
# 11. formatted text


def test_ft_is_served_rendered_and_raw(h, client):
    """OBX FT: /content serves the 2.7.6 rendering as text/plain; ?raw=true the FT as sent."""
    ft = r"IMPRESSION:\.br\\.in +2\1. No acute disease\.br\2. \H\Follow up\N\ in 6 weeks\.sp 2\\.in -2\END"
    h.send(mdm("T02", "F1", obx=(f"OBX|1|FT|HP||{ft}||||||F",)), "mdm")
    r = client.get("/api/documents/F1/content")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "IMPRESSION:\n  1. No acute disease\n  2. Follow up in 6 weeks\n\nEND"
    raw = client.get("/api/documents/F1/content", params={"raw": "true"})
    assert raw.status_code == 200 and raw.text == ft
    tx = h.send(mdm("T02", "F2", obx=("OBX|1|TX|HP||Plain||||||F",)), "mdm")
    assert ack(tx)[0] == "AA"
    assert client.get("/api/documents/F2/content", params={"raw": "true"}).text == "Plain"
