"""``/api/scan``: scanned paper (docs/scanning.md): batches in, the indexing queue, page images.

* ``GET /api/scan/batches`` (clerk, analyst): the intake list. Analysts see what came in and why
  a file was rejected, never a page or a file name (both may carry patient data).
* ``POST /api/scan/batches`` (clerk; multipart ``file``): a PDF or TIFF/PNG/JPEG batch,
  journalled and committed before the answer; the same bytes again answer the same batch.
* ``GET /api/scan/documents`` (``status``, ``q`` words of the OCR text, ``mrn``), ``GET
  /api/scan/documents/{id}`` (pages, quality flags, cover sheet, candidate charts from the OCR
  text) and ``GET /api/scan/documents/{id}/pages/{n}`` (a PNG; ``size`` thumb or view): the
  clerk's, each audited, with ``patient`` the document's MRN when it has one.
* ``POST .../index``, ``/rotate``, ``/delete-pages``, ``/split``, ``/merge``, ``/delete``: the
  clerk's actions (``interface.store.scan_edits``), audited in the same transaction.

Authentication is added per route here (the two roles differ by route).
"""

from __future__ import annotations

from datetime import timezone
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from interface.desk.scan_desk import NoPage, page_png, suggestions
from interface.desk.users import User
from interface.store import scan_documents as sd
from interface.store import scan_edits, scan_intake
from interface.store.documents import DocumentSettings
from interface.web import auth
from interface.web.reading import reading

router = APIRouter(
    tags=["scan"], responses={409: {"description": "the action was refused (the reason says why)"}}
)
CLERK = auth.require(*auth.DOCUMENTS)
INTAKE = auth.require("clerk", "analyst")
MAX_PAGES = 10_000
DocId = Annotated[int, PathParam(ge=1, le=auth.MAX_ID)]
PageNo = Annotated[int, Field(ge=1, le=MAX_PAGES)]


class Batch(BaseModel):
    id: int
    channel: str
    source: str
    filename: str | None = Field(None, description="the clerk's only (it may name a patient)")
    size: int
    media_type: str | None = None
    pages: int | None = None
    status: str = Field(description="received | separated | rejected")
    reason: str | None = Field(None, description="why a file was rejected, in words")
    seen: int
    received_at: str = Field(description="ISO 8601, UTC")
    duplicate: bool | None = None
    documents: int | None = None


class Page(BaseModel):
    number: int
    batch: int
    batch_page: int
    rotate: int
    blank: bool
    ink: float | None = None
    confidence: float | None = None


class Flag(BaseModel):
    check: str
    message: str
    pages: list[int]


class Candidate(BaseModel):
    mrn: str
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    score: int
    reasons: list[str]


class ScanDocument(BaseModel):
    id: int
    batch_id: int
    status: str = Field(description="ocr | queued | filed | deleted")
    reason: str | None = None
    reason_text: str | None = None
    pages: list[Page]
    flags: list[Flag]
    cover: dict | None = None
    mrn: str | None = None
    visit_number: str | None = None
    type: str | None = None
    document_date: str | None = None
    author: str | None = None
    document_number: str | None = None
    ocr_status: str
    ocr_attempts: int
    text: str | None = None
    candidates: list[Candidate] | None = None
    indexed_by: str | None = None


class IndexRequest(BaseModel):
    mrn: str
    visit_number: str | None = None
    type: str | None = None
    document_date: str | None = Field(None, description="YYYY-MM-DD")
    author: str | None = None


class PagesRequest(BaseModel):
    pages: list[PageNo] = Field(max_length=MAX_PAGES)
    degrees: int = Field(90, ge=-270, le=270)


class SplitRequest(BaseModel):
    at: int = Field(ge=1, le=MAX_PAGES, description="the first page of the new document")


class MergeRequest(BaseModel):
    other: int = Field(ge=1, le=auth.MAX_ID, description="the document whose pages are appended")


def doc_settings(request: Request) -> DocumentSettings:
    return getattr(request.app.state, "document_settings", None) or DocumentSettings()


def batch_out(row: dict, user: User) -> dict:
    out = {k: row.get(k) for k in Batch.model_fields}
    if user.role == "analyst":
        out["filename"] = None
    at = row["received_at"]
    out["received_at"] = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()
    return out


def doc_out(doc: dict, *, text: bool = False, candidates: list | None = None) -> dict:
    pages = [
        {
            "number": i,
            "batch": p["batch"],
            "batch_page": p["page"],
            "rotate": p.get("rotate", 0),
            "blank": bool(p.get("blank")),
            "ink": p.get("ink"),
            "confidence": p.get("confidence"),
        }
        for i, p in enumerate(doc["pages"], 1)
    ]
    out = {k: doc.get(k) for k in ScanDocument.model_fields if k not in ("pages", "text", "candidates")}
    out.update(pages=pages, reason_text=sd.REASONS.get(doc["reason"] or ""), candidates=candidates)
    if text:
        out["text"] = doc["text"]
    return out


def receive_upload(request: Request, data: bytes, filename: str | None, user: User, source: str) -> dict:
    """Journal an uploaded batch (committed before the answer) and wake the scan worker."""
    from interface.config.scan import UPLOAD

    store = doc_settings(request).store()
    with request.app.state.engine.begin() as conn:
        row = scan_intake.receive(
            conn,
            store,
            data,
            channel=UPLOAD,
            source=source,
            filename=filename,
            now=auth.clock(request),
            user=user.name,
        )
        auth.record_audit(
            conn,
            user=user,
            action="scan_upload",
            target_type="scan_batch",
            target_id=row["id"],
            detail={"status": row["status"], "duplicate": row["duplicate"]},
            now=auth.clock(request),
        )
    runtime = getattr(request.app.state, "runtime", None)
    worker = getattr(runtime, "scan", None)
    if worker is not None:
        worker.wake.set()
    return row


@router.get("/api/scan/batches", response_model=list[Batch])
def list_batches(request: Request, status: str | None = None, user: User = Depends(INTAKE)):
    """The batches received, newest first."""
    with reading(request) as conn:
        rows = scan_intake.batches(conn, status=status)
    return [batch_out(r, user) for r in rows]


@router.post("/api/scan/batches", response_model=Batch, status_code=201)
def upload_batch(request: Request, file: UploadFile = File(...), user: User = Depends(CLERK)):
    """Upload a scanned batch (PDF, multi-page TIFF, PNG, JPEG)."""
    data = file.file.read()
    return batch_out(receive_upload(request, data, file.filename, user, "api"), user)


@router.get("/api/scan/documents", response_model=list[ScanDocument])
def list_documents(
    request: Request,
    status: str | None = Query(None, description="ocr | queued | filed | deleted"),
    q: str | None = Query(None, description="words the OCR text contains"),
    mrn: str | None = None,
    user: User = Depends(CLERK),
):
    """Scanned documents, newest first."""
    with reading(request) as conn:
        rows = sd.listing(conn, status=status, q=q, mrn=mrn)
    auth.audit_now(
        request,
        action="search",
        target_type="scan_document",
        detail={"status": status, "q": bool(q)},
        patient=mrn,
    )
    return [doc_out(r) for r in rows]


def _doc(conn, doc_id: int) -> dict:
    doc = sd.load(conn, doc_id)
    if doc is None:
        raise HTTPException(404, f"no scanned document {doc_id}")
    return doc


@router.get("/api/scan/documents/{doc_id}", response_model=ScanDocument)
def get_document(request: Request, doc_id: DocId, user: User = Depends(CLERK)):
    """One scanned document: pages, flags, the OCR text and candidate charts."""
    with reading(request) as conn:
        doc = _doc(conn, doc_id)
        cands = suggestions(conn, doc["text"]) if doc["status"] in ("queued", "ocr") else None
    auth.audit_now(request, action="view", target_type="scan_document", target_id=doc_id, patient=doc["mrn"])
    return doc_out(doc, text=True, candidates=cands)


@router.get(
    "/api/scan/documents/{doc_id}/pages/{number}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the page as a PNG"}},
)
def page_image(
    request: Request,
    doc_id: DocId,
    number: Annotated[int, PathParam(ge=1, le=MAX_PAGES)],
    size: str = Query("view", pattern="^(thumb|view)$"),
    user: User = Depends(CLERK),
):
    """One page of a scanned document as an image (turned as the clerk turned it); audited."""
    store = doc_settings(request).store()
    with reading(request) as conn:
        doc = _doc(conn, doc_id)
        try:
            png = page_png(conn, store, doc, number, size)
        except NoPage as exc:
            raise HTTPException(404, str(exc)) from None
    auth.audit_now(
        request,
        action="view",
        target_type="scan_page",
        target_id=f"{doc_id}/{number}",
        detail={"size": size},
        patient=doc["mrn"],
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def act(request: Request, user: User, doc_id: DocId, action: str, fn, detail: dict | None = None) -> dict:
    """Run one clerk action and its audit row in one transaction; 409 with the reason if refused."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            doc = fn(conn, now)
            auth.record_audit(
                conn,
                user=user,
                action=f"scan_{action}",
                target_type="scan_document",
                target_id=doc_id,
                detail=detail,
                now=now,
                patient=doc.get("mrn"),
            )
    except scan_edits.EditError as exc:
        raise HTTPException(409, str(exc)) from None
    runtime = getattr(request.app.state, "runtime", None)
    if getattr(runtime, "scan", None) is not None:
        runtime.scan.wake.set()
    return doc


def index_action(request: Request, user: User, doc_id: DocId, body: IndexRequest) -> dict:
    settings = doc_settings(request)
    return act(
        request,
        user,
        doc_id,
        "index",
        lambda conn, now: scan_edits.index(
            conn,
            doc_id,
            mrn=body.mrn,
            visit_number=body.visit_number,
            type=body.type,
            document_date=body.document_date,
            author=body.author,
            by=user.name,
            store=settings.store(),
            settings=settings,
            now=now,
        ),
        {"type": body.type},
    )


@router.post("/api/scan/documents/{doc_id}/index", response_model=ScanDocument)
def index_document(request: Request, doc_id: DocId, body: IndexRequest, user: User = Depends(CLERK)):
    """File the document to a chart (patient, visit, type, document date, author)."""
    return doc_out(index_action(request, user, doc_id, body))


@router.post("/api/scan/documents/{doc_id}/rotate", response_model=ScanDocument)
def rotate_pages(request: Request, doc_id: DocId, body: PagesRequest, user: User = Depends(CLERK)):
    """Turn pages clockwise (90, 180, 270 degrees)."""
    return doc_out(
        act(
            request,
            user,
            doc_id,
            "rotate",
            lambda c, now: scan_edits.rotate(c, doc_id, body.pages, body.degrees, now),
            body.model_dump(),
        )
    )


@router.post("/api/scan/documents/{doc_id}/delete-pages", response_model=ScanDocument)
def delete_pages(request: Request, doc_id: DocId, body: PagesRequest, user: User = Depends(CLERK)):
    """Delete pages (the blank ones the engine flagged, once confirmed)."""
    return doc_out(
        act(
            request,
            user,
            doc_id,
            "delete_pages",
            lambda c, now: scan_edits.delete_pages(c, doc_id, body.pages, now),
            {"pages": body.pages},
        )
    )


@router.post("/api/scan/documents/{doc_id}/split", response_model=ScanDocument)
def split_document(request: Request, doc_id: DocId, body: SplitRequest, user: User = Depends(CLERK)):
    """Pages from ``at`` on become a new queued document (the new one is returned)."""
    return doc_out(
        act(
            request,
            user,
            doc_id,
            "split",
            lambda c, now: scan_edits.split(c, doc_id, body.at, now),
            {"at": body.at},
        )
    )


@router.post("/api/scan/documents/{doc_id}/merge", response_model=ScanDocument)
def merge_documents(request: Request, doc_id: DocId, body: MergeRequest, user: User = Depends(CLERK)):
    """Append another queued document's pages to this one."""
    return doc_out(
        act(
            request,
            user,
            doc_id,
            "merge",
            lambda c, now: scan_edits.merge(c, doc_id, body.other, now),
            {"other": body.other},
        )
    )


@router.post("/api/scan/documents/{doc_id}/delete", response_model=ScanDocument)
def delete_document(request: Request, doc_id: DocId, user: User = Depends(CLERK)):
    """Drop a queued document (a stray sheet, a page scanned twice)."""
    return doc_out(
        act(request, user, doc_id, "delete", lambda c, now: scan_edits.delete(c, doc_id, now, user.name))
    )
