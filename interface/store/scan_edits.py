"""A clerk's work on a queued scanned document: index it, split, merge, rotate, delete pages.

Store functions in the caller's transaction (never commit). Pages are numbered from 1 as the clerk
sees them. An edit that changes the page list makes the OCR stale (``ocr_status`` back to
``pending``): the scan worker OCRs the new list, and a document already filed gets the new text
layer as a new version. Only queued documents can be edited; filed ones are the chart's.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from interface.store import scan_documents as sd
from interface.store.content import ContentStore
from interface.store.documents import DocumentSettings
from interface.store.identity_check import chart_person
from interface.store.scan_schema import scan_documents


class EditError(ValueError):
    """The edit cannot be made (the message says why, in words)."""


def _queued(conn: Connection, doc_id: int) -> dict:
    doc = sd.load(conn, doc_id)
    if doc is None:
        raise EditError(f"scanned document {doc_id} does not exist")
    if doc["status"] not in ("queued", "ocr"):
        raise EditError(f"scanned document {doc_id} is {doc['status']}, not waiting for a clerk")
    return doc


def _save_pages(conn: Connection, doc: dict, pages: list[dict], now: datetime, **extra) -> None:
    values = dict(pages=json.dumps(pages), updated_at=now, **extra)
    if sd.pages_key(pages) != doc.get("ocr_pages") and pages:
        values.update(ocr_status="pending", ocr_next_at=now, ocr_attempts=0)
    conn.execute(update(scan_documents).where(scan_documents.c.id == doc["id"]).values(**values))


def _pick(doc: dict, numbers: list[int]) -> list[int]:
    n = len(doc["pages"])
    bad = [x for x in numbers if not 1 <= x <= n]
    if bad or not numbers:
        raise EditError(f"page numbers must be between 1 and {n}")
    return sorted(set(numbers))


def rotate(conn: Connection, doc_id: int, pages: list[int], degrees: int, now: datetime) -> dict:
    """Turn pages clockwise by ``degrees`` (90, 180, 270)."""
    if degrees % 90 or degrees % 360 == 0:
        raise EditError("pages turn by 90, 180 or 270 degrees")
    doc = _queued(conn, doc_id)
    new = [dict(p) for p in doc["pages"]]
    for x in _pick(doc, pages):
        new[x - 1]["rotate"] = (new[x - 1].get("rotate", 0) + degrees) % 360
        new[x - 1]["confidence"] = None
    _save_pages(conn, doc, new, now)
    return _reload(conn, doc_id)


def delete_pages(conn: Connection, doc_id: int, pages: list[int], now: datetime) -> dict:
    """Remove pages (the blank pages the engine found, once the clerk confirms)."""
    doc = _queued(conn, doc_id)
    gone = set(_pick(doc, pages))
    new = [p for i, p in enumerate(doc["pages"], 1) if i not in gone]
    if not new:
        raise EditError("a document keeps at least one page (delete the document instead)")
    _save_pages(conn, doc, new, now)
    return _reload(conn, doc_id)


def split(conn: Connection, doc_id: int, at: int, now: datetime) -> dict:
    """Pages ``at`` and after become a new queued document; returns the new one."""
    doc = _queued(conn, doc_id)
    if not 2 <= at <= len(doc["pages"]):
        raise EditError(f"a split is before a page from 2 to {len(doc['pages'])}")
    first, rest = doc["pages"][: at - 1], doc["pages"][at - 1 :]
    _save_pages(conn, doc, first, now)
    seq = conn.execute(select(scan_documents.c.seq).where(scan_documents.c.id == doc_id)).scalar_one()
    new_id = conn.execute(
        insert(scan_documents).values(
            batch_id=doc["batch_id"],
            seq=seq,
            status="queued",
            reason="no_cover_sheet",
            pages=json.dumps(rest),
            cover=None,
            flags="[]",
            ocr_status="pending",
            ocr_attempts=0,
            ocr_next_at=now,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]
    return _reload(conn, new_id)


def merge(conn: Connection, doc_id: int, other_id: int, now: datetime) -> dict:
    """Append ``other_id``'s pages to ``doc_id``; the other document is deleted."""
    if doc_id == other_id:
        raise EditError("a document cannot be merged with itself")
    doc, other = _queued(conn, doc_id), _queued(conn, other_id)
    _save_pages(conn, doc, doc["pages"] + other["pages"], now)
    conn.execute(
        update(scan_documents)
        .where(scan_documents.c.id == other_id)
        .values(status="deleted", reason=f"merged into {doc_id}", pages="[]", updated_at=now)
    )
    return _reload(conn, doc_id)


def delete(conn: Connection, doc_id: int, now: datetime, by: str) -> dict:
    """Drop a queued document (a stray cover sheet, a page scanned twice)."""
    _queued(conn, doc_id)
    conn.execute(
        update(scan_documents)
        .where(scan_documents.c.id == doc_id)
        .values(status="deleted", updated_at=now, indexed_by=by, indexed_at=now)
    )
    return _reload(conn, doc_id)


def index(
    conn: Connection,
    doc_id: int,
    *,
    mrn: str,
    visit_number: str | None,
    type: str | None,
    document_date: str | None,
    author: str | None,
    by: str,
    store: ContentStore,
    settings: DocumentSettings,
    now: datetime,
) -> dict:
    """File the document to ``mrn``'s chart as the clerk indexed it; the completeness rules run
    as for any document. The OCR'd PDF is filed when it is current, else the pages as scanned
    (the text layer follows as a new version once the worker has OCR'd them)."""
    doc = _queued(conn, doc_id)
    if not doc["pages"]:
        raise EditError("the document has no pages")
    if not mrn.strip():
        raise EditError("a patient (MRN) is required")
    if not chart_known(conn, mrn.strip()):
        raise EditError("no chart has that MRN")
    pdf, current = sd.current_pdf(conn, store, doc)
    sd.file(
        conn,
        doc_id,
        mrn=mrn.strip(),
        visit_number=(visit_number or "").strip() or None,
        type=(type or "").strip() or None,
        document_date=(document_date or "").strip() or None,
        author=(author or "").strip() or None,
        pdf=pdf,
        settings=settings,
        now=now,
        by=by,
    )
    if not current and doc["ocr_status"] != "pending":
        conn.execute(
            update(scan_documents)
            .where(scan_documents.c.id == doc_id)
            .values(ocr_status="pending", ocr_next_at=now, ocr_attempts=0)
        )
    return _reload(conn, doc_id)


def _reload(conn: Connection, doc_id: int) -> dict:
    doc = sd.load(conn, doc_id)
    assert doc is not None
    return doc


def chart_known(conn: Connection, mrn: str) -> bool:
    return chart_person(conn, mrn) is not None
