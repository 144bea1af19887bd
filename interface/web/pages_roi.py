"""Console pages of the release-of-information desk (:mod:`interface.desk.roi`,
docs/release-of-information.md):

============================  ===============================================================
``/roi``                      the ROI queue: open requests soonest due, age, overdue marked
``/roi/new``                  log a request (find the patient by MRN or name and birth date)
``/roi/{id}``                 one request: banner, due date and fee, the identity checklist,
                              status moves, denial, extension, the authorization checklist and
                              signed form, what a release sends and what it leaves out (and
                              why), page exclusions, release, its packets and disclosures
``/roi/packets/{id}``         a released packet (the PDF, as released)
``/roi/disclosures?mrn=``     the disclosure log of a patient, a disclosure entered by hand, the
                              accounting of disclosures (shown, or the PDF letter)
============================  ===============================================================

Intake (log, verify, view) is ``auth.ROI_INTAKE`` (clerk, release); the rest ``auth.ROI_RELEASE``.
Every view and change is audited with the patient's MRN; forms carry the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as FPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from interface.desk import roi, roi_release
from interface.desk.roi import RoiError
from interface.desk.users import User
from interface.rules import roi as rules
from interface.rules.roi import settings_or_default
from interface.store.chart_read import search_patients
from interface.store.content import ContentStore
from interface.web import auth, identity_view
from interface.web.pages import _clean, _now, _render, html_errors

router = APIRouter(include_in_schema=False)
INTAKE = auth.require(*auth.ROI_INTAKE)
RELEASE = auth.require(*auth.ROI_RELEASE)
RequestId = Annotated[int, FPath(ge=1, le=auth.MAX_ID)]
_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}


def _settings(request: Request):
    found = getattr(request.app.state, "roi_settings", None)
    if found is None:
        found = request.app.state.roi_settings = settings_or_default()
    return found


def _store(request: Request) -> ContentStore:
    ds = getattr(request.app.state, "document_settings", None)
    return ds.store() if ds is not None else ContentStore(None)


def _audit(conn, request: Request, action: str, mrn: str | None, target_id=None, detail=None) -> None:
    auth.record_audit(
        conn,
        user=request.state.user,
        action=action,
        target_type="roi_request",
        target_id=target_id,
        detail={"via": "console", **(detail or {})},
        now=_now(request),
        patient=mrn,
    )


def _refused(exc: RoiError) -> HTTPException:
    return HTTPException(status_code=_STATUS.get(exc.kind, 400), detail=str(exc))


def _act(request: Request, request_id: RequestId, action: str, fn, detail=None) -> RedirectResponse:
    """Do ``fn(conn, user, now)`` on a request with its audit row, then back to its page."""
    try:
        with request.app.state.engine.begin() as conn:
            mrn = roi.get(conn, request_id)["mrn"]
            result = fn(conn, request.state.user.name, _now(request))
            _audit(conn, request, action, mrn, request_id, detail(result) if callable(detail) else detail)
    except RoiError as exc:
        raise _refused(exc) from None
    return RedirectResponse(f"/roi/{request_id}?done={action}", status_code=303)


def _labels() -> dict:
    return {
        "requester_types": rules.REQUESTER_TYPES,
        "purposes": rules.PURPOSES,
        "deliveries": rules.DELIVERIES,
        "statuses": rules.STATUSES,
        "bases": rules.BASES,
        "identity_checks": rules.IDENTITY_CHECKS,
        "elements": rules.ELEMENTS,
    }


@router.get("/roi", response_class=HTMLResponse)
@html_errors
def queue_page(request: Request, user: User = Depends(INTAKE), show: str | None = None):
    statuses = list(rules.STATUSES) if show == "all" else None
    with request.app.state.engine.begin() as conn:
        rows = roi.queue(conn, _settings(request), _now(request).date(), statuses=statuses, limit=500)
        _audit(conn, request, "roi_list", None, detail={"count": len(rows)})
    overdue = sum(1 for r in rows if r["overdue"])
    return _render(request, "roi_queue.html", {"rows": rows, "overdue": overdue, "show": show or "open"})


@router.get("/roi/new", response_class=HTMLResponse)
@html_errors
def new_page(
    request: Request,
    user: User = Depends(INTAKE),
    mrn: str | None = None,
    family: str | None = None,
    given: str | None = None,
    birth_date: str | None = None,
):
    found, patient = [], None
    with request.app.state.engine.begin() as conn:
        if _clean(family) or _clean(given) or _clean(birth_date):
            found = search_patients(conn, _clean(family), _clean(given), _clean(birth_date, 10), limit=20)
            _audit(conn, request, "roi_patient_search", None, detail={"results": len(found)})
        if _clean(mrn, 128):
            patient = identity_view.banner(conn, _clean(mrn, 128))
            _audit(conn, request, "roi_patient_pick", patient["mrn"] if patient else None)
    return _render(
        request,
        "roi_new.html",
        {
            "found": found,
            "patient": patient,
            "search": {"family": family or "", "given": given or "", "birth_date": birth_date or ""},
            "today": _now(request).date().isoformat(),
            **_labels(),
        },
    )


@router.post("/roi/new")
@html_errors
def create(
    request: Request,
    user: User = Depends(INTAKE),
    mrn: str = Form(""),
    requester_type: str = Form(""),
    requester_name: str = Form(""),
    requester_organization: str = Form(""),
    requester_address: str = Form(""),
    requester_email: str = Form(""),
    requester_phone: str = Form(""),
    designated_record_set: str = Form(""),
    scope_from: str = Form(""),
    scope_to: str = Form(""),
    encounters: str = Form(""),
    document_types: str = Form(""),
    purpose: str = Form(""),
    purpose_text: str = Form(""),
    delivery: str = Form(""),
    received_on: str = Form(""),
    state: str = Form(""),
    summary_page: str = Form(""),
):
    scope = {
        "designated_record_set": bool(designated_record_set),
        "from": scope_from or None,
        "to": scope_to or None,
        "encounters": encounters.replace(",", " ").split(),
        "document_types": document_types.replace(",", " ").split(),
    }
    try:
        with request.app.state.engine.begin() as conn:
            rid = roi.new_request(
                conn,
                _settings(request),
                mrn=mrn,
                requester_type=requester_type,
                requester_name=requester_name,
                requester_organization=requester_organization,
                requester_address=requester_address,
                requester_email=requester_email,
                requester_phone=requester_phone,
                scope=scope,
                purpose=purpose,
                purpose_text=purpose_text,
                delivery=delivery,
                received_on=received_on,
                state=state,
                summary_page=bool(summary_page),
                user=user.name,
                now=_now(request),
            )
            _audit(conn, request, "roi_new", roi.get(conn, rid)["mrn"], rid)
    except RoiError as exc:
        raise _refused(exc) from None
    return RedirectResponse(f"/roi/{rid}?done=roi_new", status_code=303)


@router.get("/roi/packets/{packet_id}")
@html_errors
def packet_download(
    request: Request, packet_id: Annotated[int, FPath(ge=1, le=auth.MAX_ID)], user: User = Depends(RELEASE)
):
    try:
        with request.app.state.engine.begin() as conn:
            found, data = roi_release.packet_pdf(conn, packet_id, _store(request))
            mrn = roi.get(conn, found["request_id"])["mrn"]
            _audit(conn, request, "roi_packet_download", mrn, found["request_id"], {"packet": packet_id})
    except RoiError as exc:
        raise _refused(exc) from None
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="roi-packet-{packet_id}.pdf"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/roi/disclosures", response_class=HTMLResponse)
@html_errors
def disclosures_page(request: Request, user: User = Depends(RELEASE), mrn: str | None = None):
    mrn = _clean(mrn, 128)
    rows, patient = [], None
    with request.app.state.engine.begin() as conn:
        if mrn:
            patient = identity_view.banner(conn, mrn)
            rows = roi.disclosure_log(conn, mrn)
            _audit(conn, request, "roi_disclosures", mrn, detail={"count": len(rows)})
    return _render(
        request,
        "roi_disclosures.html",
        {
            "mrn": mrn or "",
            "patient": patient,
            "rows": rows,
            "accounting": None,
            "today": _now(request).date(),
            **_labels(),
        },
    )


@router.post("/roi/disclosures")
@html_errors
def log_disclosure(
    request: Request,
    user: User = Depends(RELEASE),
    mrn: str = Form(""),
    disclosed_on: str = Form(""),
    recipient_name: str = Form(""),
    recipient_address: str = Form(""),
    recipient_type: str = Form(""),
    purpose: str = Form(""),
    basis: str = Form(""),
    description: str = Form(""),
):
    try:
        with request.app.state.engine.begin() as conn:
            did = roi.log_disclosure(
                conn,
                mrn=mrn,
                disclosed_on=disclosed_on,
                recipient_name=recipient_name,
                recipient_address=recipient_address,
                recipient_type=recipient_type,
                purpose=purpose,
                basis=basis,
                description=description,
                user=user.name,
                now=_now(request),
            )
            _audit(conn, request, "roi_log_disclosure", mrn, detail={"disclosure": did})
    except RoiError as exc:
        raise _refused(exc) from None
    return RedirectResponse(f"/roi/disclosures?mrn={mrn}", status_code=303)


@router.post("/roi/accounting")
@html_errors
def accounting(
    request: Request,
    user: User = Depends(RELEASE),
    mrn: str = Form(""),
    start: str = Form(""),
    end: str = Form(""),
    format: str = Form("html"),
):
    now = _now(request)
    try:
        with request.app.state.engine.begin() as conn:
            result = roi.accounting(
                conn,
                _settings(request),
                mrn,
                start=start or None,
                end=end or None,
                today=now.date(),
                user=user.name,
                now=now,
            )
            detail = {"from": result["from"], "to": result["to"], "format": format}
            _audit(conn, request, "roi_accounting", result["mrn"], detail=detail)
            patient = identity_view.banner(conn, result["mrn"])
            rows = roi.disclosure_log(conn, result["mrn"])
    except RoiError as exc:
        raise _refused(exc) from None
    if format == "pdf":
        return Response(
            roi_release.accounting_pdf(result),
            media_type="application/pdf",
            headers={
                "Content-Disposition": 'attachment; filename="accounting.pdf"',
                "Cache-Control": "no-store",
            },
        )
    return _render(
        request,
        "roi_disclosures.html",
        {
            "mrn": result["mrn"],
            "patient": patient,
            "rows": rows,
            "accounting": result,
            "today": now.date(),
            **_labels(),
        },
    )


@router.get("/roi/{request_id}", response_class=HTMLResponse)
@html_errors
def request_page(
    request: Request, request_id: RequestId, user: User = Depends(INTAKE), done: str | None = None
):
    today = _now(request).date()
    release_role = user.role in auth.ROI_RELEASE or user.role == "admin"
    try:
        with request.app.state.engine.begin() as conn:
            v = roi.view(conn, _settings(request), request_id, today)
            cands = (
                roi_release.candidates(
                    conn, roi.get(conn, request_id), getattr(request.app.state, "sensitivity_rules", None)
                )
                if release_role
                else []
            )
            patient = identity_view.banner(conn, v["mrn"])
            _audit(conn, request, "roi_view", v["mrn"], request_id)
    except RoiError as exc:
        raise _refused(exc) from None
    auth_ = v["authorization"] or {}
    return _render(
        request,
        "roi_request.html",
        {
            "r": v,
            "patient": patient,
            "cands": cands,
            "release_role": release_role,
            "checklist": auth_.get("checklist") or {},
            "moves": [s for s in rules.TRANSITIONS[v["status"]] if s not in ("released", "denied")],
            "done": _clean(done, 40),
            "today": today,
            **_labels(),
        },
    )


@router.post("/roi/{request_id}/verify")
@html_errors
async def verify(request: Request, request_id: RequestId, user: User = Depends(INTAKE)):
    form = await request.form()
    checks = {c: True for c in form.getlist("check") if isinstance(c, str) and c in rules.IDENTITY_CHECKS}
    return _act(
        request,
        request_id,
        "roi_verify",
        lambda conn, u, n: roi.verify_identity(conn, _settings(request), request_id, checks, user=u, now=n),
        lambda m: {"verified": not m},
    )


@router.post("/roi/{request_id}/status")
@html_errors
def set_status(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    status: str = Form(""),
    note: str = Form(""),
):
    return _act(
        request,
        request_id,
        "roi_status",
        lambda conn, u, n: roi.set_status(
            conn, _settings(request), request_id, status, user=u, now=n, note=note
        ),
        {"status": status},
    )


@router.post("/roi/{request_id}/deny")
@html_errors
def deny(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    reason: str = Form(""),
    not_reviewable: str = Form(""),
):
    return _act(
        request,
        request_id,
        "roi_deny",
        lambda conn, u, n: roi.deny(
            conn, request_id, reason, user=u, now=n, reviewable=False if not_reviewable else None
        ),
    )


@router.post("/roi/{request_id}/extend")
@html_errors
def extend(request: Request, request_id: RequestId, user: User = Depends(RELEASE), reason: str = Form("")):
    return _act(
        request,
        request_id,
        "roi_extend",
        lambda conn, u, n: roi.extend(conn, _settings(request), request_id, reason, user=u, now=n),
        lambda d: {"due": d.isoformat()},
    )


@router.post("/roi/{request_id}/authorization")
@html_errors
async def authorize(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    signed_form: UploadFile | None = File(None),
):
    form = await request.form()
    checklist = {k: str(form.get(k) or "") for k in roi.CHECKLIST_TEXT + ("expires_on", "signed_on")}
    checklist.update({k: bool(form.get(k)) for k in roi.CHECKLIST_FLAGS})
    categories = [c for c in form.getlist("category") if isinstance(c, str)]
    categories += str(form.get("categories_text") or "").split()
    data = await signed_form.read(roi.MAX_FORM_BYTES + 1) if signed_form is not None else b""
    name = signed_form.filename if signed_form is not None else None
    return _act(
        request,
        request_id,
        "roi_authorize",
        lambda conn, u, n: roi.authorize(
            conn,
            _settings(request),
            request_id,
            checklist,
            user=u,
            now=n,
            store_=_store(request),
            categories=categories,
            form=data or None,
            form_name=name,
        ),
        lambda a: {"authorization": a["id"], "complete": not a["problems"]},
    )


@router.post("/roi/{request_id}/revoke")
@html_errors
def revoke(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    revoked_on: str = Form(""),
    reason: str = Form(""),
):
    return _act(
        request,
        request_id,
        "roi_revoke",
        lambda conn, u, n: roi.revoke(conn, request_id, revoked_on or n.date(), reason, user=u, now=n),
    )


def _page_exclusions(text: str) -> dict[str, list[tuple[int, str]]]:
    """``DOC PAGE reason`` per line (``DOC-1002 3 third party's information``)."""
    out: dict[str, list[tuple[int, str]]] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 2)
        if not parts:
            continue
        if len(parts) < 3 or not parts[1].isdigit():
            raise RoiError(
                f"page exclusion {line.strip()!r}: write the document, the page number and the reason"
            )
        out.setdefault(parts[0], []).append((int(parts[1]), parts[2]))
    return out


@router.post("/roi/{request_id}/release")
@html_errors
async def release(request: Request, request_id: RequestId, user: User = Depends(RELEASE)):
    form = await request.form()
    selected = [d for d in form.getlist("document") if isinstance(d, str)]
    try:
        pages = _page_exclusions(str(form.get("exclude_pages") or ""))
    except RoiError as exc:
        raise _refused(exc) from None
    return _act(
        request,
        request_id,
        "roi_release",
        lambda conn, u, n: roi_release.release(
            conn,
            _settings(request),
            request_id,
            user=u,
            now=n,
            store_=_store(request),
            selected=selected,
            page_exclusions=pages,
            sensitivity_rules=getattr(request.app.state, "sensitivity_rules", None),
        ),
        lambda r: {"packet": r["packet_id"], "sha256": r["sha256"]},
    )
