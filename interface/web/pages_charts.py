"""Console pages: patients, charts, documents, the deficiency worklist (the audit log and the
access report: :mod:`interface.web.pages_audit`)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from interface.desk import masking
from interface.desk.users import User
from interface.web import auth, identity_view, sensitive
from interface.web.pages import (
    CHARTS,
    DOCUMENTS,
    MAX_ID,
    _clean,
    _engine,
    _hl7_time,
    _now,
    _qs,
    _reader,
    _render,
    html_errors,
    mask,
)

router = APIRouter(include_in_schema=False)


@router.get("/patients", response_class=HTMLResponse)
@html_errors
def patient_search(
    request: Request,
    user: User = Depends(CHARTS),
    family: str | None = None,
    given: str | None = None,
    birth_date: str | None = None,
    mrn: str | None = None,
):
    from interface.store import chart_read

    family, given, birth_date, mrn = (
        _clean(family, 100),
        _clean(given, 100),
        _clean(birth_date, 10),
        _clean(mrn, 128),
    )
    if mrn:
        return RedirectResponse("/patients/" + quote(mrn, safe=""), status_code=303)
    error = None
    found = None
    if birth_date and not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", birth_date):
        error = "Birth date must be YYYY, YYYY-MM or YYYY-MM-DD."
    elif family or given or birth_date:
        with _reader(request).connect() as conn:
            found = chart_read.search_patients(
                conn, family=family, given=given, birth_date=birth_date, limit=100
            )
        auth.audit_listed(  # one entry per patient the search listed
            request,
            [r["mrn"] for r in found],
            action="search",
            target_type="patient",
            detail={k: v for k, v in (("family", family), ("given", given), ("birth_date", birth_date)) if v},
        )
    return _render(
        request,
        "patients.html",
        {
            "found": found,
            "params": {"family": family or "", "given": given or "", "birth_date": birth_date or ""},
            "error": error,
        },
        status_code=400 if error else 200,
    )


def _chart_page(
    request: Request, mrn: str, reveal: bool, status_code: int = 200, error: str | None = None
) -> HTMLResponse:
    from interface.store import chart_read

    with _reader(request).connect() as conn:
        record = chart_read.get_chart(conn, mrn)
        if record is None:
            raise HTTPException(status_code=404, detail="no patient with this MRN")
        hist = chart_read.history(conn, mrn)
        patient = identity_view.banner(conn, record.get("mrn") or mrn)
        conn.rollback()
    return _render(
        request,
        "chart.html",
        {
            "c": record,
            "patient": patient,
            "history": _history_rows(list(reversed(hist))[:300], reveal),
            "history_total": len(hist),
            "reveal": reveal,
            "masked_fields": HISTORY_MASKED,
            "mask": mask,
            "error": error,
            "fmt_hl7": _hl7_time,
        },
        status_code=status_code,
    )


HISTORY_MASKED = masking.HISTORY_MASKED
_history_rows = masking.history_rows


@router.get("/patients/{mrn}", response_class=HTMLResponse)
@html_errors
def patient_chart(request: Request, mrn: str, user: User = Depends(CHARTS)):
    """The chart; viewing it is audited. Identifiers other than the MRN stay masked until revealed."""
    response = _chart_page(request, mrn, reveal=False)
    auth.audit_now(
        request, action="view", target_type="patient", target_id=mrn, detail=request.url.path, patient=mrn
    )
    return response


@router.post("/patients/{mrn}/reveal", response_class=HTMLResponse)
@html_errors
def patient_reveal(request: Request, mrn: str, reason: str = Form(""), user: User = Depends(CHARTS)):
    try:
        reason = masking.check_reveal(user.role, masking.CHART, True, reason)
    except masking.RevealRefused as exc:
        if exc.status != 400:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None
        return _chart_page(
            request, mrn, reveal=False, status_code=400, error="Give a reason to reveal the identifiers."
        )
    response = _chart_page(request, mrn, reveal=True)
    auth.audit_now(
        request, action="reveal", target_type="patient", target_id=mrn, reason=reason[:1000], patient=mrn
    )
    return response


def _document_settings(request: Request):
    settings = getattr(request.app.state, "document_settings", None)
    if settings is None:
        from interface.store.documents import DocumentSettings

        settings = DocumentSettings()
    return settings


@router.get("/documents/{number}", response_class=HTMLResponse)
@html_errors
def document_view(
    request: Request,
    number: str,
    user: User = Depends(DOCUMENTS),
    version: int | None = Query(None, ge=1),
    namespace: str | None = None,
):
    return _document_page(request, number, user, version, namespace)


def _document_page(
    request: Request,
    number: str,
    user: User,
    version: int | None,
    namespace: str | None,
    status_code: int = 200,
    glass_error: str | None = None,
):
    """The document's page; a sensitive one shows its banner and, until the user gives a reason,
    the break-the-glass form instead of the content."""
    from interface.store import document_read

    with _reader(request).connect() as conn:
        entry = _document_entry(conn, number, namespace, _now(request))
        asked = (namespace or "").strip()  # kept in the page's links (the number alone may be ambiguous)
        namespace = entry["namespace"] or entry["universal_id"]
        text = None
        media = entry.get("content_type") or ""
        viewer = None
        cats = sensitive.categories(request, entry)
        sealed = bool(cats) and not sensitive.glass_broken(conn, user, number, _now(request))
        if sealed:
            viewer = "sealed" if (entry.get("content_sha256") or version) else None
        elif entry.get("content_sha256") or version:
            got = document_read.get_content(
                conn, number, _document_settings(request), version=version, namespace=namespace
            )
            if got is not None:
                data, media = got
                base = media.split(";")[0].strip().lower()
                if base == "application/pdf":
                    viewer = "pdf"
                elif base in ("text/html", "application/xhtml+xml"):
                    viewer = "html"
                elif base.startswith("text/") or base in ("application/rtf", "application/xml"):
                    viewer = "text"
                    m = re.search(r"charset=([\w.-]+)", media)
                    try:
                        text = data.decode(m.group(1) if m else "utf-8", "replace")
                    except LookupError:
                        text = data.decode("utf-8", "replace")
                elif base.startswith("image/") and base != "image/svg+xml":
                    viewer = "image"
                else:
                    viewer = "download"
        patient = identity_view.banner(conn, entry.get("mrn"))
        conn.rollback()
    auth.audit_now(
        request,
        action="view",
        target_type="document",
        target_id=number,
        detail=request.url.path,
        patient=entry.get("mrn"),
    )
    return _render(
        request,
        "document.html",
        {
            "d": entry,
            "patient": patient,
            "banner_none": "the document's MRN names no chart",
            "viewer": viewer,
            "text": text,
            "media": media,
            "version": version,
            "fmt_hl7": _hl7_time,
            "ns": f"namespace={quote(asked)}" if asked else "",
            "asked_namespace": asked,
            "sensitive": sensitive.banner(request, cats),
            "glass_error": glass_error,
        },
        status_code=status_code,
    )


@router.post("/documents/{number}/break-glass", response_class=HTMLResponse)
@html_errors
def document_break_glass(
    request: Request,
    number: str,
    reason: str = Form(""),
    version: str = Form(""),
    namespace: str = Form(""),
    user: User = Depends(DOCUMENTS),
):
    """Open a sensitive document: the reason is required (else the page again, 400, asking for
    it), recorded as ``break_glass`` against the patient, then the page with its content."""
    v = int(version) if version.isdigit() and int(version) >= 1 else None
    reason = reason.strip()
    if not reason:
        return _document_page(
            request,
            number,
            user,
            v,
            namespace or None,
            status_code=400,
            glass_error="Give a reason to open it.",
        )
    with request.app.state.engine.begin() as conn:
        entry = _document_entry(conn, number, namespace, None)
        cats = sensitive.categories(request, entry)
        if cats:
            sensitive.break_glass(conn, user, entry, cats, reason, auth.clock(request), via="console")
    q = _qs({"version": v, "namespace": namespace.strip()})
    return RedirectResponse(f"/documents/{quote(number, safe='')}{'?' + q if q else ''}", status_code=303)


def _document_entry(conn, number: str, namespace: str | None, now):
    """The entry for a document page: 404 unknown, 409 when the number needs ``?namespace=``."""
    from interface.store import document_read
    from interface.store.document_ids import AmbiguousDocument

    try:
        entry = document_read.get_document(conn, number, now=now, namespace=(namespace or "").strip() or None)
    except AmbiguousDocument as exc:
        raise HTTPException(status_code=409, detail=f"{exc}: add ?namespace=") from None
    if entry is None:
        raise HTTPException(status_code=404, detail="no such document")
    return entry


@router.get("/documents/{number}/content")
@html_errors
def document_content(
    request: Request,
    number: str,
    user: User = Depends(DOCUMENTS),
    version: int | None = Query(None, ge=1),
    namespace: str | None = None,
):
    """The document bytes. Anything but PDF and images is sandboxed (CSP ``sandbox``: no
    scripts, no same-origin access), and nothing is sniffed into another type."""
    from interface.store import document_read

    with _reader(request).connect() as conn:
        entry = _document_entry(conn, number, namespace, None)
        if sensitive.categories(request, entry) and not sensitive.glass_broken(
            conn, user, number, _now(request)
        ):
            raise HTTPException(
                status_code=403, detail="a sensitive record: give a reason on its page to open it"
            )
        got = document_read.get_content(
            conn,
            number,
            _document_settings(request),
            version=version,
            namespace=entry["namespace"] or entry["universal_id"],
        )
        conn.rollback()
    if got is None:
        raise HTTPException(status_code=404, detail="no content")
    data, media = got
    auth.audit_now(
        request,
        action="view_content",
        target_type="document",
        target_id=number,
        detail={"version": version} if version else None,
        patient=entry.get("mrn"),
    )
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Content-Disposition": "inline",
        "X-Frame-Options": "SAMEORIGIN",
    }
    base = media.split(";")[0].strip().lower()
    if base != "application/pdf":
        headers["Content-Security-Policy"] = (
            "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        )
    return Response(content=data, media_type=media, headers=headers)


# ---------------------------------------------------------------------------------------------
# completeness worklist and audit log


@router.get("/deficiencies", response_class=HTMLResponse)
@html_errors
def deficiencies(
    request: Request,
    user: User = Depends(DOCUMENTS),
    mrn: str | None = None,
    type: str | None = None,
    author: str | None = None,
    clinician: str | None = None,
    service: str | None = None,
    status: str | None = None,
    bucket: str | None = None,
    done: str | None = None,
):
    """The completeness worklist with its responsible clinicians, ages and waive forms, and the
    roll-ups per clinician and per service (docs/deficiencies.md)."""
    raw = {"mrn": mrn, "type": type, "author": author, "clinician": clinician, "service": service}
    return _worklist(request, {**raw, "status": status, "bucket": bucket}, done=done == "waived")


def _worklist(request: Request, raw: dict, *, done=False, error=None, status_code=200):
    from interface.rules.completeness import BUCKETS
    from interface.store.deficiencies import STATUSES, list_deficiencies, summarize

    params = {
        "mrn": _clean(raw.get("mrn"), 128) or "",
        "type": _clean(raw.get("type"), 64) or "",
        "author": _clean(raw.get("author"), 128) or "",
        "clinician": _clean(raw.get("clinician"), 250) or "",
        "service": _clean(raw.get("service"), 250) or "",
        "status": raw.get("status") if raw.get("status") in STATUSES else "open",
        "bucket": raw.get("bucket") if raw.get("bucket") in BUCKETS else "",
    }
    bylaws = _bylaws_days(request)
    with _reader(request).connect() as conn:
        rows = list_deficiencies(
            conn,
            mrn=params["mrn"] or None,
            type=params["type"] or None,
            author=params["author"] or None,
            now=_now(request),
            clinician=params["clinician"] or None,
            service=params["service"] or None,
            status=params["status"],
            bucket=params["bucket"] or None,
            bylaws_days=bylaws,
        )
        by_clinician = summarize(conn, "clinician", _now(request), bylaws_days=bylaws)
        by_service = summarize(conn, "service", _now(request), bylaws_days=bylaws)
    if params["mrn"]:  # a search by MRN is about that patient (and any chart it listed)
        auth.audit_listed(
            request,
            [params["mrn"], *(r.get("mrn") for r in rows[:1000])],
            action="search",
            target_type="deficiency",
            detail={k: v for k, v in params.items() if v and k != "mrn"},
        )
    response = _render(
        request,
        "deficiencies.html",
        {
            "rows": rows[:1000],
            "total": len(rows),
            "params": params,
            "buckets": BUCKETS,
            "statuses": STATUSES,
            "bylaws_days": bylaws,
            "by_clinician": by_clinician,
            "by_service": by_service,
            "done": done,
            "error": error,
            "back": ("?" + _qs(params)) if _qs(params) else "",
        },
    )
    response.status_code = status_code
    return response


def _bylaws_days(request: Request) -> float:
    from interface.rules.completeness import DEFAULT_BYLAWS_DAYS

    rules = getattr(_document_settings(request), "rules", None)
    return getattr(rules, "bylaws_days", None) or DEFAULT_BYLAWS_DAYS


@router.post("/deficiencies/{deficiency_id}/waive")
@html_errors
def deficiency_waive(
    request: Request,
    deficiency_id: int = Path(ge=1, le=MAX_ID),
    reason: str = Form(""),
    back: str = Form(""),
    user: User = Depends(DOCUMENTS),
):
    """A clerk waives a finding with a reason (audited by the store); back to the worklist."""
    from interface.store.deficiencies import DeficiencyError, waive

    back = back if re.fullmatch(r"\?[A-Za-z0-9_.~%+=&-]{1,2000}", back or "") else ""
    reason = (reason or "").strip()
    try:
        if not reason:
            raise DeficiencyError("Give a reason to waive this deficiency.", 400)
        with _engine(request).begin() as conn:
            waive(conn, deficiency_id, user=user.name, reason=reason[:1000], now=_now(request))
    except DeficiencyError as exc:
        return _worklist(request, dict(parse_qsl(back[1:])), error=str(exc), status_code=exc.status)
    sep = "&" if back else "?"
    return RedirectResponse(f"/deficiencies{back}{sep}done=waived", status_code=303)
