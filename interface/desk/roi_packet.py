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
legal_basis_or_authorization, notices=(), facility=())``
    The first page(s). ``recipient_address`` is a tuple of lines, ``fees`` a tuple of
    ``(label, Decimal amount)``; the total is their sum. ``notices`` are paragraphs printed at the
    end of the letter (e.g. the 42 CFR 2.32 redisclosure notice), ``facility`` letterhead lines.
``ChartSummary(demographics, visits, allergies, diagnoses)``
    Optional summary page: each a tuple of lines.

:func:`build_packet` ``(cover, documents, summary=None) -> Packet(pdf, sha256, page_count,
manifest)`` where ``manifest`` is a tuple of ``ManifestEntry(document_number, version, title,
content_type, sha256, pages_kept, packet_first_page, packet_last_page, excluded_pages, note)``
(``packet_first_page``/``packet_last_page`` are 0 when every page of a document was excluded;
``note`` says how a document was rendered when it was not as stored, e.g. a PDF that could not
be read, which is then a page saying so). An excluded page number the document does not have is
a ``ValueError``, as is a ``sha256`` that is not the data's.

The packet: the cover letter, the chart summary when given, each document in the order given,
then a manifest page listing every document, version and SHA-256 (and the excluded pages with
their reasons). Every page carries the footer "Released to <recipient> on <date>, request <id>,
page n of N"; a preview (``build_packet(..., preview=True)``, the clerk's look before releasing)
has the same pages with "PREVIEW — not released: request <id> for <recipient>, built <date>, page
n of N" instead and the words "PREVIEW — not released" across every page. The output is deterministic: the same inputs give the same bytes (creation dates
are fixed from ``released_on``, no random ids), so the packet's hash is reproducible.

:func:`accounting_letter` renders the accounting of disclosures (45 CFR 164.528) as a PDF
letter from :class:`Disclosure` rows (``disclosed_on, recipient_name, recipient_address,
description, purpose, authorization_or_legal_basis``). The letters live in
:mod:`interface.desk.roi_letters`, the drawing in :mod:`interface.desk.roi_render`; both are
re-exported here.

Names outside Latin-1 need a Unicode font: DejaVu Sans (Debian ``fonts-dejavu-core``, in the
Makefile's ``DEB_PACKAGES``). Without it the core Helvetica font is used and characters it
cannot show are replaced by ``?`` (see :func:`interface.desk.roi_render.fonts`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import date

from PIL import Image, ImageSequence, UnidentifiedImageError
from pypdf import PdfReader, PdfWriter

from interface.desk.roi_letters import (
    ChartSummary,
    CoverLetter,
    Disclosure,
    accounting_letter,
    cover_pages,
    day,
    summary_pages,
    write,
)
from interface.desk.roi_render import FOOTER_MARGIN, MARGIN, Page, readable_text, stamp
from interface.hl7.formatted_text import render as render_formatted_text

__all__ = [
    "PREVIEW",
    "ChartSummary",
    "CoverLetter",
    "Disclosure",
    "ManifestEntry",
    "Packet",
    "PacketDocument",
    "accounting_letter",
    "build_packet",
    "footer",
]

log = logging.getLogger(__name__)

PDF_TYPES = frozenset({"application/pdf"})
TEXT_TYPES = frozenset({"text/plain"})
FT_TYPES = frozenset({"text/x-hl7-ft", "application/x-hl7-ft"})
IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "image/tiff", "image/tif"}
)


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
    note: str = ""


@dataclass(frozen=True)
class Packet:
    pdf: bytes
    sha256: str
    page_count: int
    manifest: tuple[ManifestEntry, ...]


def media(content_type: str | None) -> str:
    """``Application/PDF; name=x`` -> ``application/pdf``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


PREVIEW = "PREVIEW \u2014 not released"  # the mark of every page of a preview


def footer(cover: CoverLetter, page: int, pages: int, preview: bool = False) -> str:
    """The line on every page of a packet (of a preview: that it is one, and released to no one)."""
    if preview:
        return (
            f"{PREVIEW}: request {cover.request_id} for {cover.recipient_name}, built {day(cover.released_on)}, "
            f"page {page} of {pages}"
        )
    return (
        f"Released to {cover.recipient_name} on {day(cover.released_on)}, request {cover.request_id}, "
        f"page {page} of {pages}"
    )


def _caption(doc: PacketDocument) -> str:
    dated = f", {day(doc.document_date)}" if doc.document_date else ""
    return f"{doc.title} - document {doc.document_number}, version {doc.version}{dated}"


def _reader(data: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(data))


def _notice(doc: PacketDocument, on: date, what: str) -> PdfReader:
    """One page standing for a document that cannot be shown as pages."""
    pdf = Page(on)
    pdf.add_page()
    pdf.heading(_caption(doc), size=12)
    pdf.para(what, gap=6)
    pdf.para(
        f"Type: {doc.content_type or 'not given'}. Size: {len(doc.data):,} bytes. SHA-256: {doc.sha256}.",
        size=9,
    )
    pdf.para("The document is listed in the manifest at the end of this packet.", size=9)
    return _reader(pdf.pdf())


def _text(doc: PacketDocument, on: date, text: str) -> PdfReader:
    """Text in a fixed-width font, wrapped; a form feed starts a page."""
    pdf = Page(on)
    pdf.add_page()
    pdf.para(_caption(doc), size=10, bold=True, gap=8)
    for n, chunk in enumerate(text.split("\f")):
        if n:
            pdf.add_page()
        pdf.para(chunk.rstrip("\n") or " ", size=9, mono=True, gap=0)
    return _reader(pdf.pdf())


def _flat(frame: Image.Image) -> Image.Image:
    """A frame as RGB (transparency on white) or greyscale."""
    if frame.mode in ("1", "L", "I;16", "I", "F"):
        return frame.convert("L")
    rgba = frame.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _images(doc: PacketDocument, on: date) -> PdfReader:
    """One page per image or frame (a multi-page TIFF: each page), fitted to the page; an image
    with a resolution is never drawn larger than its size on paper."""
    with Image.open(io.BytesIO(doc.data)) as img:
        frames = [(_flat(f.copy()), f.info.get("dpi")) for f in ImageSequence.Iterator(img)]
    pdf = Page(on)
    for i, (frame, dpi) in enumerate(frames, 1):
        w, h = frame.size
        pdf.add_page(orientation="L" if w > h else "P")
        pdf.para(f"{_caption(doc)} - image {i} of {len(frames)}", size=8, gap=4)
        top = pdf.get_y()
        box_w, box_h = pdf.w - 2 * MARGIN, pdf.h - top - FOOTER_MARGIN
        scale = min(box_w / w, box_h / h)
        if dpi and float(dpi[0]) > 0:
            scale = min(scale, 72.0 / float(dpi[0]))
        pdf.image(frame, x=MARGIN + (box_w - w * scale) / 2, y=top, w=w * scale, h=h * scale)
    return _reader(pdf.pdf())


def render_document(doc: PacketDocument, on: date) -> tuple[PdfReader, str]:
    """The document's pages before any exclusion, and a note when it is not shown as stored."""
    kind = media(doc.content_type)
    if kind in PDF_TYPES:
        try:
            reader = _reader(doc.data)
            if reader.is_encrypted and not reader.decrypt(""):
                raise ValueError("encrypted")
            if len(reader.pages) == 0:
                raise ValueError("no pages")
            return reader, ""
        except Exception as exc:  # pypdf raises many kinds for a damaged file
            log.warning("packet: a stored PDF could not be read (%s)", type(exc).__name__)
            note = "the stored PDF could not be read; a page stands for it"
            return _notice(doc, on, f"This PDF could not be read ({type(exc).__name__})."), note
    if kind in TEXT_TYPES:
        return _text(doc, on, readable_text(doc.data)), ""
    if kind in FT_TYPES:
        return _text(doc, on, render_formatted_text(readable_text(doc.data))), "HL7 formatted text, rendered"
    if kind in IMAGE_TYPES:
        try:
            return _images(doc, on), ""
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            log.warning("packet: a stored image could not be read (%s)", type(exc).__name__)
            note = "the stored image could not be read; a page stands for it"
            return _notice(doc, on, f"This image could not be read ({type(exc).__name__})."), note
    what = f"This document is stored as {doc.content_type or 'content of no stated type'}, which is not shown as pages."
    return _notice(doc, on, what), "not shown as pages; a page stands for it"


def _check(doc: PacketDocument, pages: int) -> None:
    digest = hashlib.sha256(doc.data).hexdigest()
    if doc.sha256.lower() != digest:
        raise ValueError(f"document {doc.document_number} version {doc.version}: sha256 is not the data's")
    for number, _ in doc.excluded_pages:
        if not 1 <= number <= pages:
            raise ValueError(
                f"document {doc.document_number} version {doc.version} has no page {number} (it has {pages})"
            )


def manifest_pages(entries: list[ManifestEntry], cover: CoverLetter, first_page: int) -> bytes:
    """The manifest: every document and version with its SHA-256, packet pages and exclusions."""
    pdf = Page(cover.released_on)
    pdf.add_page()
    pdf.heading(f"Manifest - request {cover.request_id}")
    plural = "document" if len(entries) == 1 else "documents"
    pdf.para(
        f"{len(entries)} {plural} released to {cover.recipient_name} on {day(cover.released_on)}. "
        f"The manifest starts on page {first_page}. Each SHA-256 is the digest of the document's "
        "content as stored.",
        size=9,
        gap=8,
    )
    for i, e in enumerate(entries, 1):
        pdf.para(
            f"{i}. {e.title} - document {e.document_number}, version {e.version}", size=10, bold=True, gap=0
        )
        if e.pages_kept:
            where = (
                f"pages {e.packet_first_page} to {e.packet_last_page} of this packet ({e.pages_kept} kept)"
            )
        else:
            where = "no page of it is in this packet"
        pdf.para(f"{e.content_type or 'no stated type'}; {where}", size=9, gap=0)
        pdf.para(f"SHA-256 {e.sha256}", size=8, mono=True, gap=0)
        for number, reason in e.excluded_pages:
            pdf.para(f"Page {number} left out: {reason}", size=9, gap=0)
        if e.note:
            pdf.para(f"Note: {e.note}", size=9, gap=0)
        pdf.ln(6)
    return pdf.pdf()


def build_packet(
    cover: CoverLetter,
    documents: tuple[PacketDocument, ...] | list[PacketDocument],
    summary: ChartSummary | None = None,
    *,
    preview: bool = False,
) -> Packet:
    """The release packet as one PDF (see the module docstring); ``preview``: the same pages with
    the preview's footer and mark (:data:`PREVIEW`) instead of the release's footer."""
    on = cover.released_on
    writer = PdfWriter()

    def add(reader: PdfReader, keep: list[int] | None = None) -> None:
        for number in keep if keep is not None else range(1, len(reader.pages) + 1):
            writer.add_page(reader.pages[number - 1])

    add(_reader(cover_pages(cover, len(documents))))
    if summary is not None:
        add(_reader(summary_pages(summary, cover)))
    entries: list[ManifestEntry] = []
    for doc in documents:
        reader, note = render_document(doc, on)
        total = len(reader.pages)
        _check(doc, total)
        left_out = {number for number, _ in doc.excluded_pages}
        keep = [n for n in range(1, total + 1) if n not in left_out]
        first = len(writer.pages) + 1
        add(reader, keep)
        entries.append(
            ManifestEntry(
                document_number=doc.document_number,
                version=doc.version,
                title=doc.title,
                content_type=doc.content_type,
                sha256=doc.sha256.lower(),
                pages_kept=len(keep),
                packet_first_page=first if keep else 0,
                packet_last_page=len(writer.pages) if keep else 0,
                excluded_pages=tuple(sorted(doc.excluded_pages)),
                note=note,
            )
        )
    add(_reader(manifest_pages(entries, cover, len(writer.pages) + 1)))
    pages = len(writer.pages)
    stamp(
        writer,
        [footer(cover, n, pages, preview) for n in range(1, pages + 1)],
        on,
        watermark=PREVIEW if preview else None,
    )
    title = f"Release of information, request {cover.request_id}"
    pdf = write(writer, f"{PREVIEW}: {title}" if preview else title, on)
    return Packet(pdf=pdf, sha256=hashlib.sha256(pdf).hexdigest(), page_count=pages, manifest=tuple(entries))
