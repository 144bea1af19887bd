"""REST API of the release-of-information desk (:mod:`interface.desk.roi`, docs/release-of-information.md).

Intake (clerk, release, admin): ``GET/POST /api/roi/requests`` (the queue, soonest due first;
log a request), ``GET /api/roi/requests/{id}``, ``POST /api/roi/requests/{id}/verify`` (the
identity checklist).

Release work (release, admin): ``POST .../status``, ``.../deny``, ``.../extend``,
``.../authorization`` (the 164.508(c) checklist, the signed form as base64),
``.../authorization/revoke``, ``GET .../authorization/form``, ``GET .../documents`` (what would be
released and what is excluded, and why), ``GET/POST .../preview`` (the packet a release would
build, marked as a preview on every page, kept nowhere), ``POST .../release`` (the packet built,
stored, logged),
``GET /api/roi/packets/{id}`` (the PDF again, byte for byte), ``GET/POST /api/roi/disclosures``
(the log of a patient; a disclosure made outside the engine), ``POST /api/roi/accounting`` (the
accounting of disclosures as JSON or the PDF letter; itself logged).

Every answer and change is audited with the request's patient (``patient=MRN``); a refusal of the
desk is 404 (unknown), 409 (not now: the status, what blocks a release) or 400 (invalid).
Authentication: each route names its roles (``auth.ROI_INTAKE``, ``auth.ROI_RELEASE``).
"""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as FPath
from fastapi.responses import Response
from pydantic import BaseModel, Field

from interface.desk import roi, roi_delivery
from interface.desk.roi import RoiError
from interface.desk.users import User
from interface.rules.roi import RoiSettings, settings_or_default
from interface.store.content import ContentStore
from interface.web import auth


def _release():
    """``desk.roi_release``, imported at the first packet, letter or candidate list: it brings the
    PDF libraries (pypdf, fpdf with fontTools, Pillow; pypdf imports cryptography), which a console
    that never releases does not need."""
    from interface.desk import roi_release

    return roi_release


router = APIRouter(prefix="/api/roi", tags=["release of information"], responses=auth.ERROR_RESPONSES)
INTAKE = auth.require(*auth.ROI_INTAKE)
RELEASE = auth.require(*auth.ROI_RELEASE)
_PDF = {
    200: {
        "description": "a PDF",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    }
}
RequestId = Annotated[int, FPath(ge=1, le=auth.MAX_ID, description="the request's number")]
PacketId = Annotated[int, FPath(ge=1, le=auth.MAX_ID, description="the packet's number")]
_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}


def settings(request: Request) -> RoiSettings:
    found = getattr(request.app.state, "roi_settings", None)
    if found is None:
        found = request.app.state.roi_settings = settings_or_default()
    return found


def content_store(request: Request) -> ContentStore:
    ds = getattr(request.app.state, "document_settings", None)
    return ds.store() if ds is not None else ContentStore(None)


def refused(exc: RoiError) -> HTTPException:
    return HTTPException(status_code=_STATUS.get(exc.kind, 400), detail=str(exc))


# -- models -----------------------------------------------------------------------------------


class Scope(BaseModel):
    designated_record_set: bool = False
    from_: date | None = Field(None, alias="from")
    to: date | None = None
    encounters: list[str] = Field(default_factory=list)
    document_types: list[str] = Field(default_factory=list)

    model_config = {"populate_by_name": True}


class NewRequest(BaseModel):
    mrn: str = Field(max_length=128)
    requester_type: str
    requester_name: str = Field(max_length=250)
    requester_organization: str | None = Field(None, max_length=250)
    requester_address: str | None = Field(None, max_length=1000)
    requester_email: str | None = Field(None, max_length=250)
    requester_phone: str | None = Field(None, max_length=64)
    scope: Scope
    purpose: str
    purpose_text: str | None = Field(None, max_length=2000)
    delivery: str
    received_on: date
    state: str | None = Field(None, max_length=8)
    summary_page: bool = False


class Fee(BaseModel):
    cents: int
    currency: str
    lines: list[str]
    free: bool


class RequestSummary(BaseModel):
    id: int
    mrn: str
    status: str
    status_label: str
    requester_type: str
    requester_type_label: str
    requester_name: str
    requester_organization: str | None
    purpose: str
    purpose_label: str
    delivery: str
    delivery_label: str
    scope: dict[str, Any]
    scope_text: str
    received_on: date
    due_on: date
    extensions: int
    extension_reason: str | None
    basis: str
    basis_label: str
    age_days: int
    days_left: int | None
    overdue: bool
    fee_estimate: Fee


class Queue(BaseModel):
    requests: list[RequestSummary]


class Problem(BaseModel):
    element: str
    text: str


class Event(BaseModel):
    at: datetime
    user: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None


class Authorization(BaseModel):
    id: int
    checklist: dict[str, Any]
    categories: list[str]
    expires_on: date | None
    form_sha256: str | None
    form_media_type: str | None
    form_name: str | None
    revoked_on: date | None
    revoked_reason: str | None
    recorded_by: str
    recorded_at: datetime
    problems: list[Problem]


class PacketInfo(BaseModel):
    id: int
    sha256: str
    size: int
    page_count: int
    manifest: dict[str, Any]
    fee_cents: int
    built_by: str
    built_at: datetime


class Disclosure(BaseModel):
    id: int
    mrn: str
    request_id: int | None
    packet_id: int | None
    disclosed_on: date
    recipient_name: str
    recipient_address: str | None
    recipient_type: str
    recipient_type_label: str
    purpose: str
    basis: str
    basis_label: str
    authorization_id: int | None
    description: str
    manifest: dict[str, Any] | None
    packet_sha256: str | None
    source: str
    recorded_by: str
    recorded_at: datetime


class RequestDetail(RequestSummary):
    requester_address: str | None
    requester_email: str | None
    requester_phone: str | None
    purpose_text: str | None
    state: str | None
    identity_checks: dict[str, bool]
    identity_required: list[str]
    identity_missing: list[str]
    identity_verified_by: str | None
    identity_verified_at: datetime | None
    denial_reason: str | None
    review_right: str | None
    summary_page: bool
    authorization: Authorization | None
    release_problems: list[Problem]
    events: list[Event]
    packets: list[PacketInfo]
    disclosures: list[Disclosure]


class Created(BaseModel):
    id: int
    due_on: date


class Checks(BaseModel):
    checks: dict[str, bool]


class Missing(BaseModel):
    verified: bool
    missing: list[str]


class StatusChange(BaseModel):
    status: Literal["received", "verifying", "in_progress", "ready", "withdrawn"]
    note: str | None = Field(None, max_length=2000)


class Denial(BaseModel):
    reason: str = Field(max_length=2000)
    reviewable: bool | None = None


class Extension(BaseModel):
    reason: str = Field(max_length=2000)


class Extended(BaseModel):
    due_on: date


class AuthorizationIn(BaseModel):
    checklist: dict[str, Any]
    categories: list[str] = Field(default_factory=list)
    form_base64: str | None = Field(None, description="the signed form (PDF or image), base64")
    form_name: str | None = Field(None, max_length=250)


class Revocation(BaseModel):
    revoked_on: date
    reason: str = Field(max_length=2000)


class Candidate(BaseModel):
    document_number: str
    namespace: str | None
    key: str
    type: str | None
    date: str | None
    visit_number: str | None
    version: int
    content_type: str | None
    confidentiality: str | None
    categories: list[str]
    sensitive: bool
    excluded: list[str]
    selected: bool


class Candidates(BaseModel):
    documents: list[Candidate]
    release_problems: list[Problem]


class PageExclusion(BaseModel):
    page: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=500)


class ReleaseIn(BaseModel):
    documents: list[str] | None = Field(None, description="document keys to release (default: those allowed)")
    exclude_pages: dict[str, list[PageExclusion]] = Field(default_factory=dict)


class Released(BaseModel):
    packet_id: int
    disclosure_id: int
    sha256: str
    page_count: int
    fee: Fee
    link_id: int | None = Field(None, description="the download link (secure download, e-mail)")
    expires_at: datetime | None = Field(None, description="when the download link stops working")
    download_url: str | None = Field(None, description="secure download: the link, given this once")
    email_id: int | None = Field(None, description="e-mail: the outbox entry carrying the link")
    email_status: str | None = Field(None, description="e-mail: sent, or failed (tried again)")


class DisclosureIn(BaseModel):
    mrn: str = Field(max_length=128)
    disclosed_on: date
    recipient_name: str = Field(max_length=250)
    recipient_address: str | None = Field(None, max_length=1000)
    recipient_type: str
    purpose: str = Field(max_length=2000)
    basis: str
    description: str = Field(max_length=4000)


class DisclosureLog(BaseModel):
    mrn: str
    disclosures: list[Disclosure]


class AccountingIn(BaseModel):
    mrn: str = Field(max_length=128)
    from_: date | None = Field(None, alias="from")
    to: date | None = None
    format: Literal["json", "pdf"] = "json"

    model_config = {"populate_by_name": True}


class Accounting(BaseModel):
    mrn: str
    from_: str = Field(alias="from")
    to: str
    generated_at: str
    disclosures: list[Disclosure]
    excluded: int = Field(description="disclosures in the period the rules leave out")
    excluded_bases: list[str]
    record_id: int | None = None

    model_config = {"populate_by_name": True}


# -- helpers ----------------------------------------------------------------------------------


def _audit(conn, request: Request, action: str, mrn: str | None, target_id=None, detail=None) -> None:
    auth.record_audit(
        conn,
        user=request.state.user,
        action=action,
        target_type="roi_request",
        target_id=target_id,
        detail=detail,
        now=auth.clock(request),
        patient=mrn,
    )


def _today(request: Request) -> date:
    return auth.clock(request).date()


def on_request(request: Request, request_id: int, action: str, fn, detail=None, extra: dict | None = None):
    """Run ``fn(conn, user, now)`` on a request in one transaction with its audit row (against the
    request's patient; ``detail`` a dict or a function of the result); a refusal of the desk
    (:class:`RoiError`) is raised as it is. The API and the console pages both act through this."""
    now = auth.clock(request)
    with request.app.state.engine.begin() as conn:
        mrn = roi.get(conn, request_id)["mrn"]
        result = fn(conn, request.state.user.name, now)
        found = detail(result) if callable(detail) else detail
        _audit(conn, request, action, mrn, request_id, {**(extra or {}), **(found or {})} or None)
    return result


def _act(request: Request, request_id: RequestId, action: str, fn, detail=None):
    try:
        return on_request(request, request_id, action, fn, detail)
    except RoiError as exc:
        raise refused(exc) from None


def mail_settings(request: Request):
    """``mail.yaml`` as the app was started with it (None: no outgoing mail)."""
    return getattr(request.app.state, "mail", None)


def release_request(request: Request, request_id: int, fn_kw: dict, extra: dict | None = None) -> dict:
    """Release a request with its delivery (:func:`interface.desk.roi_delivery.release`), audited;
    then, after the commit, try its e-mail once (a failure stays in the outbox, visible and retried)."""
    done = on_request(
        request,
        request_id,
        "roi_release",
        lambda conn, u, n: roi_delivery.release(
            conn,
            settings(request),
            request_id,
            user=u,
            now=n,
            store_=content_store(request),
            sensitivity_rules=getattr(request.app.state, "sensitivity_rules", None),
            **fn_kw,
        ),
        lambda r: {"packet": r["packet_id"], "sha256": r["sha256"], "pages": r["page_count"]},
        extra,
    )
    if done.get("email_id"):
        sent = roi_delivery.send_email(
            request.app.state.engine,
            mail_settings(request),
            done["email_id"],
            now=auth.clock(request),
            user=request.state.user.name,
            only_due=True,  # the outbox's retry may have taken it already
        )
        done["email_status"] = sent.get("status")
    if done.get("token"):
        done["download_url"] = roi_delivery.download_url(public_base(request), done["token"])
    return done


def public_base(request: Request) -> str:
    """Where recipients reach download links: ``public_url`` of mail.yaml, else this server."""
    mail = mail_settings(request)
    return mail.public_url if mail is not None else str(request.base_url).rstrip("/")


def packet_response(request: Request, packet_id: int, extra: dict | None = None) -> Response:
    """A released packet as a download, audited against the patient (one function for the API
    and the console: :func:`interface.desk.roi_release.download_packet`)."""
    with request.app.state.engine.begin() as conn:
        found, data = _release().download_packet(
            conn,
            packet_id,
            content_store(request),
            user=request.state.user.name,
            now=auth.clock(request),
            detail=extra,
        )
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{_release().packet_filename(packet_id)}"',
            "Cache-Control": "no-store",
            "X-Content-SHA256": found["sha256"],
        },
    )


def preview_response(request: Request, request_id: int, fn_kw: dict, extra: dict | None = None) -> Response:
    """The packet a release would build now, marked as a preview on every page and kept nowhere
    (:func:`interface.desk.roi_release.preview`), audited ``roi_preview`` against the patient; a
    request that cannot be released yet is refused as its release would be (409)."""
    packet = on_request(
        request,
        request_id,
        "roi_preview",
        lambda conn, u, n: _release().preview(
            conn,
            settings(request),
            request_id,
            user=u,
            now=n,
            store_=content_store(request),
            sensitivity_rules=getattr(request.app.state, "sensitivity_rules", None),
            **fn_kw,
        ),
        lambda pk: {"pages": pk.page_count, "documents": len(pk.manifest)},
        extra,
    )
    name = _release().preview_filename(request_id)
    return Response(
        packet.pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"},
    )


# -- intake -----------------------------------------------------------------------------------


@router.get("/requests", response_model=Queue)
def list_requests(
    request: Request,
    user: User = Depends(INTAKE),
    status: str | None = Query(None, max_length=200, description="comma-separated (default: the open ones)"),
    mrn: str | None = Query(None, max_length=128),
):
    """The ROI queue: requests soonest due first, with their age and whether they are overdue."""
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    with request.app.state.engine.begin() as conn:
        rows = roi.queue(conn, settings(request), _today(request), statuses=statuses, mrn=mrn)
        _audit(conn, request, "roi_list", mrn, detail={"count": len(rows)})
    return {"requests": rows}


@router.post("/requests", response_model=Created, status_code=201)
def create_request(request: Request, body: NewRequest, user: User = Depends(INTAKE)):
    """Log a request (status received); its due date, fee and legal basis come from the rules."""
    now = auth.clock(request)
    values = body.model_dump(by_alias=True)
    values["scope"] = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values["scope"].items()}
    try:
        with request.app.state.engine.begin() as conn:
            rid = roi.new_request(conn, settings(request), **values, user=user.name, now=now)
            req = roi.get(conn, rid)
            _audit(conn, request, "roi_new", req["mrn"], rid)
    except RoiError as exc:
        raise refused(exc) from None
    return {"id": rid, "due_on": req["due_on"]}


@router.get("/requests/{request_id}", response_model=RequestDetail)
def get_request(request: Request, request_id: RequestId, user: User = Depends(INTAKE)):
    """One request: its checklist, authorization, what blocks its release, events, packets, disclosures."""
    return _act(
        request,
        request_id,
        "roi_view",
        lambda conn, _u, _n: roi.view(conn, settings(request), request_id, _today(request)),
    )


@router.post("/requests/{request_id}/verify", response_model=Missing)
def verify(request: Request, request_id: RequestId, body: Checks, user: User = Depends(INTAKE)):
    """Record the identity checklist; answers what the requester type still needs."""
    missing = _act(
        request,
        request_id,
        "roi_verify",
        lambda conn, u, n: roi.verify_identity(
            conn, settings(request), request_id, body.checks, user=u, now=n
        ),
        lambda m: {"verified": not m},
    )
    return {"verified": not missing, "missing": missing}


# -- release work -----------------------------------------------------------------------------


@router.post("/requests/{request_id}/status", response_model=RequestSummary)
def set_status(request: Request, request_id: RequestId, body: StatusChange, user: User = Depends(RELEASE)):
    """Move a request along (verifying, in progress, ready), back a step, or withdraw it."""

    def fn(conn, u, n):
        roi.set_status(conn, settings(request), request_id, body.status, user=u, now=n, note=body.note)
        return roi.queue(conn, settings(request), n.date(), statuses=[body.status], mrn=None, limit=1000)

    rows = _act(request, request_id, "roi_status", fn, {"status": body.status})
    return next(r for r in rows if r["id"] == request_id)


@router.post("/requests/{request_id}/deny", response_model=RequestDetail)
def deny(request: Request, request_id: RequestId, body: Denial, user: User = Depends(RELEASE)):
    """Deny a request with its reason (and, for an individual's own access, the right to review)."""

    def fn(conn, u, n):
        roi.deny(conn, request_id, body.reason, user=u, now=n, reviewable=body.reviewable)
        return roi.view(conn, settings(request), request_id, n.date())

    return _act(request, request_id, "roi_deny", fn)


@router.post("/requests/{request_id}/extend", response_model=Extended)
def extend(request: Request, request_id: RequestId, body: Extension, user: User = Depends(RELEASE)):
    """Extend the due date once (30 days by default), with the reason."""
    due = _act(
        request,
        request_id,
        "roi_extend",
        lambda conn, u, n: roi.extend(conn, settings(request), request_id, body.reason, user=u, now=n),
        lambda d: {"due": d.isoformat()},
    )
    return {"due_on": due}


@router.post("/requests/{request_id}/authorization", response_model=Authorization)
def authorize(request: Request, request_id: RequestId, body: AuthorizationIn, user: User = Depends(RELEASE)):
    """Record the authorization's 164.508(c) checklist and the signed form; answers what it lacks."""
    form = None
    if body.form_base64:
        try:
            form = base64.b64decode(body.form_base64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(status_code=400, detail="form_base64 is not base64") from None
    return _act(
        request,
        request_id,
        "roi_authorize",
        lambda conn, u, n: roi.authorize(
            conn,
            settings(request),
            request_id,
            body.checklist,
            user=u,
            now=n,
            store_=content_store(request),
            categories=body.categories,
            form=form,
            form_name=body.form_name,
        ),
        lambda a: {"authorization": a["id"], "complete": not a["problems"]},
    )


@router.post("/requests/{request_id}/authorization/revoke", response_model=RequestDetail)
def revoke(request: Request, request_id: RequestId, body: Revocation, user: User = Depends(RELEASE)):
    """The patient revoked the authorization in writing: it no longer allows a release."""

    def fn(conn, u, n):
        roi.revoke(conn, request_id, body.revoked_on, body.reason, user=u, now=n)
        return roi.view(conn, settings(request), request_id, n.date())

    return _act(request, request_id, "roi_revoke", fn)


@router.get("/requests/{request_id}/authorization/form", responses=_PDF, response_class=Response)
def authorization_form(request: Request, request_id: RequestId, user: User = Depends(RELEASE)):
    """The signed authorization form as it was uploaded."""

    def fn(conn, _u, _n):
        v = roi.view(conn, settings(request), request_id, _today(request))
        a = v["authorization"]
        if not a or not a.get("form_sha256"):
            raise RoiError("no signed form on file", "not_found")
        data = content_store(request).get(conn, a["form_sha256"])
        if data is None:
            raise RoiError("the signed form is missing from the content store", "conflict")
        return a["form_media_type"], data

    media, data = _act(request, request_id, "roi_view_form", fn)
    return Response(data, media_type=media, headers={"Cache-Control": "no-store"})


@router.get("/requests/{request_id}/documents", response_model=Candidates)
def documents(request: Request, request_id: RequestId, user: User = Depends(RELEASE)):
    """What a release would send by default (``selected``) and what is excluded, with the reasons."""

    def fn(conn, _u, _n):
        req = roi.get(conn, request_id)
        return {
            "documents": _release().candidates(
                conn, req, getattr(request.app.state, "sensitivity_rules", None)
            ),
            "release_problems": roi.release_problems(conn, settings(request), req, _today(request)),
        }

    return _act(request, request_id, "roi_documents", fn)


@router.post("/requests/{request_id}/release", response_model=Released)
def release(request: Request, request_id: RequestId, body: ReleaseIn, user: User = Depends(RELEASE)):
    """Build the packet, keep it, log the disclosure and mark the request released. For delivery by
    secure download the answer carries the download link (``download_url``, shown this once);
    for e-mail the link goes to the requester's address (``email_status``: sent, or failed and
    waiting in the outbox)."""
    pages = {doc: [(p.page, p.reason) for p in ex] for doc, ex in body.exclude_pages.items()}
    try:
        return release_request(request, request_id, {"selected": body.documents, "page_exclusions": pages})
    except RoiError as exc:
        raise refused(exc) from None


@router.get("/requests/{request_id}/preview", responses=_PDF, response_class=Response)
def preview(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    document: list[str] | None = Query(None, description="document keys (default: those allowed)"),
):
    """The packet a release would build now, every page marked "PREVIEW — not released": nothing
    is kept or logged as a disclosure. Refused (409) while the request cannot be released."""
    try:
        return preview_response(request, request_id, {"selected": document})
    except RoiError as exc:
        raise refused(exc) from None


@router.post("/requests/{request_id}/preview", responses=_PDF, response_class=Response)
def preview_of(request: Request, request_id: RequestId, body: ReleaseIn, user: User = Depends(RELEASE)):
    """The preview of exactly what ``POST .../release`` with this body would release (the
    documents, the pages left out), marked "PREVIEW — not released" on every page; nothing kept."""
    pages = {doc: [(p.page, p.reason) for p in ex] for doc, ex in body.exclude_pages.items()}
    try:
        return preview_response(request, request_id, {"selected": body.documents, "page_exclusions": pages})
    except RoiError as exc:
        raise refused(exc) from None


@router.get("/packets/{packet_id}", responses=_PDF, response_class=Response)
def packet(request: Request, packet_id: PacketId, user: User = Depends(RELEASE)):
    """A released packet, byte for byte as it was released."""
    try:
        return packet_response(request, packet_id)
    except RoiError as exc:
        raise refused(exc) from None


@router.get("/disclosures", response_model=DisclosureLog)
def disclosures(request: Request, mrn: str = Query(max_length=128), user: User = Depends(RELEASE)):
    """The disclosure log of a patient (and of MRNs merged into theirs), oldest first."""
    with request.app.state.engine.begin() as conn:
        rows = roi.disclosure_log(conn, mrn)
        _audit(conn, request, "roi_disclosures", mrn, detail={"count": len(rows)})
    return {"mrn": mrn, "disclosures": rows}


@router.post("/disclosures", response_model=Disclosure, status_code=201)
def log_disclosure(request: Request, body: DisclosureIn, user: User = Depends(RELEASE)):
    """Enter a disclosure made outside the engine."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            did = roi.log_disclosure(conn, **body.model_dump(), user=user.name, now=now)
            row = next(d for d in roi.disclosure_log(conn, body.mrn) if d["id"] == did)
            _audit(conn, request, "roi_log_disclosure", row["mrn"], detail={"disclosure": did})
    except RoiError as exc:
        raise refused(exc) from None
    return row


@router.post("/accounting", response_model=Accounting, responses=_PDF, response_model_by_alias=True)
def accounting(request: Request, body: AccountingIn, user: User = Depends(RELEASE)):
    """The accounting of disclosures (45 CFR 164.528) for up to six years, as JSON or a PDF
    letter (``format``); the accounting itself is logged."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            result = roi.accounting(
                conn,
                settings(request),
                body.mrn,
                start=body.from_,
                end=body.to,
                today=now.date(),
                user=user.name,
                now=now,
            )
            _audit(
                conn,
                request,
                "roi_accounting",
                result["mrn"],
                detail={"from": result["from"], "to": result["to"], "format": body.format},
            )
            pdf = _release().accounting_pdf(result) if body.format == "pdf" else None
    except RoiError as exc:
        raise refused(exc) from None
    if pdf is not None:
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": 'attachment; filename="accounting.pdf"',
                "Cache-Control": "no-store",
            },
        )
    return result
