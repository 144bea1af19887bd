"""Scanned paper into the chart: intake, separation by cover sheet, OCR, filing and the queue."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from pypdf import PdfWriter
from sqlalchemy import select

from interface.config.scan import ScanChannel
from interface.engine import ocr as ocrmod
from interface.engine.scan_worker import ScanWorker
from interface.rules import coversheet
from interface.rules.identity import DEFAULT_RULES
from interface.store import document_read, scan_edits, scan_intake
from interface.store import scan_documents as sd
from interface.store.document_schema import documents
from interface.store.documents import DocumentSettings
from interface.store.scan_schema import scan_batches
from tests import scan_kit as kit
from tests.test_adt_events import Harness, _config, adt
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

CONSENT = ["Consent to treatment", "Signed by the patient", "Witnessed by the nurse"]
JANE = coversheet.CoverSheet(
    mrn="M100", type="CN", pages=1, family="DOE", given="JANE", birth_date="19800101"
)


def fake_ocr(text: str = "Consent to treatment\nPatient: DOE, JANE\nDOB 01/01/1980", conf: float = 95.0):
    calls = []

    def run(pdf: bytes) -> ocrmod.OcrResult:
        calls.append(pdf)
        from interface.store.scan_pages import page_count

        return ocrmod.OcrResult(pdf + b"\n%text layer\n", text, [conf] * page_count(pdf))

    run.calls = calls  # type: ignore[attr-defined]
    return run


class Scan:
    """A chart (ADT through the real engine), a scan channel on a temp folder, the scan worker."""

    def __init__(self, engine, tmp_path: Path, ocr=None):
        self.h = Harness(engine)
        self.h.send(adt("A04", "M100", name="DOE^JANE", dob="19800101"))
        self.h.send(adt("A04", "M200", name="ROE^RICHARD", dob="19700505", sex="M"))
        self.h.drain()
        self.channel = ScanChannel(name="records", inbox=str(tmp_path / "scan" / "inbox"))
        self.settings = DocumentSettings(rules=_config()[1])
        self.worker = ScanWorker(
            engine,
            channels=[self.channel],
            settings=self.settings,
            gate=sd.Gate(DEFAULT_RULES),
            clock=self.h.clock,
            ocr=ocr or fake_ocr(),
        )
        self.db = engine

    def drop(self, name: str, data: bytes) -> Path:
        inbox = self.channel.inbox_path
        inbox.mkdir(parents=True, exist_ok=True)
        p = inbox / name
        p.write_bytes(data)
        return p

    def round(self) -> dict:
        """Two rounds: the first sees a new file, the second takes it once it has not changed."""
        a, b = self.worker.run_once(), self.worker.run_once()
        return {k: a[k] + b[k] for k in a}

    def docs(self) -> list[dict]:
        with self.db.connect() as conn:
            return list(reversed(sd.listing(conn)))

    def batches(self) -> list[dict]:
        with self.db.connect() as conn:
            return list(reversed(scan_intake.batches(conn)))


@pytest.fixture
def scan(engine, tmp_path):
    return Scan(engine, tmp_path)


def _encrypted_pdf() -> bytes:
    w = PdfWriter()
    w.add_blank_page(100, 100)
    w.encrypt("secret")
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def _empty_pdf() -> bytes:
    out = io.BytesIO()
    PdfWriter().write(out)
    return out.getvalue()


def test_folder_intake_journals_before_moving_and_keeps_bad_files_with_a_reason(scan):
    """A file is taken once it stopped changing, journalled by SHA-256, then moved; the same bytes
    again are the same batch; bad files are kept, moved to rejected/ and listed with a reason."""
    good = kit.batch_pdf([kit.text_page(CONSENT)])
    scan.drop("a.pdf", good)
    assert scan.worker.run_once()["taken"] == 0  # first sight: maybe still being written
    assert (scan.channel.inbox_path / "a.pdf").exists()
    assert scan.worker.run_once()["taken"] == 1
    assert not (scan.channel.inbox_path / "a.pdf").exists()
    [b] = scan.batches()
    assert (scan.channel.accepted_path / f"{b['id']}-a.pdf").exists()
    assert b["status"] == "separated" and b["pages"] == 1 and b["source"] == "folder"

    scan.drop("again.pdf", good)
    scan.drop("notes.txt", b"not a scan at all")
    scan.drop("locked.pdf", _encrypted_pdf())
    scan.drop("empty.pdf", _empty_pdf())
    scan.drop("broken.png", kit.batch_tiff([kit.blank_page()])[:200])
    assert scan.round()["taken"] == 5
    assert list(scan.channel.inbox_path.iterdir()) == []
    rows = {r["filename"]: r for r in scan.batches()}
    assert rows["a.pdf"]["seen"] == 2 and "again.pdf" not in rows  # de-duplicated by hash
    assert (
        rows["notes.txt"]["status"] == "rejected" and "not a PDF or an image" in rows["notes.txt"]["reason"]
    )
    assert rows["locked.pdf"]["reason"] == "the PDF is encrypted"
    assert rows["empty.pdf"]["reason"] == "the PDF has no pages"
    assert rows["broken.png"]["status"] == "rejected"
    assert len(list(scan.channel.rejected_path.iterdir())) == 4


def test_dying_between_commit_and_move_is_harmless(scan, monkeypatch):
    """The batch is committed but the move fails (the process died): the file is seen again,
    recognised by its hash, moved; one batch, one set of documents."""
    scan.drop("b.pdf", kit.batch_pdf([kit.cover_page(JANE), kit.text_page(CONSENT)]))
    real = os.replace

    def dies(src, dst):
        raise OSError("killed")

    monkeypatch.setattr("interface.engine.scan_worker.os.replace", dies)
    scan.round()
    assert (scan.channel.inbox_path / "b.pdf").exists()
    monkeypatch.setattr("interface.engine.scan_worker.os.replace", real)
    scan.round()
    assert not (scan.channel.inbox_path / "b.pdf").exists()
    assert len(scan.batches()) == 1 and len(scan.docs()) == 1


def test_tiff_batch_separated_by_cover_sheets_filed_and_queued(scan):
    """A multi-page TIFF: pages before any sheet, a good sheet, an unknown MRN, a bad checksum,
    another person's name on a known MRN, a wrong page count. Only the good one is filed."""
    unknown = coversheet.CoverSheet(mrn="M999", type="CN")
    other = coversheet.CoverSheet(mrn="M200", family="DOE", given="JANE", birth_date="19800101")
    counted = coversheet.CoverSheet(mrn="M100", pages=3, family="DOE", given="JANE")
    page = kit.text_page(["Clinic letter", "Seen in clinic today", "Plan: review in a month"])
    pages = [page, kit.cover_page(JANE), page, kit.cover_page(unknown), page]
    pages += [
        kit.cover_page(JANE, tamper=True),
        page,
        kit.cover_page(other),
        page,
        kit.cover_page(counted),
        page,
    ]
    scan.drop("batch.tif", kit.batch_tiff(pages))
    scan.round()
    got = [(d["status"], d["reason"]) for d in scan.docs()]
    assert got == [
        ("queued", "no_cover_sheet"),
        ("filed", None),
        ("queued", "unknown_patient"),
        ("queued", "bad_checksum"),
        ("queued", "identity_mismatch"),
        ("queued", "page_count"),
    ]
    filed = scan.docs()[1]
    with scan.db.connect() as conn:
        entry = document_read.get_document(conn, filed["document_number"])
    assert entry["mrn"] == "M100" and entry["type"] == "CN" and entry["origin"] == "scan"
    assert entry["content_type"] == "application/pdf"
    assert "author_present" in {f["rule"] for f in entry["deficiencies"]}  # the completeness rules ran


def test_blank_and_hard_to_read_pages_are_flagged_and_queued(engine, tmp_path):
    """A blank page is flagged (shown for confirmation); a page under the channel's confidence
    is flagged as hard to read; either keeps a cover-sheeted document for a clerk."""
    s = Scan(engine, tmp_path, ocr=fake_ocr(conf=40.0))
    s.drop("x.pdf", kit.batch_pdf([kit.cover_page(JANE), kit.text_page(CONSENT), kit.blank_page()]))
    s.round()
    [d] = s.docs()
    assert d["status"] == "queued" and d["reason"] == "page_count"
    checks = {f["check"]: f["pages"] for f in d["flags"]}
    assert checks["blank_pages"] == [2] and checks["low_quality"] == [1]


def test_ocr_is_retried_then_the_document_goes_on(engine, tmp_path):
    """OCR failures are retried by the policy, on the injected clock; once it works the
    document is filed with the text."""
    fails = {"n": 2}
    good = fake_ocr(text="Signed consent")

    def flaky(pdf):
        if fails["n"]:
            fails["n"] -= 1
            raise ocrmod.OcrError("ocrmypdf failed (exit status 15)")
        return good(pdf)

    s = Scan(engine, tmp_path, ocr=flaky)
    s.drop("c.pdf", kit.batch_pdf([kit.cover_page(JANE), kit.text_page(CONSENT)]))
    s.round()
    [d] = s.docs()
    assert d["status"] == "ocr" and d["ocr_attempts"] == 1 and "exit status 15" in d["ocr_error"]
    s.h.advance(3600)
    s.worker.run_once()
    s.h.advance(7200)
    s.worker.run_once()
    [d] = s.docs()
    assert d["status"] == "filed" and d["ocr_attempts"] == 3 and d["text"] == "Signed consent"


def test_clerk_indexes_splits_merges_rotates_and_deletes(scan):
    """The indexing queue's actions: split a batch without cover sheets, merge, rotate, delete a
    blank page, then index to a chart; the document is filed and its OCR is redone for the new
    page list."""
    p = [kit.text_page([f"Page {i} of the notes", "Seen in clinic today", "Plan: review"]) for i in range(3)]
    scan.drop("d.pdf", kit.batch_pdf([p[0], p[1], kit.blank_page(), p[2]]))
    scan.round()
    [d] = scan.docs()
    assert d["reason"] == "no_cover_sheet" and len(d["pages"]) == 4
    now = scan.h.clock()
    with scan.db.begin() as conn:
        new = scan_edits.split(conn, d["id"], 4, now)
        assert len(new["pages"]) == 1
        d2 = scan_edits.delete_pages(conn, d["id"], [3], now)
        assert [x["page"] for x in d2["pages"]] == [0, 1]
        scan_edits.merge(conn, d["id"], new["id"], now)
        d3 = scan_edits.rotate(conn, d["id"], [3], 90, now)
        assert [x["rotate"] for x in d3["pages"]] == [0, 0, 90] and d3["ocr_status"] == "pending"
        with pytest.raises(scan_edits.EditError):
            scan_edits.index(
                conn, d["id"], mrn="NOPE", visit_number=None, type="CN", document_date=None,
                author=None, by="clerk", store=scan.settings.store(), settings=scan.settings, now=now,
            )  # fmt: skip
        filed = scan_edits.index(
            conn, d["id"], mrn="M200", visit_number=None, type="HP", document_date="2026-11-01",
            author="Dr Who", by="clerk", store=scan.settings.store(), settings=scan.settings, now=now,
        )  # fmt: skip
    assert filed["status"] == "filed" and filed["indexed_by"] == "clerk"
    scan.worker.run_once()  # the OCR for the new page list: a new version of the filed document
    with scan.db.connect() as conn:
        entry = document_read.get_document(conn, filed["document_number"])
        row = conn.execute(
            select(documents.c.version).where(documents.c.id == filed["document_id"])
        ).scalar_one()
    assert entry["mrn"] == "M200" and entry["activity_at"] == "20261101" and row == 2


def test_real_ocr_end_to_end(engine, tmp_path):
    """ocrmypdf and tesseract for real: pages printed and scanned, a cover-sheeted document filed
    with a text layer and searchable text; a turned page reads poorly and is flagged."""
    s = Scan(engine, tmp_path, ocr=ocrmod.run)
    pages = [kit.text_page(["Referral letter", "Patient ROE RICHARD", "Born 05/05/1970"], rotate=90)]
    pages += [kit.cover_page(JANE), kit.text_page(["Consent to treatment", "Signed by the patient"])]
    s.drop("e.pdf", kit.batch_pdf(pages))
    s.round()
    first, second = s.docs()
    assert second["status"] == "filed" and "Consent to treatment" in second["text"]
    assert first["status"] == "queued" and first["pages"][0]["confidence"] < 60
    with s.db.connect() as conn:
        assert [d["id"] for d in sd.listing(conn, q="consent treatment")] == [second["id"]]
        blob = s.settings.store().get(
            conn, document_read.get_document(conn, second["document_number"])["content_sha256"]
        )
    from pypdf import PdfReader

    assert "Consent" in PdfReader(io.BytesIO(blob)).pages[0].extract_text()


def test_cover_sheet_round_trip():
    """The barcode text carries the index and a checksum; a changed field fails the checksum."""
    sheet = coversheet.with_checksum(JANE)
    text = coversheet.encode(sheet)
    assert coversheet.parse(text) == sheet
    assert coversheet.parse(text.replace("M100", "M101")).valid is False
    assert coversheet.parse("some other barcode") is None


def test_batch_rows_are_unique_by_hash(engine, scan):
    with engine.begin() as conn:
        a = scan_intake.receive(
            conn,
            scan.settings.store(),
            b"x" * 10,
            channel="upload",
            source="api",
            filename="1",
            now=scan.h.clock(),
        )
        b = scan_intake.receive(conn, scan.settings.store(), b"x" * 10, channel="upload", source="api", filename="2", now=scan.h.clock())  # fmt: skip
        n = len(conn.execute(select(scan_batches.c.id)).all())
    assert a["id"] == b["id"] and b["duplicate"] and n == 1


def test_cli_coversheet_reads_back_and_names_the_chart(scan, db_url, tmp_path, capsys):
    """``interface scan coversheet`` prints a sheet whose QR code pyzbar reads back, with the
    chart's name for the identity check and the checksum it printed."""
    from interface.ops.cli import main
    from interface.store.scan_pages import analyse

    out = tmp_path / "sheet.pdf"
    assert main(["scan", "--db", db_url, "--var", str(tmp_path), "coversheet", "--mrn", "M100", "--pages", "2", "-o", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out.split()[-1]
    [page] = analyse(out.read_bytes())
    sheet = coversheet.parse(page.barcodes[0])
    assert sheet is not None and sheet.valid and sheet.checksum == printed
    assert (sheet.mrn, sheet.family, sheet.pages) == ("M100", "DOE", 2)


def test_api_upload_queue_page_image_and_index(scan, tmp_path, fast_hashing):
    """Upload through the API, see the queued document, a page image (audited with the
    patient), index it to a chart; analysts see the intake list without file names."""
    import warnings

    from interface.desk import users
    from interface.store.schema import audit
    from interface.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    with scan.db.begin() as conn:
        users.add_user(conn, "cora", "clerk", "correct horse battery staple", now=scan.h.clock())
        users.add_user(conn, "ann", "analyst", "correct horse battery staple", now=scan.h.clock())
        clerk = users.new_token(conn, "cora", now=scan.h.clock())
        analyst = users.new_token(conn, "ann", now=scan.h.clock())
    app = create_app(scan.db, document_settings=scan.settings, clock=scan.h.clock)
    c = TestClient(app)
    ch = {"Authorization": f"Bearer {clerk}"}
    pdf = kit.batch_pdf([kit.text_page(["Referral letter", "Patient: DOE, JANE", "DOB 01/01/1980"])])
    r = c.post("/api/scan/batches", files={"file": ("referral.pdf", pdf, "application/pdf")}, headers=ch)
    assert r.status_code == 201 and r.json()["status"] == "received"
    assert c.post("/api/scan/batches", files={"file": ("x.pdf", pdf)}, headers=ch).json()["duplicate"] is True
    listed = c.get("/api/scan/batches", headers={"Authorization": f"Bearer {analyst}"})
    assert listed.status_code == 200 and listed.json()[0]["filename"] is None
    assert c.get("/api/scan/documents", headers={"Authorization": f"Bearer {analyst}"}).status_code == 403
    scan.worker.run_once()
    [d] = c.get("/api/scan/documents?status=queued", headers=ch).json()
    detail = c.get(f"/api/scan/documents/{d['id']}", headers=ch).json()
    assert detail["candidates"][0]["mrn"] == "M100"  # name and birth date read from the OCR text
    img = c.get(f"/api/scan/documents/{d['id']}/pages/1?size=thumb", headers=ch)
    assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
    r = c.post(f"/api/scan/documents/{d['id']}/index", json={"mrn": "M100", "type": "RF"}, headers=ch)
    assert r.status_code == 200 and r.json()["status"] == "filed"
    assert c.post(f"/api/scan/documents/{d['id']}/index", json={"mrn": "M100"}, headers=ch).status_code == 409
    with scan.db.connect() as conn:
        actions = {r.action for r in conn.execute(select(audit.c.action, audit.c.target_type))}
    assert {"scan_upload", "view", "scan_index"} <= actions
