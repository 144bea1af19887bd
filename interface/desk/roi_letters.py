"""The letters of release of information: the packet's cover letter and chart summary, and the
accounting of disclosures (45 CFR 164.528). Pure: data in, PDF bytes out.

``CoverLetter``, ``ChartSummary`` and ``Disclosure`` are the data the ROI desk hands over (see
:mod:`interface.desk.roi_packet` for the packet they open). Dates print as ``YYYY-MM-DD``, the
console's one date format; amounts with two decimals.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pypdf import PdfReader, PdfWriter

from interface.desk.roi_render import Page, stamp


@dataclass(frozen=True)
class CoverLetter:
    """What the cover letter says. ``recipient_address`` is lines; ``fees`` ``(label, amount)``
    pairs (their sum is the total); ``notices`` paragraphs printed at the end (for example the
    42 CFR 2.32 notice prohibiting redisclosure when Part 2 records are included); ``facility``
    the letterhead lines."""

    request_id: str
    patient_name: str
    mrn: str
    birth_date: date | None
    requester_name: str
    recipient_name: str
    recipient_address: tuple[str, ...]
    purpose: str
    scope: str
    delivery: str
    fees: tuple[tuple[str, Decimal], ...]
    released_on: date
    released_by: str
    legal_basis_or_authorization: str
    notices: tuple[str, ...] = ()
    facility: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChartSummary:
    """The optional chart summary page: lines under four headings."""

    demographics: tuple[str, ...] = ()
    visits: tuple[str, ...] = ()
    allergies: tuple[str, ...] = ()
    diagnoses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Disclosure:
    """One disclosure in an accounting (45 CFR 164.528(b)(2)): when, to whom (name and address),
    a brief description of what, the purpose, the authorization or legal basis."""

    disclosed_on: date
    recipient_name: str
    recipient_address: tuple[str, ...]
    description: str
    purpose: str
    authorization_or_legal_basis: str


def day(value: date | None) -> str:
    return value.isoformat() if value else "not recorded"


def money(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):,}"


def _letterhead(pdf: Page, facility: tuple[str, ...], dated: date) -> None:
    for i, line in enumerate(facility):
        pdf.para(line, size=12 if i == 0 else 9, bold=i == 0, gap=0)
    if facility:
        pdf.ln(8)
    pdf.para(day(dated), gap=10)


def cover_pages(cover: CoverLetter, documents: int) -> bytes:
    """The cover letter: recipient, the request, what is released and why, the fees and total."""
    pdf = Page(cover.released_on, f"Release of information, request {cover.request_id}")
    pdf.add_page()
    _letterhead(pdf, cover.facility, cover.released_on)
    for line in (cover.recipient_name, *cover.recipient_address):
        pdf.para(line, gap=0)
    pdf.ln(14)
    pdf.heading(f"Release of information - request {cover.request_id}")
    pdf.pairs(
        [
            ("Patient", cover.patient_name),
            ("MRN", cover.mrn),
            ("Date of birth", day(cover.birth_date)),
            ("Requested by", cover.requester_name),
            ("Released to", cover.recipient_name),
            ("Purpose", cover.purpose),
            ("Information released", cover.scope),
            ("Authority", cover.legal_basis_or_authorization),
            ("Delivery", cover.delivery),
            ("Released on", day(cover.released_on)),
            ("Released by", cover.released_by),
        ]
    )
    pdf.ln(6)
    pdf.para("Fees", size=11, bold=True)
    total = sum((amount for _, amount in cover.fees), Decimal("0"))
    rows = [(label, money(amount)) for label, amount in cover.fees] or [("No fee", money(Decimal("0")))]
    for label, value in [*rows, ("Total", money(total))]:
        bold = label == "Total"
        pdf.sans(10, bold)
        pdf.cell(300, 14, pdf.fit(label))
        pdf.cell(100, 14, value, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(10)
    plural = "document" if documents == 1 else "documents"
    pdf.para(
        f"This packet holds {documents} {plural}. The manifest on its last page lists every document and "
        "version released with its SHA-256 digest, and any page left out with the reason. Every page "
        "carries the footer of this release and its page number.",
        gap=6,
    )
    pdf.para(
        "This information is confidential. It is released for the purpose stated above; redisclosure "
        "may be prohibited by law.",
        gap=6,
    )
    for notice in cover.notices:
        pdf.para(notice, size=9, gap=6)
    return pdf.pdf()


def summary_pages(summary: ChartSummary, cover: CoverLetter) -> bytes:
    """The chart summary: demographics, visits, allergies, diagnoses ("none recorded" when empty)."""
    pdf = Page(cover.released_on)
    pdf.add_page()
    pdf.heading(f"Chart summary - {cover.patient_name}, MRN {cover.mrn}")
    for title, lines in (
        ("Demographics", summary.demographics),
        ("Visits", summary.visits),
        ("Allergies", summary.allergies),
        ("Diagnoses", summary.diagnoses),
    ):
        pdf.para(title, size=11, bold=True, gap=1)
        for line in lines or ("none recorded",):
            pdf.para(line, size=9.5, gap=0)
        pdf.ln(8)
    return pdf.pdf()


def accounting_letter(
    patient_name: str,
    mrn: str,
    period_start: date,
    period_end: date,
    disclosures: tuple[Disclosure, ...] | list[Disclosure],
    generated_on: date,
    facility: tuple[str, ...] = (),
) -> bytes:
    """The accounting of disclosures (45 CFR 164.528) for one patient and period, as a PDF letter:
    each disclosure with its date, recipient and address, description, purpose and authority, in
    date order; every page numbered. The same inputs give the same bytes."""
    pdf = Page(generated_on, "Accounting of disclosures")
    pdf.add_page()
    _letterhead(pdf, facility, generated_on)
    pdf.para(patient_name, gap=0)
    pdf.para(f"MRN {mrn}", gap=14)
    pdf.heading("Accounting of disclosures of protected health information")
    pdf.para(
        f"You asked for an accounting of the disclosures of your health information made from "
        f"{day(period_start)} to {day(period_end)} (45 CFR 164.528). The list below gives, for each "
        "disclosure, its date, who received the information and their address, what was disclosed, "
        "why, and under which authorization or legal basis.",
        gap=6,
    )
    pdf.para(
        "It does not list the disclosures the rule leaves out, such as those for treatment, payment "
        "and health care operations, those to you or made with your authorization, and those to "
        "persons involved in your care (45 CFR 164.528(a)(1)).",
        gap=10,
    )
    ordered = sorted(disclosures, key=lambda d: (d.disclosed_on, d.recipient_name))
    if not ordered:
        pdf.para("No disclosures that must be accounted for were made in this period.", bold=True)
    for i, d in enumerate(ordered, 1):
        pdf.para(f"{i}. {day(d.disclosed_on)} - {d.recipient_name}", size=10.5, bold=True, gap=1)
        pdf.pairs(
            [
                ("Address", ", ".join(d.recipient_address) or "not known"),
                ("What", d.description),
                ("Purpose", d.purpose),
                ("Authority", d.authorization_or_legal_basis),
            ],
            label_width=90,
            size=9.5,
        )
        pdf.ln(6)
    pdf.ln(6)
    plural = "disclosure" if len(ordered) == 1 else "disclosures"
    pdf.para(f"{len(ordered)} {plural} listed. Generated on {day(generated_on)}.", size=9)
    reader = PdfReader(io.BytesIO(pdf.pdf()))
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    n = len(writer.pages)
    stamp(
        writer,
        [
            f"Accounting of disclosures, MRN {mrn}, {day(generated_on)}, page {i} of {n}"
            for i in range(1, n + 1)
        ],
        generated_on,
    )
    return write(writer, "Accounting of disclosures", generated_on)


def write(writer: PdfWriter, title: str, dated: date) -> bytes:
    """The writer's PDF with fixed metadata (no time of day, no random identifier)."""
    stamp_date = f"D:{dated.strftime('%Y%m%d')}000000Z"
    writer.add_metadata(
        {
            "/Title": title,
            "/Producer": "interface-engine",
            "/CreationDate": stamp_date,
            "/ModDate": stamp_date,
        }
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
