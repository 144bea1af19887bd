"""Scanned documents: separated by cover sheet, checked, and filed to the document index.

Store functions run in the caller's transaction and never commit.

* :func:`separate` cuts a batch into ``scan_documents`` rows: a page whose barcode is one of our
  cover sheets (``interface.rules.coversheet``) starts a document and is not part of it; pages
  before the first sheet form a document without one. Every page carries its ink share and
  ``blank`` (less ink than the channel's ``blank_ink``). Each document then waits for OCR.
* :func:`decide` runs after OCR (or when OCR has given up): the quality checks (pages against the
  sheet's count, blank pages, pages under the channel's ``min_confidence``) become ``flags``, and
  the document is filed when its sheet is valid, its MRN names a chart, the sheet's person passes
  the identity rules against that chart (``interface.rules.identity.compare``, the rule of the
  scan channel's name) and no check failed; else it is queued for a clerk with the first reason.
* :func:`file` writes it to the document index as an MDM original would (``documents``,
  ``document_versions``, completeness findings), number ``SCAN-<id>`` in namespace ``SCAN``,
  content the PDF (with its text layer when OCR has run), ``origin`` ``scan``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from interface.config.scan import ScanChannel
from interface.mapping.records import Document, DocumentContent, Person
from interface.rules import coversheet
from interface.rules import identity as id_rules
from interface.store import documents as docstore
from interface.store import scan_pages
from interface.store.content import ContentStore
from interface.store.document_schema import documents
from interface.store.identity_check import chart_person
from interface.store.scan_pages import PageInfo
from interface.store.scan_schema import scan_batches, scan_documents

NAMESPACE = "SCAN"
REASONS = {
    "no_cover_sheet": "No cover sheet",
    "bad_checksum": "Cover sheet checksum does not match",
    "unknown_patient": "No chart for the cover sheet's MRN",
    "identity_mismatch": "The cover sheet's patient does not match the chart",
    "page_count": "Page count differs from the cover sheet's",
    "blank_pages": "Blank pages to confirm",
    "low_quality": "Pages hard to read (low OCR confidence)",
    "no_pages": "A cover sheet with no pages after it",
    "ocr_failed": "No text layer (OCR failed)",
}


@dataclass
class Gate:
    """What filing needs besides the database: the identity rules (None: not checked)."""

    rules: id_rules.IdentityRules | None = None


def pages_key(pages: list[dict]) -> str:
    """A digest of a page list (which pages, in which order, turned how): OCR is current for it."""
    plain = [(p["batch"], p["page"], p.get("rotate", 0)) for p in pages]
    return hashlib.sha256(json.dumps(plain).encode()).hexdigest()[:32]


def separate(
    conn: Connection, batch: dict, analysis: list[PageInfo], channel: ScanChannel, now: datetime
) -> list[int]:
    """Cut the batch into documents (see the module docstring); returns their ids (none when
    another process separated the batch first)."""
    taken = conn.execute(
        update(scan_batches)
        .where(scan_batches.c.id == batch["id"], scan_batches.c.status == "received")
        .values(status="separated", processed_at=now, pages=len(analysis))
    ).rowcount
    if not taken:
        return []
    groups: list[dict] = []
    current: dict | None = None
    for i, info in enumerate(analysis):
        sheet = next((s for s in map(coversheet.parse, info.barcodes) if s is not None), None)
        if sheet is not None:
            current = {"cover": sheet, "pages": []}
            groups.append(current)
            continue
        if current is None:
            current = {"cover": None, "pages": []}
            groups.append(current)
        current["pages"].append(
            {
                "batch": batch["id"],
                "page": i,
                "rotate": 0,
                "blank": info.ink < channel.blank_ink,
                "ink": info.ink,
                "confidence": None,
            }
        )
    ids = []
    for seq, g in enumerate(groups, 1):
        sheet = g["cover"]
        valid = sheet is not None and sheet.valid
        values = dict(
            batch_id=batch["id"],
            seq=seq,
            status="ocr" if g["pages"] else "queued",
            reason=None if g["pages"] else "no_pages",
            pages=json.dumps(g["pages"]),
            cover=json.dumps(sheet.as_dict()) if sheet is not None else None,
            flags="[]",
            mrn=sheet.mrn if valid else None,
            visit_number=sheet.visit_number if valid else None,
            type=sheet.type if valid else None,
            ocr_status="pending" if g["pages"] else "done",
            ocr_attempts=0,
            ocr_next_at=now,
            created_at=now,
            updated_at=now,
        )
        ids.append(conn.execute(insert(scan_documents).values(**values)).inserted_primary_key[0])
    return ids


def load(conn: Connection, doc_id: int) -> dict | None:
    row = conn.execute(select(scan_documents).where(scan_documents.c.id == doc_id)).mappings().first()
    return _decoded(dict(row)) if row else None


def _decoded(row: dict) -> dict:
    row["pages"] = json.loads(row["pages"] or "[]")
    row["cover"] = json.loads(row["cover"]) if row["cover"] else None
    row["flags"] = json.loads(row["flags"] or "[]")
    return row


def quality(doc: dict, channel: ScanChannel) -> list[dict]:
    """The quality findings: ``[{check, message, pages}]`` (pages 1-based, in the document)."""
    out = []
    pages = doc["pages"]
    cover = doc["cover"] or {}
    if cover.get("pages") and cover.get("valid") and cover["pages"] != len(pages):
        out.append(
            {
                "check": "page_count",
                "message": f"the cover sheet says {cover['pages']} pages; {len(pages)} were scanned",
                "pages": [],
            }
        )
    blank = [i for i, p in enumerate(pages, 1) if p.get("blank")]
    if blank:
        out.append(
            {"check": "blank_pages", "message": "blank pages (confirm and delete them)", "pages": blank}
        )
    low = [
        i
        for i, p in enumerate(pages, 1)
        if not p.get("blank") and p.get("confidence") is not None and p["confidence"] < channel.min_confidence
    ]
    if low:
        out.append(
            {
                "check": "low_quality",
                "message": "pages hard to read: unreadable, skewed or turned",
                "pages": low,
            }
        )
    if doc["ocr_status"] == "failed":
        out.append(
            {"check": "ocr_failed", "message": "OCR failed: the document has no text layer", "pages": []}
        )
    return out


def reason_for(conn: Connection, doc: dict, flags: list[dict], gate: Gate, channel: str) -> str | None:
    """Why the document cannot be filed without a clerk (None: it can)."""
    cover = doc["cover"]
    if not doc["pages"]:
        return "no_pages"
    if cover is None:
        return "no_cover_sheet"
    if not cover.get("valid"):
        return "bad_checksum"
    chart = chart_person(conn, cover["mrn"])
    if chart is None:
        return "unknown_patient"
    if gate.rules is not None:
        sheet = id_rules.Person(
            family=cover.get("family"), given=cover.get("given"), birth_date=cover.get("birth_date")
        )
        if id_rules.blocking(id_rules.compare(sheet, chart, gate.rules.for_channel(channel))):
            return "identity_mismatch"
    for f in flags:
        if f["check"] in ("page_count", "blank_pages", "low_quality"):
            return f["check"]
    return None


def decide(
    conn: Connection,
    doc: dict,
    *,
    gate: Gate,
    channel: ScanChannel,
    settings: docstore.DocumentSettings,
    pdf: bytes,
    now: datetime,
) -> str:
    """Check, then file or queue the document (``pdf``: its content); returns the new status."""
    flags = quality(doc, channel)
    reason = reason_for(conn, doc, flags, gate, channel.name)
    conn.execute(
        update(scan_documents)
        .where(scan_documents.c.id == doc["id"])
        .values(
            flags=json.dumps(flags),
            updated_at=now,
            reason=reason,
            status="queued" if reason else doc["status"],
        )
    )
    if reason:
        return "queued"
    cover = doc["cover"]
    file(
        conn,
        doc["id"],
        mrn=cover["mrn"],
        visit_number=cover.get("visit_number"),
        type=cover.get("type"),
        document_date=None,
        author=None,
        pdf=pdf,
        settings=settings,
        now=now,
        by=None,
    )
    return "filed"


def _hl7_date(iso: str | None, now: datetime) -> str:
    if iso:
        return iso.replace("-", "")[:8]
    return now.strftime("%Y%m%d%H%M%S")


def file(
    conn: Connection,
    doc_id: int,
    *,
    mrn: str,
    visit_number: str | None,
    type: str | None,
    document_date: str | None,
    author: str | None,
    pdf: bytes,
    settings: docstore.DocumentSettings,
    now: datetime,
    by: str | None,
) -> dict:
    """File the scanned document to the index (see the module docstring); returns the entry's
    change. Raises ``Hold`` when ``mrn`` names no chart."""
    number = f"SCAN-{doc_id}"
    when = _hl7_date(document_date, now)
    record = Document(
        event="T02",
        mrn=mrn,
        visit_number=visit_number or None,
        document_number=number,
        document_namespace=NAMESPACE,
        type=type or None,
        presentation="application/pdf",
        activity_at=when,
        origination_at=when,
        author=Person(family=author) if author else Person(),
        content=[DocumentContent(kind="binary", media_type="application/pdf", data=pdf)],
    )
    changes = docstore.apply_documents(conn, [record], None, message_id=0, now=now, settings=settings)
    row = conn.execute(
        select(documents.c.id, documents.c.mrn).where(
            documents.c.document_number == number, documents.c.authority == NAMESPACE
        )
    ).first()
    assert row is not None
    conn.execute(update(documents).where(documents.c.id == row.id).values(origin="scan"))
    conn.execute(
        update(scan_documents)
        .where(scan_documents.c.id == doc_id)
        .values(
            status="filed",
            reason=None,
            mrn=row.mrn,
            visit_number=visit_number or None,
            type=type or None,
            document_date=document_date,
            author=author,
            document_id=row.id,
            document_number=number,
            updated_at=now,
            indexed_by=by,
            indexed_at=now if by else None,
        )
    )
    return changes[0]


def refresh_content(
    conn: Connection, doc: dict, pdf: bytes, settings: docstore.DocumentSettings, now: datetime
) -> None:
    """A filed document's pages were OCR'd again (after a clerk's edit): a new version (T04)."""
    record = Document(
        event="T04",
        mrn=doc["mrn"],
        document_number=doc["document_number"],
        document_namespace=NAMESPACE,
        content=[DocumentContent(kind="binary", media_type="application/pdf", data=pdf)],
    )
    docstore.apply_documents(conn, [record], None, message_id=0, now=now, settings=settings)


def listing(
    conn: Connection,
    *,
    status: str | None = None,
    q: str | None = None,
    mrn: str | None = None,
    limit: int = 200,
) -> list[dict]:
    """Scanned documents, newest first (``q``: words their OCR text contains)."""
    s = scan_documents
    query = select(s).order_by(s.c.id.desc()).limit(limit)
    if status:
        query = query.where(s.c.status == status)
    else:
        query = query.where(s.c.status != "deleted")
    if mrn:
        query = query.where(s.c.mrn == mrn)
    for word in (q or "").split():
        query = query.where(s.c.text.ilike(f"%{word}%"))
    return [_decoded(dict(r)) for r in conn.execute(query).mappings()]


def assemble_pdf(conn: Connection, store: ContentStore, pages: list[dict]) -> bytes:
    """The PDF of a page list (``scan_documents.pages``) from the batches' PDFs."""
    pdfs: dict[int, bytes] = {}
    for p in pages:
        if p["batch"] not in pdfs:
            sha = conn.execute(
                select(scan_batches.c.pdf_sha256).where(scan_batches.c.id == p["batch"])
            ).scalar_one()
            data = store.get(conn, sha)
            if data is None:
                raise LookupError(f"batch {p['batch']} content is missing")
            pdfs[p["batch"]] = data
    return scan_pages.assemble([(pdfs[p["batch"]], p["page"], p.get("rotate", 0)) for p in pages])


def current_pdf(conn: Connection, store: ContentStore, doc: dict) -> tuple[bytes, bool]:
    """The document's PDF: the OCR'd one when it is current for the page list (True), else the
    pages as scanned (False)."""
    if doc["ocr_sha256"] and doc["ocr_pages"] == pages_key(doc["pages"]) and doc["ocr_status"] == "done":
        data = store.get(conn, doc["ocr_sha256"])
        if data is not None:
            return data, True
    return assemble_pdf(conn, store, doc["pages"]), False
