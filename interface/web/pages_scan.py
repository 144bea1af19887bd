"""Console pages of scanned paper (docs/scanning.md): the clerk's indexing queue.

===============================================  ==============================================
``/scan``                                        the queue: documents waiting for a clerk, the
                                                 reason in words, the quality flags
``/scan/batches``                                the batches received, rejected files with their
                                                 reason; the upload form (clerks). Analysts see
                                                 the list without file names, never a page
``/scan/documents/{id}``                         one document: thumbnails, the page viewer
                                                 (``?page=n``), candidate charts from the OCR
                                                 text, the index form, split, merge, rotate
``/scan/documents/{id}/pages/{n}``               a page as a PNG (``size`` thumb or view)
``/scan/documents/{id}/delete-pages``            GET: the pages to delete, with the engine's
                                                 blank-page finding, to confirm; POST deletes
===============================================  ==============================================

The actions (``POST .../index``, ``rotate``, ``delete-pages``, ``split``, ``merge``, ``delete``;
``POST /scan/batches``) go through the same functions as ``/api/scan`` (:mod:`interface.web.api.scan`:
the store's edits and their audit row in one transaction), with the console's CSRF token. Every
page view is audited, with ``patient`` the document's MRN when it has one.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from interface.desk.scan_desk import NoPage, page_png, suggestions
from interface.desk.users import User
from interface.rules import words
from interface.store import scan_documents as sd
from interface.store import scan_edits, scan_intake
from interface.web import auth, identity_view
from interface.web.api import scan as api
from interface.web.pages import DOCUMENTS, MAX_ID, _clean, _reader, _render, html_errors

router = APIRouter(include_in_schema=False)
INTAKE = auth.require("clerk", "analyst")
MAX_PAGES = api.MAX_PAGES

DOC_STATUS = {
    "ocr": "Being read (OCR)",
    "queued": "Waiting for a clerk",
    "filed": "Filed to the chart",
    "deleted": "Deleted",
}
BATCH_STATUS = {
    "received": "Received, not yet separated",
    "separated": "Separated into documents",
    "rejected": "Rejected",
}
SOURCES = {"folder": "Drop folder", "upload": "Console upload", "api": "API"}
OCR_STATUS = {"pending": "Waiting", "done": "Done", "failed": "Failed"}
DEGREES = {90: "a quarter turn clockwise", 180: "upside down", 270: "a quarter turn anticlockwise"}
NOTICES = {
    "index": "Filed to the chart.",
    "rotate": "Pages turned; the text is read again.",
    "delete_pages": "Pages deleted; the text is read again.",
    "split": "Split: the pages from there on are a new document in the queue.",
    "merge": "Merged: the other document's pages are now at the end of this one.",
}


def _store(request: Request):
    return api.doc_settings(request).store()


def _doc_or_404(conn, doc_id: int) -> dict:
    doc = sd.load(conn, doc_id)
    if doc is None:
        raise HTTPException(status_code=404, detail="no such scanned document")
    return doc


def _reason(doc: dict) -> str:
    return sd.REASONS.get(doc.get("reason") or "", "") or words.reason_text(doc.get("reason"))


# ---------------------------------------------------------------------------------------------
# the queue and the batches


@router.get("/scan", response_class=HTMLResponse)
@html_errors
def queue(
    request: Request,
    user: User = Depends(DOCUMENTS),
    status: str | None = None,
    q: str | None = None,
    done: str | None = None,
):
    """The documents waiting to be indexed (or another status), newest first."""
    status = status if status in DOC_STATUS else "queued"
    q = _clean(q, 200)
    with _reader(request).connect() as conn:
        rows = sd.listing(conn, status=status, q=q)
        ocr = len(sd.listing(conn, status="ocr")) if status == "queued" else 0
        conn.rollback()
    auth.audit_listed(
        request,
        [r["mrn"] for r in rows],
        action="search",
        target_type="scan_document",
        detail={"status": status, "q": bool(q)},
    )
    return _render(
        request,
        "scan_queue.html",
        {
            "rows": rows,
            "status": status,
            "q": q or "",
            "ocr_waiting": ocr,
            "statuses": DOC_STATUS,
            "reason_of": _reason,
            "notice": "Deleted the document." if done == "delete" else None,
        },
    )


@router.get("/scan/batches", response_class=HTMLResponse)
@html_errors
def batches_page(request: Request, user: User = Depends(INTAKE), uploaded: str | None = None):
    """The batches received; rejected files with the reason. Analysts: no file names."""
    clerk = user.role != "analyst"
    with _reader(request).connect() as conn:
        rows = scan_intake.batches(conn, limit=200)
        conn.rollback()
    if not clerk:
        rows = [{**r, "filename": None} for r in rows]
    auth.audit_now(request, action="search", target_type="scan_batch", detail={"listed": len(rows)})
    ids = {int(x) for x in re.findall(r"\d{1,18}", uploaded or "")}
    notice = None
    if ids:
        got = [r for r in rows if r["id"] in ids]
        notice = "Received: " + "; ".join(
            f"batch {r['id']} ({BATCH_STATUS.get(r['status'], r['status']).lower()})" for r in got
        )
    return _render(
        request,
        "scan_batches.html",
        {
            "rows": rows,
            "clerk": clerk,
            "statuses": BATCH_STATUS,
            "sources": SOURCES,
            "uploaded": ids,
            "notice": notice,
        },
    )


@router.post("/scan/batches")
@html_errors
def upload(
    request: Request, files: list[UploadFile | str] = File(default=[]), user: User = Depends(DOCUMENTS)
):
    """Upload scanned batches (PDF, TIFF, PNG, JPEG): journalled as the API does, then the list."""
    got = []
    for f in files:
        if isinstance(f, str):
            continue  # the empty file field a browser sends when nothing was chosen
        data = f.file.read()
        if not data and not f.filename:
            continue  # the empty file field a browser sends when nothing was chosen
        got.append(api.receive_upload(request, data, f.filename, user, "upload")["id"])
    if not got:
        raise HTTPException(
            status_code=400, detail="Choose a scanned file (PDF, TIFF, PNG or JPEG) to upload."
        )
    return RedirectResponse("/scan/batches?" + urlencode({"uploaded": ",".join(map(str, got))}), 303)


# ---------------------------------------------------------------------------------------------
# one document


def _document_page(
    request: Request,
    doc_id: int,
    *,
    page: int | None = None,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with _reader(request).connect() as conn:
        doc = _doc_or_404(conn, doc_id)
        waiting = doc["status"] in ("queued", "ocr")
        cands = suggestions(conn, doc["text"]) if waiting else []
        others = [d for d in sd.listing(conn, status="queued") if d["id"] != doc_id] if waiting else []
        batch = scan_intake.batch(conn, doc["batch_id"])
        patient = identity_view.banner(conn, doc["mrn"])
        conn.rollback()
    auth.audit_now(request, action="view", target_type="scan_document", target_id=doc_id, patient=doc["mrn"])
    n = len(doc["pages"])
    current = min(max(page or 1, 1), n) if n else None
    return _render(
        request,
        "scan_document.html",
        {
            "doc": doc,
            "batch": batch,
            "patient": patient,
            "banner_none": "not indexed to a chart yet" if not doc["mrn"] else "no chart has this MRN",
            "waiting": waiting,
            "candidates": cands,
            "others": others,
            "current": current,
            "statuses": DOC_STATUS,
            "ocr_statuses": OCR_STATUS,
            "reason": _reason(doc),
            "degrees": DEGREES,
            "types": words.TABLES["0270"],
            "blank": [i for i, p in enumerate(doc["pages"], 1) if p.get("blank")],
            "notice": notice,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/scan/documents/{doc_id}", response_class=HTMLResponse)
@html_errors
def document_page(
    request: Request,
    doc_id: api.DocId,
    user: User = Depends(DOCUMENTS),
    page: int | None = Query(None, ge=1, le=MAX_PAGES),
    done: str | None = None,
):
    return _document_page(request, doc_id, page=page, notice=NOTICES.get(done or ""))


@router.get("/scan/documents/{doc_id}/pages/{number}")
@html_errors
def page_image(
    request: Request,
    doc_id: api.DocId,
    number: Annotated[int, Path(ge=1, le=MAX_PAGES)],
    size: str = Query("view", pattern="^(thumb|view)$"),
    user: User = Depends(DOCUMENTS),
):
    """A page as a PNG, drawn as the API draws it (``interface.desk.scan_desk.page_png``); audited."""
    with _reader(request).connect() as conn:
        doc = _doc_or_404(conn, doc_id)
        try:
            png = page_png(conn, _store(request), doc, number, size)
        except NoPage as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        conn.rollback()
    auth.audit_now(
        request,
        action="view",
        target_type="scan_page",
        target_id=f"{doc_id}/{number}",
        detail={"size": size},
        patient=doc["mrn"],
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/scan/documents/{doc_id}/delete-pages", response_class=HTMLResponse)
@html_errors
def confirm_delete_pages(
    request: Request,
    doc_id: api.DocId,
    pages: list[int] = Query(default=[]),
    user: User = Depends(DOCUMENTS),
):
    """The pages chosen for deletion, each with what the engine found (blank or not, its ink), to
    confirm before anything is deleted."""
    with _reader(request).connect() as conn:
        doc = _doc_or_404(conn, doc_id)
        patient = identity_view.banner(conn, doc["mrn"])
        conn.rollback()
    n = len(doc["pages"])
    chosen = sorted({p for p in pages if 1 <= p <= n})
    auth.audit_now(
        request,
        action="view",
        target_type="scan_document",
        target_id=doc_id,
        detail={"confirm_delete_pages": chosen},
        patient=doc["mrn"],
    )
    if not chosen:
        return _document_page(request, doc_id, error="Choose the pages to delete.", status_code=400)
    return _render(
        request,
        "scan_delete_pages.html",
        {
            "doc": doc,
            "patient": patient,
            "banner_none": "not indexed to a chart yet",
            "chosen": [(i, doc["pages"][i - 1]) for i in chosen],
            "keeps": n - len(chosen),
        },
    )


def _acted(request: Request, doc_id: int, run, done: str, to: Callable[[dict], int] | None = None):
    """Run an API action; back to the document's page (``to``: the document the action returned,
    e.g. a split's new one) with a notice, or the page again with the reason it was refused (409)."""
    try:
        doc = run()
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        return _document_page(request, doc_id, error=str(exc.detail), status_code=409)
    target = to(doc) if to is not None else doc_id
    return RedirectResponse(f"/scan/documents/{target}?done={done}", status_code=303)


def _date(value: str | None) -> str | None:
    value = _clean(value, 10)
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise HTTPException(status_code=400, detail="Document date: use YYYY-MM-DD.") from None


@router.post("/scan/documents/{doc_id}/index", response_class=HTMLResponse)
@html_errors
def index_document(
    request: Request,
    doc_id: api.DocId,
    chosen: str = Form(""),
    mrn: str = Form(""),
    visit_number: str = Form(""),
    type: str = Form(""),
    document_date: str = Form(""),
    author: str = Form(""),
    user: User = Depends(DOCUMENTS),
):
    """File the document to a chart: a candidate's ("Index to this patient") or the MRN typed."""
    target = _clean(chosen, 128) or _clean(mrn, 128)
    if not target:
        return _document_page(request, doc_id, error="Choose a patient or type an MRN.", status_code=400)
    try:
        when = _date(document_date)
    except HTTPException as exc:
        return _document_page(request, doc_id, error=str(exc.detail), status_code=400)
    body = api.IndexRequest(
        mrn=target,
        visit_number=_clean(visit_number, 64),
        type=_clean(type, 64),
        document_date=when,
        author=_clean(author, 200),
    )
    return _acted(request, doc_id, lambda: api.index_action(request, user, doc_id, body), "index")


def _pages_action(request: Request, user: User, doc_id: int, action: str, fn, detail: dict):
    return _acted(request, doc_id, lambda: api.act(request, user, doc_id, action, fn, detail), action)


@router.post("/scan/documents/{doc_id}/rotate", response_class=HTMLResponse)
@html_errors
def rotate(
    request: Request,
    doc_id: api.DocId,
    pages: list[int] = Form(default=[]),
    degrees: int = Form(90),
    user: User = Depends(DOCUMENTS),
):
    if degrees not in DEGREES:
        return _document_page(request, doc_id, error="Turn by 90, 180 or 270 degrees.", status_code=400)
    detail = {"pages": pages, "degrees": degrees}
    return _pages_action(
        request,
        user,
        doc_id,
        "rotate",
        lambda c, now: scan_edits.rotate(c, doc_id, pages, degrees, now),
        detail,
    )


@router.post("/scan/documents/{doc_id}/delete-pages", response_class=HTMLResponse)
@html_errors
def delete_pages(
    request: Request,
    doc_id: api.DocId,
    pages: list[int] = Form(default=[]),
    user: User = Depends(DOCUMENTS),
):
    """Delete the pages confirmed on the confirmation page."""
    return _pages_action(
        request,
        user,
        doc_id,
        "delete_pages",
        lambda c, now: scan_edits.delete_pages(c, doc_id, pages, now),
        {"pages": pages},
    )


@router.post("/scan/documents/{doc_id}/split", response_class=HTMLResponse)
@html_errors
def split(
    request: Request, doc_id: api.DocId, at: int = Form(ge=1, le=MAX_PAGES), user: User = Depends(DOCUMENTS)
):
    return _acted(
        request,
        doc_id,
        lambda: api.act(
            request, user, doc_id, "split", lambda c, now: scan_edits.split(c, doc_id, at, now), {"at": at}
        ),
        "split",
        to=lambda new: new["id"],
    )


@router.post("/scan/documents/{doc_id}/merge", response_class=HTMLResponse)
@html_errors
def merge(
    request: Request, doc_id: api.DocId, other: int = Form(ge=1, le=MAX_ID), user: User = Depends(DOCUMENTS)
):
    return _pages_action(
        request,
        user,
        doc_id,
        "merge",
        lambda c, now: scan_edits.merge(c, doc_id, other, now),
        {"other": other},
    )


@router.post("/scan/documents/{doc_id}/delete", response_class=HTMLResponse)
@html_errors
def delete_document(request: Request, doc_id: api.DocId, user: User = Depends(DOCUMENTS)):
    """Drop a queued document (a stray sheet, a page scanned twice); back to the queue."""
    try:
        api.act(request, user, doc_id, "delete", lambda c, now: scan_edits.delete(c, doc_id, now, user.name))
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        return _document_page(request, doc_id, error=str(exc.detail), status_code=409)
    return RedirectResponse("/scan?done=delete", status_code=303)
