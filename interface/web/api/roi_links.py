"""REST API of release-of-information delivery (:mod:`interface.desk.roi_delivery`): download
links to released packets and the e-mail outbox. Release work (``auth.ROI_RELEASE``):

* ``GET /api/roi/requests/{id}/delivery``: the request's links (state, expiry, downloads) and e-mails;
* ``POST /api/roi/packets/{id}/links`` ``{days, email}``: a new link; its ``download_url`` is in
  this answer only (or, with ``email``, it goes to the requester's address and is never shown);
* ``POST /api/roi/links/{id}/revoke`` ``{reason}``;
* ``GET /api/roi/outbox?status=failed``: e-mails by state (the clerk's view of what did not go);
* ``POST /api/roi/outbox/{id}/send``: send one now (failed, or again).

Every change is audited against the request's patient; refusals 404 / 409 / 400 as for ``/api/roi``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as FPath
from pydantic import BaseModel, Field

from interface.config.mail import MailSettings
from interface.desk import roi, roi_delivery
from interface.desk.roi import RoiError
from interface.desk.users import User
from interface.rules.roi import RoiSettings, settings_or_default
from interface.store import roi_delivery as link_store
from interface.web import auth

router = APIRouter(prefix="/api/roi", tags=["release of information"], responses=auth.ERROR_RESPONSES)
RELEASE = auth.require(*auth.ROI_RELEASE)
ItemId = Annotated[int, FPath(ge=1, le=auth.MAX_ID)]
_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}


class Link(BaseModel):
    id: int
    request_id: int
    packet_id: int
    state: str
    state_label: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoked_reason: str | None
    downloads: int
    last_download_at: datetime | None


class Email(BaseModel):
    id: int
    request_id: int
    link_id: int
    to_address: str
    status: str
    status_label: str
    attempts: int
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None


class Delivery(BaseModel):
    links: list[Link]
    emails: list[Email]


class LinkIn(BaseModel):
    days: int | None = Field(None, ge=1, le=366, description="default: delivery.link_days of rules/roi.yaml")
    email: bool = Field(False, description="send the link to the requester's e-mail address instead")


class NewLink(BaseModel):
    link: Link
    download_url: str | None = Field(None, description="the link, given this once (not with email)")
    email: Email | None = None


class Revocation(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class Outbox(BaseModel):
    emails: list[Email]


def _settings(request: Request) -> RoiSettings:
    found = getattr(request.app.state, "roi_settings", None)
    if found is None:
        found = request.app.state.roi_settings = settings_or_default()
    return found


def _mail(request: Request) -> MailSettings | None:
    return getattr(request.app.state, "mail", None)


def _refused(exc: RoiError) -> HTTPException:
    return HTTPException(status_code=_STATUS.get(exc.kind, 400), detail=str(exc))


def _audit(conn, request: Request, action: str, request_id: int, detail: dict) -> None:
    auth.record_audit(
        conn,
        user=request.state.user,
        action=action,
        target_type="roi_request",
        target_id=request_id,
        detail=detail,
        now=auth.clock(request),
        patient=roi.get(conn, request_id)["mrn"],
    )


def _link(conn, link_id: int, now: datetime) -> dict:
    found = link_store.get_link(conn, link_id)
    if found is None:
        raise RoiError(f"no download link {link_id}", "not_found")
    return next(x for x in roi_delivery.links_view(conn, found["request_id"], now) if x["id"] == link_id)


def _email(conn, email_id: int) -> dict:
    found = link_store.get_email(conn, email_id)
    if found is None:
        raise RoiError(f"no e-mail {email_id}", "not_found")
    return next(e for e in roi_delivery.emails_view(conn, found["request_id"]) if e["id"] == email_id)


@router.get("/requests/{request_id}/delivery", response_model=Delivery)
def delivery(request: Request, request_id: ItemId, user: User = Depends(RELEASE)):
    """The request's download links and the e-mails that carry them."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            roi.get(conn, request_id)
            out = {
                "links": roi_delivery.links_view(conn, request_id, now),
                "emails": roi_delivery.emails_view(conn, request_id),
            }
            _audit(conn, request, "roi_delivery", request_id, {"links": len(out["links"])})
    except RoiError as exc:
        raise _refused(exc) from None
    return out


@router.post("/packets/{packet_id}/links", response_model=NewLink, status_code=201)
def make_link(request: Request, packet_id: ItemId, body: LinkIn, user: User = Depends(RELEASE)):
    """A new download link to a released packet (for the recipient, without signing in)."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            link, token = roi_delivery.make_link(
                conn, _settings(request), packet_id, user=user.name, now=now, days=body.days
            )
            email_id = None
            if body.email:
                req = roi.get(conn, link["request_id"])
                email_id = roi_delivery.queue_email(
                    conn, req["id"], link["id"], req["requester_email"], user=user.name, now=now
                )
            _audit(conn, request, "roi_link", link["request_id"], {"link": link["id"], "email": email_id})
        out: dict = {"link": None, "download_url": None, "email": None}
        if email_id is not None:
            roi_delivery.send_email(
                request.app.state.engine, _mail(request), email_id, now=now, user=user.name
            )
        else:
            mail = _mail(request)
            base = mail.public_url if mail is not None else str(request.base_url).rstrip("/")
            out["download_url"] = roi_delivery.download_url(base, token)
        with request.app.state.engine.connect() as conn:
            out["link"] = _link(conn, link["id"], now)
            out["email"] = _email(conn, email_id) if email_id is not None else None
    except RoiError as exc:
        raise _refused(exc) from None
    return out


@router.post("/links/{link_id}/revoke", response_model=Link)
def revoke_link(request: Request, link_id: ItemId, body: Revocation, user: User = Depends(RELEASE)):
    """Withdraw a link: it opens nothing from now on (its unsent e-mails are cancelled)."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            link = roi_delivery.revoke_link(conn, link_id, body.reason, user=user.name, now=now)
            _audit(conn, request, "roi_link_revoke", link["request_id"], {"link": link_id})
            return _link(conn, link_id, now)
    except RoiError as exc:
        raise _refused(exc) from None


@router.get("/outbox", response_model=Outbox)
def outbox(
    request: Request,
    user: User = Depends(RELEASE),
    status: str | None = Query(None, max_length=100, description="comma-separated: pending, failed, sent..."),
):
    """The e-mails to recipients, oldest first (default: every state)."""
    statuses = [s.strip() for s in (status or "").split(",") if s.strip()]
    with request.app.state.engine.begin() as conn:
        rows = roi_delivery.emails_view(conn, statuses=statuses)
        auth.record_audit(
            conn,
            user=user,
            action="roi_outbox",
            target_type="roi_request",
            detail={"count": len(rows)},
            now=auth.clock(request),
        )
    return {"emails": rows}


@router.post("/outbox/{email_id}/send", response_model=Email)
def send(request: Request, email_id: ItemId, user: User = Depends(RELEASE)):
    """Send one e-mail now (a failed one, or again: the link gets a new address)."""
    now = auth.clock(request)
    try:
        with request.app.state.engine.begin() as conn:
            found = _email(conn, email_id)
            _audit(conn, request, "roi_email_send", found["request_id"], {"email": email_id})
        roi_delivery.send_email(request.app.state.engine, _mail(request), email_id, now=now, user=user.name)
        with request.app.state.engine.connect() as conn:
            return _email(conn, email_id)
    except RoiError as exc:
        raise _refused(exc) from None
