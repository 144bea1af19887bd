"""The release-of-information packet: one PDF built from data handed to it (no database, no web).

The caller (the ROI desk) reads the documents, versions and content and hands them over; this
module only renders. Its interface (all frozen dataclasses):

``PacketDocument(document_number, version, title, document_date, content_type, data, sha256,
excluded_pages=())``
    One document version to release. ``data`` is the stored content as bytes, ``sha256`` its
    hash as stored (hex; checked against ``data``: a mismatch is a ``ValueError``).
    ``excluded_pages`` is a tuple of ``(page_number, reason)``, page numbers counted from 1 in
    the document as rendered (the stored PDF's pages, a TIFF's frames, the rendered text's pages).
    Content types: ``application/pdf`` (merged as stored, with pypdf), ``text/plain`` (rendered),
    ``text/x-hl7-ft`` (HL7 formatted text with its escapes, rendered by
    :mod:`interface.hl7.formatted_text`), ``image/png``/``image/jpeg``/``image/gif``/
    ``image/bmp``/``image/tiff`` (one page per image or frame); anything else becomes one page
    saying what it is and that it is listed in the manifest.
``CoverLetter(request_id, patient_name, mrn, birth_date, requester_name, recipient_name,
recipient_address, purpose, scope, delivery, fees, released_on, released_by,
legal_basis_or_authorization)``
    The first page(s). ``recipient_address`` is a tuple of lines, ``fees`` a tuple of
    ``(label, Decimal amount)``; the total is their sum.
``ChartSummary(demographics, visits, allergies, diagnoses)``
    Optional summary page: each a tuple of lines.

:func:`build_packet` ``(cover, documents, summary=None) -> Packet(pdf, sha256, page_count,
manifest)`` where ``manifest`` is a tuple of ``ManifestEntry(document_number, version, title,
content_type, sha256, pages_kept, packet_first_page, packet_last_page, excluded_pages)``
(``packet_first_page``/``packet_last_page`` are 0 when every page of a document was excluded).

The packet: the cover letter, the chart summary when given, each document in the order given,
then a manifest page listing every document, version and SHA-256 (and the excluded pages with
their reasons). Every page carries the footer "Released to <recipient> on <date>, request <id>,
page n of N". The output is deterministic: the same inputs give the same bytes (creation dates
are fixed from ``released_on``, no random ids), so the packet's hash is reproducible.

:func:`accounting_letter` renders the accounting of disclosures (45 CFR 164.528) as a PDF
letter from :class:`Disclosure` rows.

Names outside Latin-1 need a Unicode font: DejaVu Sans (Debian ``fonts-dejavu-core``, in the
Makefile's ``DEB_PACKAGES``). Without it the core Helvetica font is used and characters it
cannot show are replaced by ``?`` (see :func:`font_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class PacketDocument:
    document_number: str
    version: int
    title: str
    document_date: date | None
    content_type: str
    data: bytes
    sha256: str
    excluded_pages: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class CoverLetter:
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


@dataclass(frozen=True)
class ChartSummary:
    demographics: tuple[str, ...] = ()
    visits: tuple[str, ...] = ()
    allergies: tuple[str, ...] = ()
    diagnoses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestEntry:
    document_number: str
    version: int
    title: str
    content_type: str
    sha256: str
    pages_kept: int
    packet_first_page: int
    packet_last_page: int
    excluded_pages: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Packet:
    pdf: bytes
    sha256: str
    page_count: int
    manifest: tuple[ManifestEntry, ...]


@dataclass(frozen=True)
class Disclosure:
    """One disclosure in an accounting: when, to whom, what, why, under which authority."""

    disclosed_on: date
    recipient_name: str
    recipient_address: tuple[str, ...]
    description: str
    purpose: str
    authorization_or_legal_basis: str


def build_packet(
    cover: CoverLetter,
    documents: tuple[PacketDocument, ...] | list[PacketDocument],
    summary: ChartSummary | None = None,
) -> Packet:
    """The release packet as one PDF (see the module docstring)."""
    raise NotImplementedError


def accounting_letter(
    patient_name: str,
    mrn: str,
    period_start: date,
    period_end: date,
    disclosures: tuple[Disclosure, ...] | list[Disclosure],
    generated_on: date,
) -> bytes:
    """The accounting of disclosures (45 CFR 164.528) for one patient and period, as a PDF letter."""
    raise NotImplementedError
