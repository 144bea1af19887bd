"""Delivery of released records (:mod:`interface.desk.roi_delivery`, docs/release-of-information.md):
the clerk's download links and e-mails on a request's page, and the recipient's download pages.

============================================  ====================================================
``POST /roi/{id}/links``                      a new download link to one of the request's packets
                                              (shown once), or e-mailed to the requester
``POST /roi/{id}/links/{link}/revoke``        withdraw a link, with the reason
``POST /roi/{id}/emails/{email}/send``        send an e-mail now (a failed one, or again)
``GET /download/{token}``                     the recipient's page: what the link opens, until when
``GET /download/{token}/packet.pdf``          the packet (audited against the patient, with the IP)
============================================  ====================================================

The console routes are ``auth.ROI_RELEASE``'s. The download pages need no sign-in: the token opens
its one packet and nothing else (it is no session and no API token); an unknown token is 404, an
expired or revoked one 410, each with a page that says so in words. They are the only pages to
publish to recipients (``/download/`` behind the hospital's reverse proxy).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as FPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from interface.desk import roi, roi_delivery
from interface.desk.roi import RoiError
from interface.desk.users import User
from interface.store import roi as roi_store
from interface.store import roi_delivery as link_store
from interface.web import auth
from interface.web.api import roi as api
from interface.web.pages import _now, _render, html_errors
from interface.web.pages_roi import refused_form, request_view

router = APIRouter(include_in_schema=False)
RELEASE = auth.require(*auth.ROI_RELEASE)
RequestId = Annotated[int, FPath(ge=1, le=auth.MAX_ID)]
ItemId = Annotated[int, FPath(ge=1, le=auth.MAX_ID)]
Token = Annotated[str, FPath(min_length=1, max_length=200)]


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() and len(text.strip()) < 18 else None


@router.post("/roi/{request_id}/links", response_class=HTMLResponse)
@html_errors
def make_link(
    request: Request,
    request_id: RequestId,
    user: User = Depends(RELEASE),
    packet_id: str = Form(""),
    days: str = Form(""),
    email: str = Form(""),
):
    """A new link: shown on the page this POST answers (never in a URL), or e-mailed."""
    entered = {"packet_id": packet_id, "days": days, "email": bool(email)}

    def fn(conn, u, n):
        packet = _int(packet_id)
        if packet is None or packet not in [p["id"] for p in roi_store.packets_for(conn, request_id)]:
            raise RoiError("choose one of the request's packets")
        length = _int(days) if days.strip() else None
        if days.strip() and length is None:
            raise RoiError("the days a link works are a whole number")
        link, token = roi_delivery.make_link(conn, api.settings(request), packet, user=u, now=n, days=length)
        email_id = None
        if email:
            req = roi.get(conn, request_id)
            email_id = roi_delivery.queue_email(
                conn, request_id, link["id"], req["requester_email"], user=u, now=n
            )
        return link, token, email_id

    try:
        link, token, email_id = api.on_request(
            request, request_id, "roi_link", fn, lambda r: {"link": r[0]["id"], "email": r[2]}
        )
    except RoiError as exc:
        return refused_form(request, request_id, exc, "link", entered)
    if email_id is not None:
        roi_delivery.send_email(
            request.app.state.engine, api.mail_settings(request), email_id, now=_now(request), user=user.name
        )
        return RedirectResponse(f"/roi/{request_id}?done=roi_email#delivery", status_code=303)
    shown = {
        "id": link["id"],
        "url": roi_delivery.download_url(api.public_base(request), token),
        "expires_at": link["expires_at"],
    }
    return request_view(request, request_id, done="roi_link", new_link=shown)


@router.post("/roi/{request_id}/links/{link_id}/revoke")
@html_errors
def revoke_link(
    request: Request,
    request_id: RequestId,
    link_id: ItemId,
    user: User = Depends(RELEASE),
    reason: str = Form(""),
):
    def fn(conn, u, n):
        link = link_store.get_link(conn, link_id)
        if link is None or link["request_id"] != request_id:
            raise RoiError(f"the request has no download link {link_id}", "not_found")
        return roi_delivery.revoke_link(conn, link_id, reason, user=u, now=n)

    try:
        api.on_request(request, request_id, "roi_link_revoke", fn, {"link": link_id})
    except RoiError as exc:
        return refused_form(request, request_id, exc, "link-revoke", {"reason": reason, "link": link_id})
    return RedirectResponse(f"/roi/{request_id}?done=roi_link_revoke#delivery", status_code=303)


@router.post("/roi/{request_id}/emails/{email_id}/send")
@html_errors
def send_email(request: Request, request_id: RequestId, email_id: ItemId, user: User = Depends(RELEASE)):
    def fn(conn, u, n):
        found = link_store.get_email(conn, email_id)
        if found is None or found["request_id"] != request_id:
            raise RoiError(f"the request has no e-mail {email_id}", "not_found")
        return found

    try:
        api.on_request(request, request_id, "roi_email_send", fn, {"email": email_id})
        roi_delivery.send_email(
            request.app.state.engine, api.mail_settings(request), email_id, now=_now(request), user=user.name
        )
    except RoiError as exc:
        return refused_form(request, request_id, exc, "email", {"email": email_id})
    return RedirectResponse(f"/roi/{request_id}?done=roi_email_send#delivery", status_code=303)


# -- the recipient's pages (no sign-in) -------------------------------------------------------


def _recipient_page(request: Request, ctx: dict, status_code: int) -> HTMLResponse:
    resp = _render(request, "roi_download.html", ctx, status_code=status_code)
    resp.headers["Referrer-Policy"] = "no-referrer"  # the address is the token
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp


def _refused(request: Request, exc: RoiError) -> HTMLResponse:
    why = getattr(exc, "why", None)
    return _recipient_page(
        request,
        {"link": None, "why": why or "unknown", "nav": []},
        410 if exc.kind == "gone" else 404,
    )


@router.get("/download/{token}", response_class=HTMLResponse)
def download_page(request: Request, token: Token):
    """What the link opens and until when; the packet is one click further (so a mail scanner
    that follows links downloads nothing)."""
    try:
        with request.app.state.reader.connect() as conn:
            link = roi_delivery.open_link(conn, token, _now(request))
    except RoiError as exc:
        return _refused(request, exc)
    return _recipient_page(request, {"link": link, "token": token, "nav": []}, 200)


@router.get("/download/{token}/packet.pdf")
def download_packet(request: Request, token: Token):
    """The packet, counted on the link and audited against the patient as a disclosure access."""
    try:
        with request.app.state.engine.begin() as conn:
            link, data = roi_delivery.download(
                conn,
                token,
                api.content_store(request),
                now=_now(request),
                ip=request.client.host if request.client else None,
            )
    except RoiError as exc:
        return _refused(request, exc)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="records-request-{link["request_id"]}.pdf"',
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
