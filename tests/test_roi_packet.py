"""The release packet (interface.desk.roi_packet) read back with pypdf: pages, footers, exclusions,
manifest hashes, determinism; and the accounting-of-disclosures letter."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader

from interface.desk import roi_render
from interface.desk.roi_packet import (
    PREVIEW,
    ChartSummary,
    CoverLetter,
    Disclosure,
    PacketDocument,
    accounting_letter,
    build_packet,
)
from interface.hl7.message import parse_bytes
from interface.store.content import extract_content

SAMPLES = Path(__file__).resolve().parent.parent / "sample_messages" / "mdm"
RELEASED = date(2026, 3, 2)

COVER = CoverLetter(
    request_id="ROI-2026-0042",
    patient_name="Ana María Rivera-Łukasiewicz",
    mrn="100001",
    birth_date=date(1984, 3, 12),
    requester_name="Ana María Rivera",
    recipient_name="Dr Zoë Ørsted",
    recipient_address=("Springfield Clinic", "12 Elm Street", "Springfield IL 62702"),
    purpose="continuity of care",
    scope="consultation and history and physical, 2026-11-20",
    delivery="secure download",
    fees=(("Electronic copy (flat fee)", Decimal("6.50")), ("Postage", Decimal("0"))),
    released_on=RELEASED,
    released_by="clerk1",
    legal_basis_or_authorization="the patient's own access (45 CFR 164.524)",
)


def _doc(number, title, content_type, data, excluded=(), version=1):
    return PacketDocument(
        document_number=number,
        version=version,
        title=title,
        document_date=date(2026, 11, 20),
        content_type=content_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        excluded_pages=tuple(excluded),
    )


def _sample(name):
    return extract_content(parse_bytes((SAMPLES / name).read_bytes()))


def _pdf(pages: int, marker: str) -> bytes:
    pdf = FPDF()
    pdf.set_creation_date(roi_render.pdf_date(RELEASED))
    pdf.set_font("helvetica", size=14)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(0, 10, f"{marker} page {n}")
    return bytes(pdf.output())


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _tiff(frames: int) -> bytes:
    out = io.BytesIO()
    images = [Image.new("L", (100, 140), 40 * i) for i in range(frames)]
    images[0].save(out, format="TIFF", save_all=True, append_images=images[1:])
    return out.getvalue()


def _documents():
    (pdf_part,) = _sample("mdm_t02_original_pdf.hl7")
    (ft_part,) = _sample("mdm_t04_status_change_ft.hl7")
    assert pdf_part.media_type == "application/pdf" and ft_part.raw_text
    return [
        _doc("DOC-1002", "Consultation", "application/pdf", pdf_part.data),
        _doc("DOC-1001", "History and physical", "text/x-hl7-ft", ft_part.raw_text.encode()),
        _doc(
            "SCAN-7",
            "Referral letter",
            "application/pdf",
            _pdf(3, "REFERRAL"),
            [(2, "third party's information")],
        ),
        _doc("IMG-1", "Wound photo", "image/png", _png()),
        _doc("TIF-2", "Scanned consent", "image/tiff", _tiff(2)),
        _doc("TXT-3", "Nursing note", "text/plain", "Patient resting.\nVitals stable: 37.1 °C\n".encode()),
        _doc("DCM-4", "Chest X-ray", "application/dicom", b"DICM\x00\x01"),
    ]


SUMMARY = ChartSummary(
    demographics=("Ana María Rivera, F, born 1984-03-12",),
    visits=("V2026001 inpatient 2026-11-20, 4W 401",),
    allergies=(),
    diagnoses=("J18.9 pneumonia",),
)


def _read(packet) -> PdfReader:
    return PdfReader(io.BytesIO(packet.pdf))


def _texts(packet) -> list[str]:
    return [page.extract_text() for page in _read(packet).pages]


def test_the_packet_reads_back_page_by_page():
    docs = _documents()
    packet = build_packet(COVER, docs, SUMMARY)
    reader = _read(packet)
    assert packet.page_count == len(reader.pages)
    texts = _texts(packet)
    n = len(texts)
    # cover, summary, 1 PDF page, FT, 3-1 PDF pages, PNG, 2 TIFF frames, text, DICOM notice, manifest
    assert n == 1 + 1 + 1 + 1 + 2 + 1 + 2 + 1 + 1 + 1
    for i, text in enumerate(texts, 1):
        flat = " ".join(text.split())
        assert f"Released to Dr Zoë Ørsted on 2026-03-02, request ROI-2026-0042, page {i} of {n}" in flat

    assert "Ana María Rivera-Łukasiewicz" in texts[0] and "$6.50" in texts[0] and "Total" in texts[0]
    assert "Chart summary" in texts[1] and "J18.9 pneumonia" in texts[1] and "none recorded" in texts[1]
    by_number = {e.document_number: e for e in packet.manifest}
    scan = by_number["SCAN-7"]
    kept = texts[scan.packet_first_page - 1 : scan.packet_last_page]
    assert [("REFERRAL page 1" in t, "REFERRAL page 3" in t) for t in kept] == [(True, False), (False, True)]
    assert not any("REFERRAL page 2" in t for t in texts)
    assert scan.pages_kept == 2 and scan.excluded_pages == ((2, "third party's information"),)
    ft = texts[by_number["DOC-1001"].packet_first_page - 1]
    assert "HISTORY OF PRESENT ILLNESS:" in ft and "repeat chest X&ray" in ft and "\\.br\\" not in ft
    assert "37.1 °C" in texts[by_number["TXT-3"].packet_first_page - 1]
    tiff = by_number["TIF-2"]
    assert (tiff.pages_kept, tiff.packet_last_page - tiff.packet_first_page) == (2, 1)
    assert "image 2 of 2" in texts[tiff.packet_last_page - 1]
    dicom = texts[by_number["DCM-4"].packet_first_page - 1]
    assert "application/dicom" in dicom and "manifest" in dicom


def test_the_manifest_lists_every_document_with_the_inputs_hashes():
    docs = _documents()
    packet = build_packet(COVER, docs)
    assert [(e.document_number, e.version, e.sha256) for e in packet.manifest] == [
        (d.document_number, d.version, hashlib.sha256(d.data).hexdigest()) for d in docs
    ]
    last = " ".join(_texts(packet)[-1].split())
    while "Manifest" not in last:  # (one page here; a longer manifest would span pages)
        raise AssertionError("no manifest page at the end")
    found = re.findall(r"SHA-256 ([0-9a-f]{64})", last)
    assert found == [hashlib.sha256(d.data).hexdigest() for d in docs]
    assert "Page 2 left out: third party's information" in last
    # the page ranges are consecutive and end before the manifest
    ranges = [(e.packet_first_page, e.packet_last_page) for e in packet.manifest]
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:]))
    assert ranges[-1][1] == packet.page_count - 1


def test_the_same_inputs_give_the_same_bytes_and_hash():
    docs = _documents()
    a, b = build_packet(COVER, docs, SUMMARY), build_packet(COVER, docs, SUMMARY)
    assert a.pdf == b.pdf and a.sha256 == b.sha256 == hashlib.sha256(a.pdf).hexdigest()
    c = build_packet(replace(COVER, released_on=date(2026, 3, 3)), docs, SUMMARY)
    assert c.sha256 != a.sha256
    meta = _read(a).metadata
    assert meta["/CreationDate"] == "D:20260302000000Z" and "ROI-2026-0042" in meta["/Title"]


def test_excluding_every_page_leaves_the_document_in_the_manifest_only():
    doc = _doc(
        "SCAN-8",
        "Outside records",
        "application/pdf",
        _pdf(2, "OUTSIDE"),
        [(1, "not requested"), (2, "not requested")],
    )
    packet = build_packet(COVER, [doc])
    (entry,) = packet.manifest
    assert (entry.pages_kept, entry.packet_first_page, entry.packet_last_page) == (0, 0, 0)
    assert packet.page_count == 2  # cover and manifest
    assert "no page of it is in this packet" in " ".join(_texts(packet)[-1].split())


def test_bad_inputs_are_refused():
    doc = _doc("SCAN-9", "Scan", "application/pdf", _pdf(1, "X"), [(3, "no such page")])
    with pytest.raises(ValueError, match="has no page 3"):
        build_packet(COVER, [doc])
    wrong = replace(_doc("SCAN-9", "Scan", "application/pdf", _pdf(1, "X")), sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        build_packet(COVER, [wrong])


def test_a_damaged_pdf_becomes_a_page_saying_so():
    packet = build_packet(COVER, [_doc("BAD-1", "Broken scan", "application/pdf", b"%PDF-1.4 not really")])
    (entry,) = packet.manifest
    assert entry.pages_kept == 1 and "could not be read" in entry.note
    assert "could not be read" in _texts(packet)[1]


def test_rotated_and_landscape_pages_get_the_footer_inside_the_page():
    pdf = FPDF(orientation="L")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.cell(0, 10, "WIDE")
    from pypdf import PdfWriter

    reader = PdfReader(io.BytesIO(bytes(pdf.output())))
    writer = PdfWriter()
    writer.add_page(reader.pages[0])
    writer.pages[0].rotate(90)
    out = io.BytesIO()
    writer.write(out)
    packet = build_packet(COVER, [_doc("ROT-1", "Rotated", "application/pdf", out.getvalue())])
    page = _read(packet).pages[1]
    assert "page 2 of 3" in page.extract_text() and "WIDE" in page.extract_text()


def test_without_dejavu_the_core_font_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(roi_render, "FONT_DIRS", (tmp_path,))
    monkeypatch.delenv(roi_render.FONT_ENV, raising=False)
    assert not roi_render.fonts().unicode
    packet = build_packet(COVER, [_doc("TXT-1", "Note", "text/plain", "Zoë Łukasiewicz".encode())])
    texts = _texts(packet)
    assert "Released to Dr Zoë Ørsted" in " ".join(texts[0].split())  # Latin-1 survives
    assert "?ukasiewicz" in texts[1]  # what Helvetica cannot show is a question mark


def test_the_accounting_letter_lists_each_disclosure():
    disclosures = [
        Disclosure(
            disclosed_on=date(2025, 6, 1),
            recipient_name="County Public Health Department",
            recipient_address=("200 Main Street", "Springfield IL 62701"),
            description="laboratory result of 2025-05-28",
            purpose="communicable disease reporting",
            authorization_or_legal_basis="required by law (45 CFR 164.512(b))",
        ),
        Disclosure(
            disclosed_on=date(2024, 2, 10),
            recipient_name="Law Office of Ørsted & Partners",
            recipient_address=(),
            description="discharge summary of 2024-01-30",
            purpose="litigation",
            authorization_or_legal_basis="subpoena 24-CV-118 with court order",
        ),
    ]
    pdf = accounting_letter(
        "Ana María Rivera", "100001", date(2020, 3, 1), date(2026, 3, 1), disclosures, RELEASED
    )
    assert pdf == accounting_letter(
        "Ana María Rivera", "100001", date(2020, 3, 1), date(2026, 3, 1), disclosures, RELEASED
    )
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    assert "2020-03-01 to 2026-03-01" in text and "164.528" in text
    first, second = (
        text.index("2024-02-10 - Law Office of Ørsted & Partners"),
        text.index("2025-06-01 - County Public Health Department"),
    )
    assert first < second  # in date order
    for words in (
        "200 Main Street, Springfield IL 62701",
        "communicable disease reporting",
        "subpoena 24-CV-118 with court order",
        "discharge summary of 2024-01-30",
        "not known",
        "2 disclosures listed",
    ):
        assert words in text
    n = len(reader.pages)
    for i, page in enumerate(reader.pages, 1):
        assert f"page {i} of {n}" in page.extract_text()


def test_an_accounting_without_disclosures_says_so():
    pdf = accounting_letter("Ana Rivera", "100001", date(2025, 1, 1), date(2026, 1, 1), [], RELEASED)
    text = " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert "No disclosures that must be accounted for" in text


def test_a_preview_has_the_release_s_pages_marked_preview_on_every_one():
    docs = _documents()
    released, preview = build_packet(COVER, docs, SUMMARY), build_packet(COVER, docs, SUMMARY, preview=True)
    assert preview.page_count == released.page_count and preview.manifest == released.manifest
    texts = _texts(preview)
    n = len(texts)
    for i, text in enumerate(texts, 1):
        flat = " ".join(text.split())
        assert (
            f"{PREVIEW}: request ROI-2026-0042 for Dr Zoë Ørsted, built 2026-03-02, page {i} of {n}" in flat
        )
        assert "on 2026-03-02, request ROI-2026-0042" not in flat  # no release footer
    assert preview.pdf != released.pdf
    info = PdfReader(io.BytesIO(preview.pdf)).metadata
    assert info.title.startswith(PREVIEW)
    # the mark across each page: a half-transparent graphics state on every page's overlay
    reader = PdfReader(io.BytesIO(preview.pdf))
    assert all(
        any(
            float(gs.get_object().get("/ca", 1)) < 1
            for gs in (p["/Resources"].get("/ExtGState") or {}).values()
        )
        for p in reader.pages
    )
    assert build_packet(COVER, docs, SUMMARY, preview=True).pdf == preview.pdf  # deterministic too


def test_a_preview_with_the_core_font_reads_plain(monkeypatch, tmp_path):
    monkeypatch.setattr(roi_render, "FONT_DIRS", (tmp_path,))
    monkeypatch.delenv(roi_render.FONT_ENV, raising=False)
    packet = build_packet(COVER, [_doc("TXT-1", "Note", "text/plain", b"a note")], preview=True)
    assert all("PREVIEW - not released: request ROI-2026-0042" in " ".join(t.split()) for t in _texts(packet))
