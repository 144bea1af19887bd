"""The cover sheet as a printable PDF: a QR code, the index in words, and the checksum.

A QR code (segno) rather than a 1-D Code 128: the index (MRN, visit, type, pages, name, birth
date, checksum) is 60-120 characters, which a Code 128 prints wider than a page at a size a
scanner reads reliably, while a QR holds it in 3 cm with error correction (level M: a smudge or
a staple hole still reads). pyzbar reads both, so the choice costs nothing on the reading side.
"""

from __future__ import annotations

import io

import segno
from fpdf import FPDF

from interface.rules import coversheet


def qr_png(text: str, scale: int = 8) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def sheet_pdf(sheet: coversheet.CoverSheet) -> bytes:
    """An A4 cover sheet for ``sheet`` (its checksum filled in here)."""
    sheet = coversheet.with_checksum(sheet)
    text = coversheet.encode(sheet)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 28)
    pdf.cell(0, 16, "SCAN COVER SHEET", new_x="LMARGIN", new_y="NEXT", align="C")
    pdf.set_font("Helvetica", "", 12)
    pdf.cell(
        0,
        8,
        "Place this sheet in front of the document it indexes.",
        new_x="LMARGIN",
        new_y="NEXT",
        align="C",
    )
    pdf.image(io.BytesIO(qr_png(text)), x=65, y=45, w=80, h=80)
    pdf.set_y(135)
    rows = [
        ("MRN", sheet.mrn),
        ("Patient", " ".join(x for x in (sheet.given, sheet.family) if x) or "-"),
        ("Birth date", sheet.birth_date or "-"),
        ("Visit", sheet.visit_number or "-"),
        ("Document type", sheet.type or "-"),
        ("Pages", str(sheet.pages) if sheet.pages else "not stated"),
        ("Checksum", sheet.checksum),
    ]
    for label, value in rows:
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(60, 11, label)
        pdf.set_font("Helvetica", "", 16)
        pdf.cell(0, 11, value, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
