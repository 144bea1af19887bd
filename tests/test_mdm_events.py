"""MDM T01..T11 end to end: the sample messages through the mdm channel, queue, mapping and
document index, checked after every step; versions kept; cancelled stays visible; out-of-order
and older messages have a defined outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from interface.desk import errorqueue
from interface.store import document_read, workqueue
from interface.store import documents as D
from tests.test_adt_events import ROOT, Harness, adt
from tests.test_unknown_patient import mdm

SAMPLES = ROOT / "sample_messages" / "mdm"


def doc(h: Harness, number: str) -> dict | None:
    with h.db.connect() as conn:
        return document_read.get_document(conn, number)


def index(h: Harness) -> list[str]:
    with h.db.connect() as conn:
        return [d["document_number"] for d in document_read.list_documents(conn, mrn="100001")]


# (sample, document, {field: expected}) checked right after the sample is applied
STEPS: list[tuple[str, str, dict]] = [
    (
        "mdm_t01_original.hl7",
        "DOC-1001",
        {
            "status": "DI",
            "version": 1,
            "type": "HP",
            "content_type": None,
            "availability": "UN",
            "author": {"id": "1234", "family": "SMITH", "given": "JOHN", "authority": "HOSP"},
        },
    ),
    (
        "mdm_t02_original_pdf.hl7",
        "DOC-1002",
        {
            "status": "AU",
            "version": 1,
            "content_type": "application/pdf",
            "authenticated_at": "2026-11-20T10:55:00+00:00",
        },
    ),
    ("mdm_t03_status_change.hl7", "DOC-1001", {"status": "AU", "version": 1, "availability": "AV"}),
    (
        "mdm_t04_status_change_ft.hl7",
        "DOC-1001",
        {"status": "LA", "version": 1, "content_type": "text/plain; charset=utf-8"},
    ),
    (
        "mdm_t05_addendum.hl7",
        "DOC-1004",
        {"parent_document_number": "DOC-1002", "version": 1, "status": "DI"},
    ),
    (
        "mdm_t06_addendum_text.hl7",
        "DOC-1005",
        {"parent_document_number": "DOC-1002", "status": "AU", "content_kind": "text"},
    ),
    ("mdm_t07_edit.hl7", "DOC-1001", {"version": 2, "content_type": None, "last_event": "T07"}),
    ("mdm_t08_edit_content.hl7", "DOC-1001", {"version": 3, "content_kind": "text", "last_event": "T08"}),
    (
        "mdm_t09_replacement.hl7",
        "DOC-1002",
        {"availability": "OB", "replaced_by": "DOC-1006", "obsolete": True},
    ),
    ("mdm_t10_replacement_content.hl7", "DOC-1005", {"availability": "OB", "replaced_by": "DOC-1007"}),
    ("mdm_t11_cancel.hl7", "DOC-1004", {"availability": "CA", "cancelled": True}),
]


@pytest.fixture
def h(engine) -> Harness:
    h = Harness(engine)
    h.send(adt("A28", "100001", name="DOE^JANE^Q", dob="19800115"))
    h.drain()
    return h


def test_t01_to_t11_step_by_step(h):
    """Each sample in event order; the entry it touches checked right after (content types as
    served by the content API)."""
    for sample, number, expected in STEPS:
        assert h.send((SAMPLES / sample).read_bytes(), "mdm").status == "accepted", sample
        h.drain()
        assert h.items("error") == [] and h.items("held") == [], sample
        e = doc(h, number)
        assert e is not None, sample
        got = {k: e[k] for k in expected}
        if "content_type" in expected and expected["content_type"] and e["content_type"]:
            with h.db.connect() as conn:
                got["content_type"] = document_read.get_content(conn, number, h.pipeline.document_settings)[1]
        assert got == expected, sample
    # the replacement and addendum entries exist, linked to their parents
    assert doc(h, "DOC-1006")["parent_document_number"] == "DOC-1002"
    assert doc(h, "DOC-1007")["parent_document_number"] == "DOC-1005"
    # a cancelled document stays visible in the index and on the chart
    assert "DOC-1004" in index(h)
    summary = {d["document_number"]: d for d in h.chart("100001")["documents"]}
    assert summary["DOC-1004"]["cancelled"] is True and summary["DOC-1002"]["obsolete"] is True


def test_versions_are_kept_with_their_content(h):
    """T04 content, T07 (no content), T08 content: every version stays readable."""
    for sample in (
        "mdm_t01_original.hl7",
        "mdm_t04_status_change_ft.hl7",
        "mdm_t07_edit.hl7",
        "mdm_t08_edit_content.hl7",
    ):
        h.send((SAMPLES / sample).read_bytes(), "mdm")
    h.drain()
    e = doc(h, "DOC-1001")
    assert [(v["version"], v["event"], v["action"]) for v in e["versions"]] == [
        (1, "T01", "created"),
        (1, "T04", "status_changed"),
        (2, "T07", "new_version"),
        (3, "T08", "new_version"),
    ]
    settings = h.pipeline.document_settings
    with h.db.connect() as conn:
        v1 = document_read.get_content(conn, "DOC-1001", settings, version=1)
        v2 = document_read.get_content(conn, "DOC-1001", settings, version=2)
        v3 = document_read.get_content(conn, "DOC-1001", settings)
    assert v1 is not None and v3 is not None and v1[0] != v3[0]
    assert v2 is None


def test_status_change_for_unknown_document_is_an_error_item(h):
    """Out of order: a T03 before its T01 is an error item (unknown_document, at TXA-12); the
    patient's later messages wait behind it and flow once a clerk discards it."""
    h.send(mdm("T03", "D9", "100001", status="AU", time="20261120110000"), "mdm")
    h.send(mdm("T02", "D9", "100001", status="DI", time="20261120120000"), "mdm")
    h.drain()
    (err,) = h.items("error")
    assert (err.reason, err.error_location) == ("unknown_document", "TXA-12")
    assert "D9 is not in the index" in err.last_error
    assert doc(h, "D9") is None
    with h.db.begin() as conn:
        errorqueue.discard_item(conn, err.id, user="clerk", reason="status before the document", now=h.now)
    h.drain()
    assert doc(h, "D9")["status"] == "DI"


def test_addendum_to_unknown_parent_is_an_error_item(h):
    msg = mdm("T05", "D8", "100001").replace("|D8||", "|D8|NOPARENT|")
    h.send(msg, "mdm")
    h.drain()
    (err,) = h.items("error")
    assert err.reason == "unknown_document" and err.error_location == "TXA-13"


def test_older_message_is_kept_as_history_only(h):
    """A T08 whose MSH-7 is older than the one that made the current state changes nothing and
    is recorded as ignored_older."""
    h.send(mdm("T02", "D7", "100001", status="DI", time="20261120120000"), "mdm")
    h.send(mdm("T08", "D7", "100001", status="AU", time="20261120080000"), "mdm")
    h.drain()
    e = doc(h, "D7")
    assert (e["version"], e["status"]) == (1, "DI")
    assert [v["action"] for v in e["versions"]] == ["created", "ignored_older"]
    assert h.items("error") == []


def test_resend_changes_nothing(h):
    """The same message resent (same control id and body) is a duplicate: one version."""
    raw = (SAMPLES / "mdm_t02_original_pdf.hl7").read_bytes()
    first = h.send(raw, "mdm")
    again = h.send(raw, "mdm")
    h.drain()
    assert again.status == "duplicate" and again.ack == first.ack
    assert len(doc(h, "DOC-1002")["versions"]) == 1


def test_samples_are_all_mdm_events():
    """One sample per event T01..T11."""
    events = sorted(Path(s).name[4:7].upper() for s, _, _ in STEPS)
    assert events == [f"T{n:02d}" for n in range(1, 12)]


def test_event_outside_t01_t11_is_refused_at_receipt(h):
    """An MDM^T12 (a document query, not a notification) cannot be filed: AR 201 at MSH-9.2,
    kept raw in the error queue; the patient's next document is filed."""
    out = h.send(mdm("T12", "DOC-9", "100001"), "mdm")
    assert (out.status, out.ack_code) == ("rejected", "AR")
    assert b"|201^" in out.ack  # the channel's accept list or the document index refuses it
    assert h.send(mdm("T02", "DOC-9", "100001"), "mdm").ack_code == "AA"
    h.drain()
    assert doc(h, "DOC-9") is not None
    assert [i.reason for i in h.items("error")] == ["unsupported_event"]
