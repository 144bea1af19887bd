"""Console pages of the release-of-information desk (:mod:`interface.desk.roi`,
docs/release-of-information.md):

============================  ===============================================================
``/roi``                      the ROI queue: open requests soonest due, age, overdue marked
``/roi/new``                  log a request (find the patient by MRN or name and birth date)
``/roi/{id}``                 one request: banner, due date and fee, the identity checklist,
                              status moves, denial, extension, the authorization checklist and
                              signed form, what a release sends and what it leaves out (and
                              why), page exclusions, release, its packets and disclosures
``/roi/{id}/preview.pdf``     the packet a release would build now, every page marked "PREVIEW
                              — not released" (GET: the default documents; POST: the release
                              form's Preview button), kept nowhere
``/roi/packets/{id}``         a released packet (the PDF, as released)
``/roi/disclosures?mrn=``     the disclosure log of a patient, a disclosure entered by hand, the
                              accounting of disclosures (shown, or the PDF letter)
============================  ===============================================================

Intake (log, verify, view) is ``auth.ROI_INTAKE`` (clerk, release); the rest ``auth.ROI_RELEASE``.
Every view and change is audited with the patient's MRN; forms carry the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as FPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from interface.desk import roi, roi_delivery
from interface.desk.roi import RoiError
from interface.desk.users import User
from interface.rules import roi as rules
from interface.store.chart_read import search_patients
from interface.web import auth, identity_view
from interface.web.api import roi as api
from interface.web.pages import _clean, _now, _render, error_page, html_errors


def _release():
    """``desk.roi_release``, imported at the first packet, letter or candidate list: it brings the
    PDF libraries (pypdf, fpdf with fontTools, Pillow; pypdf imports cryptography), which a console
    that never releases does not need."""
    from interface.desk import roi_release

    return roi_release


router = APIRouter(include_in_schema=False)
INTAKE = auth.require(*auth.ROI_INTAKE)
RELEASE = auth.require(*auth.ROI_RELEASE)
RequestId = Annotated[int, FPath(ge=1, le=auth.MAX_ID)]
_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}
# a refused form is shown again with what was entered: 400 invalid, 409 not now, 422 unknown value
FORM_STATUS = {"invalid": 400, "conflict": 409, "not_found": 422}
_settings = api.settings
_store = api.content_store


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


def _act(request: Request, request_id: RequestId, action: str, fn, detail=None, *, form: str, entered: dict):
    """Do ``fn(conn, user, now)`` on a request with its audit row (:func:`web.api.roi.on_request`),
    then back to its page; refused, the page again with the form as entered and the reason beside it."""
    try:
        api.on_request(request, request_id, action, fn, detail)
    except RoiError as exc:
        return refused_form(request, request_id, exc, form, entered)
    return RedirectResponse(f"/roi/{request_id}?done={action}", status_code=303)


def refused_form(request: Request, request_id: int, exc: RoiError, form: str, entered: dict):
    """The request's page with ``form`` as it was filled in and why it was refused (4xx); an
    unknown request: the error page."""
    try:
        return request_view(
            request,
            request_id,
            refusal={"form": form, "message": str(exc)},
            entered=entered,
            status_code=FORM_STATUS.get(exc.kind, 400),
        )
    except RoiError:
        return error_page(request, _STATUS.get(exc.kind, 400), str(exc))


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


def _new_view(
    request: Request,
    *,
    mrn: str | None = None,
    search: dict | None = None,
    entered: dict | None = None,
    refusal: dict | None = None,
    status_code: int = 200,
):
    found, patient = [], None
    search = search or {}
    with request.app.state.engine.begin() as conn:
        if any(_clean(search.get(k)) for k in ("family", "given", "birth_date")):
            found = search_patients(
                conn,
                _clean(search.get("family")),
                _clean(search.get("given")),
                _clean(search.get("birth_date"), 10),
                limit=20,
            )
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
            "search": {k: search.get(k) or "" for k in ("family", "given", "birth_date")},
            "today": _now(request).date().isoformat(),
            "v": entered or {},
            "refusal": refusal,
            **_labels(),
        },
        status_code=status_code,
    )


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
    return _new_view(request, mrn=mrn, search={"family": family, "given": given, "birth_date": birth_date})


NEW_FIELDS = (
    "mrn",
    "requester_type",
    "requester_name",
    "requester_organization",
    "requester_address",
    "requester_email",
    "requester_phone",
    "designated_record_set",
    "scope_from",
    "scope_to",
    "encounters",
    "document_types",
    "purpose",
    "purpose_text",
    "delivery",
    "received_on",
    "state",
    "summary_page",
)


@router.post("/roi/new")
@html_errors
async def create(request: Request, user: User = Depends(INTAKE)):
    form = await request.form()
    f = {k: str(form.get(k) or "") for k in NEW_FIELDS}
    scope = {
        "designated_record_set": bool(f["designated_record_set"]),
        "from": f["scope_from"] or None,
        "to": f["scope_to"] or None,
        "encounters": f["encounters"].replace(",", " ").split(),
        "document_types": f["document_types"].replace(",", " ").split(),
    }
    try:
        with request.app.state.engine.begin() as conn:
            rid = roi.new_request(
                conn,
                _settings(request),
                mrn=f["mrn"],
                requester_type=f["requester_type"],
                requester_name=f["requester_name"],
                requester_organization=f["requester_organization"],
                requester_address=f["requester_address"],
                requester_email=f["requester_email"],
                requester_phone=f["requester_phone"],
                scope=scope,
                purpose=f["purpose"],
                purpose_text=f["purpose_text"],
                delivery=f["delivery"],
                received_on=f["received_on"],
                state=f["state"],
                summary_page=bool(f["summary_page"]),
                user=user.name,
                now=_now(request),
            )
            _audit(conn, request, "roi_new", roi.get(conn, rid)["mrn"], rid)
    except RoiError as exc:
        return _new_view(
            request,
            mrn=f["mrn"],
            entered=f,
            refusal={"form": "new", "message": str(exc)},
            status_code=FORM_STATUS.get(exc.kind, 400),
        )
    return RedirectResponse(f"/roi/{rid}?done=roi_new", status_code=303)


@router.get("/roi/packets/{packet_id}")
@html_errors
def packet_download(
    request: Request, packet_id: Annotated[int, FPath(ge=1, le=auth.MAX_ID)], user: User = Depends(RELEASE)
):
    try:
        return api.packet_response(request, packet_id)
    except RoiError as exc:
        raise _refused(exc) from None


def _disclosures_view(
    request: Request,
    mrn: str | None,
    *,
    accounting: dict | None = None,
    entered: dict | None = None,
    refusal: dict | None = None,
    status_code: int = 200,
):
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
            "accounting": accounting,
            "today": _now(request).date(),
            "v": entered or {},
            "refusal": refusal,
            **_labels(),
        },
        status_code=status_code,
    )


@router.get("/roi/disclosures", response_class=HTMLResponse)
@html_errors
def disclosures_page(request: Request, user: User = Depends(RELEASE), mrn: str | None = None):
    return _disclosures_view(request, mrn)


DISCLOSURE_FIELDS = (
    "mrn",
    "disclosed_on",
    "recipient_name",
    "recipient_address",
    "recipient_type",
    "purpose",
    "basis",
    "description",
)


@router.post("/roi/disclosures")
@html_errors
async def log_disclosure(request: Request, user: User = Depends(RELEASE)):
    form = await request.form()
    f = {k: str(form.get(k) or "") for k in DISCLOSURE_FIELDS}
    try:
        with request.app.state.engine.begin() as conn:
            did = roi.log_disclosure(conn, **f, user=user.name, now=_now(request))
            _audit(conn, request, "roi_log_disclosure", f["mrn"], detail={"disclosure": did})
    except RoiError as exc:
        return _disclosures_view(
            request,
            f["mrn"],
            entered=f,
            refusal={"form": "log-disclosure", "message": str(exc)},
            status_code=FORM_STATUS.get(exc.kind, 400),
        )
    return RedirectResponse(f"/roi/disclosures?mrn={quote(f['mrn'])}", status_code=303)


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
    except RoiError as exc:
        return _disclosures_view(
            request,
            mrn if exc.kind != "not_found" else None,
            entered={"start": start, "end": end},
            refusal={"form": "accounting", "message": str(exc)},
            status_code=FORM_STATUS.get(exc.kind, 400),
        )
    if format == "pdf":
        return Response(
            _release().accounting_pdf(result),
            media_type="application/pdf",
            headers={
                "Content-Disposition": 'attachment; filename="accounting.pdf"',
                "Cache-Control": "no-store",
            },
        )
    return _disclosures_view(request, result["mrn"], accounting=result)


def request_view(
    request: Request,
    request_id: int,
    *,
    done: str | None = None,
    refusal: dict | None = None,
    entered: dict | None = None,
    new_link: dict | None = None,
    status_code: int = 200,
):
    """One request's page (RoiError not_found when there is none): ``refusal`` {form, message}
    and ``entered`` (the refused form's values) show a refused form again as it was filled in;
    ``new_link`` a download link made just now (its address shown this once)."""
    user = request.state.user
    now = _now(request)
    today = now.date()
    release_role = user.role in auth.ROI_RELEASE or user.role == "admin"
    with request.app.state.engine.begin() as conn:
        v = roi.view(conn, _settings(request), request_id, today)
        cands = (
            _release().candidates(
                conn, roi.get(conn, request_id), getattr(request.app.state, "sensitivity_rules", None)
            )
            if release_role
            else []
        )
        link_rows = roi_delivery.links_view(conn, request_id, now) if release_role else []
        emails = roi_delivery.emails_view(conn, request_id) if release_role else []
        patient = identity_view.banner(conn, v["mrn"])
        _audit(conn, request, "roi_view", v["mrn"], request_id)
    auth_ = v["authorization"] or {}
    entered = entered or {}
    form = (refusal or {}).get("form")
    return _render(
        request,
        "roi_request.html",
        {
            "r": v,
            "patient": patient,
            "cands": cands,
            "links": link_rows,
            "emails": emails,
            "new_link": new_link,
            "release_role": release_role,
            "checklist": entered if form == "authorization" else auth_.get("checklist") or {},
            "moves": [s for s in rules.TRANSITIONS[v["status"]] if s not in ("released", "denied")],
            "done": _clean(done, 40),
            "refusal": refusal,
            "form": form,
            "v": entered,
            "today": today,
            "link_days": _settings(request).delivery.link_days,
            **_labels(),
        },
        status_code=status_code,
    )


@router.get("/roi/{request_id}", response_class=HTMLResponse)
@html_errors
def request_page(
    request: Request, request_id: RequestId, user: User = Depends(INTAKE), done: str | None = None
):
    try:
        return request_view(request, request_id, done=done)
    except RoiError as exc:
        raise _refused(exc) from None


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
        form="verify",
        entered={"checks": list(checks)},
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
        form="withdraw" if status == "withdrawn" else "status",
        entered={"status": status, "note": note},
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
        form="deny",
        entered={"reason": reason, "not_reviewable": bool(not_reviewable)},
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
        form="extend",
        entered={"reason": reason},
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
        form="authorization",
        entered={**checklist, "categories_text": "\n".join(categories)},
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
        form="revoke",
        entered={"revoked_on": revoked_on, "reason": reason},
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


@router.get("/roi/{request_id}/preview.pdf")
@html_errors
def preview(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    document: Annotated[list[str] | None, Query()] = None,
    exclude_pages: str = "",
):
    """The packet the release would build now (the documents allowed by default), marked as a
    preview on every page and kept nowhere."""
    try:
        kw = {"selected": document, "page_exclusions": _page_exclusions(exclude_pages)}
        return api.preview_response(request, request_id, kw)
    except RoiError as exc:
        raise _refused(exc) from None


@router.post("/roi/{request_id}/preview.pdf")
@html_errors
async def preview_form(request: Request, request_id: RequestId, user: User = Depends(RELEASE)):
    """The release form's Preview button: the packet of the documents checked and the pages left
    out, as a preview; refused, the request's page with the form as filled in and the reason."""
    form = await request.form()
    selected = [d for d in form.getlist("document") if isinstance(d, str)]
    text = str(form.get("exclude_pages") or "")
    try:
        kw = {"selected": selected, "page_exclusions": _page_exclusions(text)}
        return api.preview_response(request, request_id, kw)
    except RoiError as exc:
        return refused_form(
            request, request_id, exc, "release", {"documents": selected, "exclude_pages": text}
        )


@router.post("/roi/{request_id}/release", response_class=HTMLResponse)
@html_errors
async def release(request: Request, request_id: RequestId, user: User = Depends(RELEASE)):
    """Released for secure download, the answer is the request's page with the new link shown
    this once (no redirect: the link must not land in a URL or the history)."""
    form = await request.form()
    selected = [d for d in form.getlist("document") if isinstance(d, str)]
    text = str(form.get("exclude_pages") or "")
    entered = {"documents": selected, "exclude_pages": text}
    try:
        done = api.release_request(
            request,
            request_id,
            {"selected": selected, "page_exclusions": _page_exclusions(text)},
        )
    except RoiError as exc:
        return refused_form(request, request_id, exc, "release", entered)
    if done.get("token"):
        link = {"id": done["link_id"], "url": done["download_url"], "expires_at": done["expires_at"]}
        return request_view(request, request_id, done="roi_release", new_link=link)
    return RedirectResponse(f"/roi/{request_id}?done=roi_release", status_code=303)
