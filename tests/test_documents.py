"""The document index: MDM T01..T11 semantics, history, out-of-order arrival, patients, merges."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from interface.hl7.errors import HL7Error, Hold, PermanentError, RequiredFieldMissing
from interface.mapping.records import CLEAR, DocumentContent
from interface.store import document_read
from interface.store import documents as D
from interface.store.document_schema import document_blobs, document_versions
from tests.test_documents_support import NOW, add_patient, document_from_message, load_sample, mdm

SETTINGS = D.DocumentSettings()
TEXT = ("OBX|1|TX|HP||First line||||||F", "OBX|2|TX|HP||Second line||||||F")


@pytest.fixture
def conn(engine):
    with engine.begin() as c:
        add_patient(c, "100001")
        add_patient(c, "200002")
    with engine.begin() as c:
        yield c


def apply(conn, msg, message_id=1, settings=SETTINGS, **changes):
    doc = document_from_message(msg)
    for k, v in changes.items():
        setattr(doc, k, v)
    return D.apply_documents(conn, [doc], msg, message_id=message_id, now=NOW, settings=settings)


def test_t01_creates_entry_with_contract_fields(conn):
    """T01 creates an index entry (version 1) carrying every PRODUCT.md field from TXA/PID/PV1."""
    changes = apply(conn, load_sample("mdm_t01_original.hl7"), message_id=7)
    assert changes == [
        {"document_number": "DOC-1001", "event": "T01", "action": "created", "version": 1, "mrn": "100001"}
    ]
    e = document_read.get_document(conn, "DOC-1001", now=NOW)
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
        "transcriptionist",
        "authenticated_by",
        "authenticated_at",
        "confidentiality",
        "availability",
        "storage_status",
        "version",
        "content_type",
        "content_size",
        "content_sha256",
        "deficiencies",
    ):
        assert key in e
    assert (e["mrn"], e["visit_number"], e["type"], e["status"], e["availability"]) == (
        "100001",
        "V2026001",
        "HP",
        "DI",
        "UN",
    )
    assert e["activity_at"] == "2026-11-20T09:00:00" and e["origination_at"] == "2026-11-20T09:15:00"
    assert e["author"] == {"id": "1234", "family": "SMITH", "given": "JOHN", "authority": "HOSP"}
    assert e["transcriptionist"]["family"] == "WRIGHT"
    assert e["content_sha256"] is None and e["version"] == 1 and e["message_id"] == 7
    assert [(v["event"], v["action"], v["message_id"]) for v in e["versions"]] == [("T01", "created", 7)]


def test_t02_stores_pdf_content_by_sha256(conn):
    """T02 stores the decoded ED PDF; the entry names its media type, size and SHA-256."""
    apply(conn, load_sample("mdm_t02_original_pdf.hl7"))
    e = document_read.get_document(conn, "DOC-1002")
    data, media = document_read.get_content(conn, "DOC-1002", SETTINGS)
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    assert media == "application/pdf" and e["content_type"] == "application/pdf"
    assert e["content_size"] == len(data) and e["content_sha256"] == hashlib.sha256(data).hexdigest()
    assert e["authenticated_by"]["family"] == "JONES" and e["authenticated_at"] == "2026-11-20T10:55:00"


def test_t03_status_change_keeps_content(conn):
    """T03 changes status and signature without touching the content or the version."""
    apply(conn, mdm("T02", "D1", status="DI", auth="", obx=TEXT))
    before = document_read.get_document(conn, "D1")
    changes = apply(conn, mdm("T03", "D1", status="AU", time="20261120110000"), message_id=2)
    e = document_read.get_document(conn, "D1")
    assert changes[0]["action"] == "status_changed"
    assert e["status"] == "AU" and e["authenticated_by"]["family"] == "SMITH"
    assert e["version"] == 1 and e["content_sha256"] == before["content_sha256"]


def test_t04_status_change_with_content(conn):
    """T04 changes status and stores the content it carries (FT \\.br\\ becomes line breaks)."""
    apply(conn, load_sample("mdm_t01_original.hl7"))
    apply(conn, load_sample("mdm_t04_status_change_ft.hl7"), message_id=2)
    e = document_read.get_document(conn, "DOC-1001")
    data, media = document_read.get_content(conn, "DOC-1001", SETTINGS)
    assert e["status"] == "LA" and e["content_type"] == "text/plain"
    assert media == "text/plain; charset=utf-8"
    assert b"ILLNESS:\n45 year old" in data and b"\n\nPLAN:\n1. Ceftriaxone" in data


@pytest.mark.parametrize("event", ["T03", "T04", "T07", "T08", "T11"])
def test_change_to_unknown_document_is_permanent_error(conn, event):
    """A status change, edit or cancel for a document the index does not hold is unknown_document."""
    with pytest.raises(PermanentError) as exc:
        apply(conn, mdm(event, "NOPE"))
    assert exc.value.reason == "unknown_document" and str(exc.value.location) == "TXA-12"
    assert document_read.get_document(conn, "NOPE") is None


def test_t05_addendum_is_new_document_linked_to_parent(conn):
    """T05 creates a new entry whose parent_document_number is TXA-13; the parent is unchanged."""
    apply(conn, mdm("T02", "P1", obx=TEXT))
    changes = apply(conn, mdm("T05", "A1", parent="P1", time="20261121000000"), message_id=2)
    assert changes[0]["action"] == "addendum_created"
    assert document_read.get_document(conn, "A1")["parent_document_number"] == "P1"
    assert document_read.get_document(conn, "P1")["availability"] == "AV"


def test_t06_addendum_with_content(conn):
    """T06 is an addendum carrying its own content."""
    apply(conn, mdm("T02", "P1", obx=TEXT))
    apply(
        conn, mdm("T06", "A1", parent="P1", obx=("OBX|1|TX|AD||Addendum text||||||F",), time="20261121000000")
    )
    assert document_read.get_content(conn, "A1", SETTINGS)[0] == b"Addendum text"
    assert document_read.get_content(conn, "P1", SETTINGS)[0] == b"First line\nSecond line"


def test_addendum_needs_known_parent(conn):
    """An addendum without TXA-13 is a missing field; with an unknown parent it is unknown_document."""
    with pytest.raises(RequiredFieldMissing) as exc:
        apply(conn, mdm("T05", "A1"))
    assert str(exc.value.location) == "TXA-13"
    with pytest.raises(PermanentError) as exc:
        apply(conn, mdm("T05", "A1", parent="GHOST"))
    assert exc.value.reason == "unknown_document" and str(exc.value.location) == "TXA-13"


def test_t07_edit_makes_new_version_older_content_kept(conn):
    """T07 makes version 2 of the same number; version 1's content stays retrievable."""
    apply(conn, mdm("T02", "D1", obx=TEXT))
    changes = apply(conn, mdm("T07", "D1", time="20261121000000"), message_id=2)
    e = document_read.get_document(conn, "D1")
    assert changes[0]["action"] == "new_version" and e["version"] == 2
    assert e["content_sha256"] is None  # the edited text was not sent with T07
    assert document_read.get_content(conn, "D1", SETTINGS) is None
    assert document_read.get_content(conn, "D1", SETTINGS, version=1)[0] == b"First line\nSecond line"
    assert [(v["version"], v["event"], v["message_id"]) for v in e["versions"]] == [
        (1, "T02", 1),
        (2, "T07", 2),
    ]


def test_t08_edit_with_content(conn):
    """T08 makes a new version with new content; both versions' content can be read."""
    apply(conn, mdm("T02", "D1", obx=TEXT))
    apply(conn, mdm("T08", "D1", time="20261121000000", obx=("OBX|1|TX|HP||Corrected||||||F",)), message_id=2)
    assert document_read.get_document(conn, "D1")["version"] == 2
    assert document_read.get_content(conn, "D1", SETTINGS)[0] == b"Corrected"
    assert document_read.get_content(conn, "D1", SETTINGS, version=1)[0] == b"First line\nSecond line"
    assert document_read.get_content(conn, "D1", SETTINGS, version=9) is None


def test_t09_replacement_marks_parent_obsolete(conn):
    """T09 creates the replacement and marks the parent obsolete (OB), still visible, replaced_by set."""
    apply(conn, mdm("T02", "P1", obx=TEXT))
    changes = apply(conn, mdm("T09", "R1", parent="P1", time="20261121000000"), message_id=2)
    assert [c["action"] for c in changes] == ["replacement_created", "replaced"]
    parent, new = document_read.get_document(conn, "P1"), document_read.get_document(conn, "R1")
    assert parent["availability"] == "OB" and parent["obsolete"] and parent["replaced_by"] == "R1"
    assert new["parent_document_number"] == "P1" and new["availability"] == "AV"
    assert parent["versions"][-1]["action"] == "replaced" and parent["versions"][-1]["message_id"] == 2
    assert {d["document_number"] for d in document_read.list_documents(conn, mrn="100001")} == {"P1", "R1"}


def test_t10_replacement_with_content(conn):
    """T10 replaces the parent with a new document carrying content."""
    apply(conn, mdm("T02", "P1", obx=TEXT))
    apply(conn, mdm("T10", "R1", parent="P1", time="20261121000000", obx=("OBX|1|TX|HP||New||||||F",)))
    assert document_read.get_content(conn, "R1", SETTINGS)[0] == b"New"
    assert document_read.get_document(conn, "P1")["availability"] == "OB"


def test_t11_cancel_stays_visible_as_cancelled(conn):
    """T11 marks the document cancelled (CA); it is still listed; its content is no longer served
    as current but stays readable as its version."""
    apply(conn, mdm("T02", "D1", obx=TEXT))
    changes = apply(conn, mdm("T11", "D1", time="20261121000000"), message_id=2)
    e = document_read.get_document(conn, "D1")
    assert changes[0]["action"] == "cancelled" and e["cancelled"] and e["availability"] == "CA"
    assert [d["document_number"] for d in document_read.list_documents(conn, status="CA")] == ["D1"]
    assert document_read.get_content(conn, "D1", SETTINGS) is None
    assert document_read.get_content(conn, "D1", SETTINGS, version=1)[0] == b"First line\nSecond line"


def test_older_message_does_not_overwrite_newer(conn):
    """A message older (MSH-7) than the one that made the entry is kept as history only."""
    apply(conn, mdm("T02", "D1", status="AU", time="20261121100000", obx=TEXT), message_id=1)
    changes = apply(
        conn,
        mdm("T08", "D1", status="DI", time="20261120100000", obx=("OBX|1|TX|HP||Stale draft||||||F",)),
        message_id=2,
    )
    e = document_read.get_document(conn, "D1")
    assert changes[0]["action"] == "ignored_older"
    assert e["status"] == "AU" and e["version"] == 1 and e["message_id"] == 1
    assert document_read.get_content(conn, "D1", SETTINGS)[0] == b"First line\nSecond line"
    assert [(v["action"], v["message_id"]) for v in e["versions"]] == [("created", 1), ("ignored_older", 2)]


def test_msh7_offsets_compared_in_utc(conn):
    """MSH-7 with different offsets is compared as instants, not as text."""
    apply(conn, mdm("T02", "D1", status="DI", time="20261121100000+0100", obx=TEXT))
    # 09:30 UTC is later than 10:00+01:00 (09:00 UTC) although it sorts lower as text
    apply(conn, mdm("T03", "D1", status="AU", time="20261121093000+0000"), message_id=2)
    assert document_read.get_document(conn, "D1")["status"] == "AU"


def test_unknown_patient_holds_then_applies(conn):
    """A document for an MRN the chart does not know raises Hold and writes nothing; once the
    patient exists the same document applies."""
    msg = mdm("T02", "D9", mrn="999999", obx=TEXT)
    with pytest.raises(Hold) as exc:
        apply(conn, msg)
    assert exc.value.reason == "unknown_patient"
    assert document_read.get_document(conn, "D9") is None
    assert conn.execute(select(func.count()).select_from(document_blobs)).scalar() == 0
    add_patient(conn, "999999")
    assert apply(conn, msg)[0]["action"] == "created"
    assert document_read.get_document(conn, "D9")["mrn"] == "999999"


def test_document_of_other_patient_is_refused(conn):
    """A known document number arriving for another patient is refused, never re-filed."""
    apply(conn, mdm("T02", "D1", obx=TEXT))
    with pytest.raises(PermanentError) as exc:
        apply(conn, mdm("T03", "D1", mrn="200002", time="20261121000000"))
    assert exc.value.reason == "invalid_value"
    with pytest.raises(PermanentError):
        apply(conn, mdm("T05", "A1", parent="D1", mrn="200002"))
    assert document_read.get_document(conn, "D1")["mrn"] == "100001"


def test_merged_mrn_files_under_survivor(conn):
    """A document for a merged-away MRN is filed under the survivor."""
    add_patient(conn, "300003", merged_into="100001")
    apply(conn, mdm("T02", "D1", mrn="300003", obx=TEXT))
    assert document_read.get_document(conn, "D1")["mrn"] == "100001"


def test_reassign_patient_moves_documents(conn):
    """reassign_patient (a merge) moves every document and worklist row to the survivor."""
    apply(conn, mdm("T02", "D1", mrn="200002", obx=TEXT))
    apply(conn, mdm("T02", "D2", mrn="200002", obx=TEXT))
    assert D.reassign_patient(conn, "200002", "100001", NOW) == 2
    assert [s["document_number"] for s in document_read.summaries_for(conn, "100001")] == ["D1", "D2"]
    assert document_read.summaries_for(conn, "200002") == []


def test_required_fields_and_unsupported_event(conn):
    """No TXA-12 or no MRN is a missing field; an event outside T01..T11 is unsupported."""
    with pytest.raises(RequiredFieldMissing) as exc:
        apply(conn, mdm("T02", ""))
    assert str(exc.value.location) == "TXA-12"
    with pytest.raises(RequiredFieldMissing) as exc:
        apply(conn, mdm("T02", "D1"), mrn=None)
    assert str(exc.value.location) == "PID-3"
    with pytest.raises(HL7Error) as exc:
        apply(conn, mdm("T12", "D1"))
    assert exc.value.reason == "unsupported_event" and exc.value.code == "201"


def test_clear_empties_a_field_none_keeps_it(conn):
    """HL7 "" (CLEAR) clears a stored value; an empty field (None) leaves it."""
    apply(conn, mdm("T02", "D1", obx=TEXT))
    apply(conn, mdm("T03", "D1", time="20261121000000"), confidentiality=CLEAR, visit_number=None)
    e = document_read.get_document(conn, "D1")
    assert e["confidentiality"] is None and e["visit_number"] == "V1"


def test_identical_content_stored_once_in_database(conn):
    """Two documents with the same bytes share one document_blobs row."""
    apply(conn, mdm("T02", "D1", obx=TEXT))
    apply(conn, mdm("T02", "D2", obx=TEXT))
    assert conn.execute(select(func.count()).select_from(document_blobs)).scalar() == 1
    assert (
        document_read.get_document(conn, "D1")["content_sha256"]
        == document_read.get_document(conn, "D2")["content_sha256"]
    )


def test_directory_backend_files_by_sha(engine, conn, tmp_path):
    """With content_dir set, content is a file at ab/cdef... (in place once the transaction
    commits) and not in the database."""
    settings = D.DocumentSettings(content_dir=tmp_path / "content")
    apply(conn, mdm("T02", "D1", obx=TEXT), settings=settings)
    apply(conn, mdm("T02", "D2", obx=TEXT), settings=settings)
    sha = document_read.get_document(conn, "D1")["content_sha256"]
    assert document_read.get_content(conn, "D1", settings)[0] == b"First line\nSecond line"
    conn.commit()
    files = [p for p in (tmp_path / "content").rglob("*") if p.is_file()]
    assert files == [tmp_path / "content" / sha[:2] / sha[2:]]
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(document_blobs)).scalar() == 0
        assert document_read.get_content(c, "D1", settings)[0] == b"First line\nSecond line"


def test_content_over_limit_is_refused(conn):
    """Content past max_content_bytes is PermanentError content_too_large and nothing is stored."""
    settings = D.DocumentSettings(max_content_bytes=10)
    with pytest.raises(PermanentError) as exc:
        apply(conn, mdm("T02", "D1", obx=TEXT), settings=settings)
    assert exc.value.reason == "content_too_large"
    with pytest.raises(PermanentError) as exc:
        apply(
            conn,
            mdm("T02", "D1"),
            settings=settings,
            content=[DocumentContent(kind="binary", media_type="application/pdf", data=b"x" * 11)],
        )
    assert exc.value.reason == "content_too_large"
    assert document_read.get_document(conn, "D1") is None


def test_hand_given_content_wins_over_obx(conn):
    """Content on the record (a mapping that builds it) is used instead of OBX extraction."""
    apply(
        conn,
        mdm("T02", "D1", obx=TEXT),
        content=[DocumentContent(kind="reference", media_type="application/pdf", reference="pacs:42")],
    )
    e = document_read.get_document(conn, "D1")
    assert e["content_kind"] == "reference" and e["content_reference"] == "pacs:42"
    assert document_read.get_content(conn, "D1", SETTINGS) is None


def test_multi_part_content_primary_is_binary(conn):
    """Text and ED in one message: the PDF is the primary content, each part readable by number."""
    obx = TEXT + ("OBX|3|ED|PDF||^AP^PDF^Base64^JVBERi0xLjQK||||||F",)
    apply(conn, mdm("T02", "D1", obx=obx))
    e = document_read.get_document(conn, "D1")
    assert e["content_type"] == "application/pdf" and [p["kind"] for p in e["content_parts"]] == [
        "text",
        "binary",
    ]
    assert document_read.get_content(conn, "D1", SETTINGS) == (b"%PDF-1.4\n", "application/pdf")
    assert document_read.get_content(conn, "D1", SETTINGS, part=1)[0] == b"First line\nSecond line"
    assert document_read.get_content(conn, "D1", SETTINGS, part=3) is None


def test_samples_t01_to_t11_in_order(conn):
    """The eleven sample messages applied in order leave the index in the documented state."""
    names = sorted(
        p
        for p in __import__("os").listdir(
            __import__("tests.test_documents_support", fromlist=["SAMPLES"]).SAMPLES
        )
        if p.endswith(".hl7")
    )
    assert len(names) == 11
    for i, name in enumerate(names, 1):
        apply(conn, load_sample(name), message_id=i)
    d1001, d1002 = document_read.get_document(conn, "DOC-1001"), document_read.get_document(conn, "DOC-1002")
    assert (d1001["status"], d1001["version"], d1001["content_type"]) == ("LA", 3, "text/plain")
    assert b"2 g IV daily" in document_read.get_content(conn, "DOC-1001", SETTINGS)[0]
    assert b"1 g IV daily" in document_read.get_content(conn, "DOC-1001", SETTINGS, version=1)[0]
    assert (d1002["availability"], d1002["replaced_by"]) == ("OB", "DOC-1006")
    assert document_read.get_document(conn, "DOC-1004")["availability"] == "CA"
    assert document_read.get_document(conn, "DOC-1005")["replaced_by"] == "DOC-1007"
    assert document_read.get_document(conn, "DOC-1007")["parent_document_number"] == "DOC-1005"
    assert len(document_read.summaries_for(conn, "100001")) == 6
    rows = conn.execute(select(document_versions.c.message_id)).scalars().all()
    assert set(rows) == set(range(1, 12))  # every history row names its message
