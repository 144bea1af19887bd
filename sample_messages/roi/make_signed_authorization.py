"""Writes signed-authorization.pdf: a sample HIPAA authorization (45 CFR 164.508(c)) signed by the
sample patient Ana Rivera (MRN 100001, sample_messages/adt/04-a04-register-rivera.hl7), for the
ROI desk's tests and demos. Deterministic: the same bytes every run.

    .venv/bin/python sample_messages/roi/make_signed_authorization.py
"""

from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

LINES = [
    ("Patient", "Ana Maria Rivera, born 1984-03-12, MRN 100001"),
    ("1. Information to be disclosed", "Consultation notes and history and physical, November 2026"),
    ("2. Who may disclose", "General Hospital, Health Information Management"),
    ("3. Recipient", "Smith & Partners LLP, 1 Court Street, Springfield IL 62701"),
    ("4. Purpose", "Personal injury claim"),
    ("5. Expires", "2027-06-30"),
]
STATEMENTS = [
    "I may revoke this authorization at any time by writing to the Health Information Management "
    "department, except where the hospital has already acted on it.",
    "My treatment, payment, enrollment or eligibility for benefits will not be conditioned on whether "
    "I sign this authorization.",
    "Information disclosed under this authorization may be redisclosed by the recipient and no longer "
    "be protected by federal privacy rules.",
]


def build() -> bytes:
    pdf = FPDF(format="Letter")
    pdf.set_creation_date(datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
    pdf.set_title("Authorization for release of health information")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 10, "Authorization for Release of Health Information", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(0, 6, "General Hospital - 45 CFR 164.508", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for label, value in LINES:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(62, 8, label)
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 8, value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for text in STATEMENTS:
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.ln(10)
    pdf.set_font("Times", "I", 20)
    pdf.cell(90, 10, "Ana M. Rivera")
    pdf.set_font("Helvetica", "", 11)
    pdf.cell(0, 10, "Date: 2026-12-01", new_x="LMARGIN", new_y="NEXT")
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + 85, pdf.get_y())
    pdf.cell(0, 6, "Signature of the patient", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


if __name__ == "__main__":
    out = Path(__file__).with_name("signed-authorization.pdf")
    out.write_bytes(build())
    print(f"wrote {out}")
