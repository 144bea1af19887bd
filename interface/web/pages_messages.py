"""Console pages: the message browser and one message."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from interface.desk import masking
from interface.desk.users import User
from interface.store import audit as store_audit
from interface.store.schema import audit, messages, work_attempts, work_items
from interface.web import auth, identity_view
from interface.web.pages import (
    MAX_ID,
    MESSAGE_STATUSES,
    MESSAGES,
    PAGE_SIZE,
    _channel_names,
    _clean,
    _engine,
    _now,
    _parse_dt,
    _qs,
    _reader,
    _render,
    html_errors,
    keyset,
    mask,
    masked_text,
    parse_location,
    parsed_view,
)

router = APIRouter(include_in_schema=False)


def _message_filters(mrn, control_id, type_, status, channel, since, until) -> tuple[list, dict]:
    params = {
        "mrn": _clean(mrn, 128),
        "control_id": _clean(control_id, 199),
        "type": _clean(type_, 32),
        "status": _clean(status, 16),
        "channel": _clean(channel, 64),
        "since": _clean(since, 40),
        "until": _clean(until, 40),
    }
    conds = []
    if params["mrn"]:
        conds.append(messages.c.patient_id == params["mrn"])
    if params["control_id"]:
        conds.append(messages.c.control_id == params["control_id"])
    if params["type"]:
        t = params["type"].upper()
        if "^" in t and not t.endswith("^"):
            conds.append(messages.c.message_type == t)
        else:  # "ADT" or "ADT^": every trigger of that type
            conds.append(messages.c.message_type.like(t.rstrip("^").replace("%", "").replace("_", "") + "^%"))
    if params["status"]:
        conds.append(messages.c.status == params["status"])
    if params["channel"]:
        conds.append(messages.c.channel == params["channel"])
    s = _parse_dt(params["since"], "since")
    u = _parse_dt(params["until"], "until")
    if s is not None:
        conds.append(messages.c.received_at >= s)
    if u is not None:
        conds.append(messages.c.received_at < u)
    return conds, params


@router.get("/messages", response_class=HTMLResponse)
@html_errors
def message_list(
    request: Request,
    user: User = Depends(MESSAGES),
    mrn: str | None = None,
    control_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = Query(None, ge=1, le=MAX_ID),
    after: int | None = Query(None, ge=0, le=MAX_ID),
):
    conds, params = _message_filters(mrn, control_id, type, status, channel, since, until)
    cols = [
        messages.c.id,
        messages.c.channel,
        messages.c.received_at,
        messages.c.control_id,
        messages.c.message_type,
        messages.c.patient_id,
        messages.c.status,
        messages.c.ack_code,
        messages.c.error_text,
        messages.c.parent_id,
        messages.c.sending_application,
    ]
    with _reader(request).connect() as conn:
        rows, older, newer = keyset(conn, messages, cols, conds, before, after, PAGE_SIZE)
        names = _channel_names(request, conn)
    if params["mrn"]:  # the list masks patients; a search by MRN is about that patient
        auth.audit_now(
            request,
            action="search",
            target_type="message",
            detail={"mrn": mask(params["mrn"])},
            patient=params["mrn"],
        )
    return _render(
        request,
        "messages.html",
        {
            "rows": rows,
            "params": params,
            "statuses": MESSAGE_STATUSES,
            "channels": names,
            "older": _qs(params, before=older) if older else None,
            "newer": _qs(params, after=newer) if newer else None,
            "first_page": before is None and after is None,
            "mask": mask,
            "newest": _qs(params),
        },
    )


def _load_message(conn, message_id: int):
    row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no message {message_id}")
    return row


def _message_history(conn, msg) -> dict:
    """Work items (this message's, or those moved to its resubmitted copies), their attempts,
    the clerk actions on them, related copies, and what the message changed."""
    copies = conn.execute(
        select(messages.c.id, messages.c.status, messages.c.received_at)
        .where(messages.c.parent_id == msg.id)
        .order_by(messages.c.id)
    ).all()
    ids = [msg.id] + [c.id for c in copies]
    items = conn.execute(
        select(work_items).where(work_items.c.message_id.in_(ids)).order_by(work_items.c.id)
    ).all()
    item_ids = [i.id for i in items]
    attempts = {}
    actions = []
    if item_ids:
        for a in conn.execute(
            select(work_attempts).where(work_attempts.c.item_id.in_(item_ids)).order_by(work_attempts.c.id)
        ):
            attempts.setdefault(a.item_id, []).append(a)
        actions = conn.execute(
            select(audit)
            .where(audit.c.target_type == "work_item", audit.c.target_id.in_([str(i) for i in item_ids]))
            .order_by(audit.c.id)
        ).all()
    msg_actions = conn.execute(
        select(audit)
        .where(audit.c.target_type == "message", audit.c.target_id == str(msg.id), audit.c.action != "view")
        .order_by(audit.c.id.desc())
        .limit(50)
    ).all()
    changes = []
    try:
        from interface.store.chart_schema import chart_history as h

        changes = conn.execute(select(h).where(h.c.message_id == msg.id).order_by(h.c.id).limit(500)).all()
    except ImportError:  # pragma: no cover
        pass
    doc_changes = []
    try:
        from interface.store.document_schema import document_versions as dv

        doc_changes = conn.execute(
            select(dv.c.document_number, dv.c.version, dv.c.event, dv.c.action, dv.c.at)
            .where(dv.c.message_id == msg.id)
            .order_by(dv.c.id)
        ).all()
    except ImportError:  # pragma: no cover
        pass
    parent = None
    if msg.parent_id:
        parent = conn.execute(
            select(messages.c.id, messages.c.status).where(messages.c.id == msg.parent_id)
        ).first()
    return {
        "copies": copies,
        "work_items": items,
        "attempts": attempts,
        "actions": actions,
        "message_actions": msg_actions,
        "changes": changes,
        "doc_changes": doc_changes,
        "parent": parent,
    }


def _message_page(
    request: Request,
    message_id: int,
    tab: str,
    reveal: bool,
    status_code: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    from interface.config.channels import fallback_codec_for
    from interface.hl7.message import decode

    if tab not in ("parsed", "raw", "ack", "history"):
        tab = "parsed"
    with _reader(request).connect() as conn:
        msg = _load_message(conn, message_id)
        history = _message_history(conn, msg)
        patient = identity_view.banner_for(
            conn, identity_view.message_mrn(msg), reveal or identity_view.works_the_desk(request)
        )
        conn.rollback()
    decoded = decode(msg.raw, fallback_codec_for(request.app.state.channels, msg.channel))
    item_errors = [i for i in history["work_items"] if i.status in ("error", "held")]
    failing = parse_location(item_errors[0].error_location) if item_errors else None
    ack_text = msg.ack.decode("utf-8", "replace") if msg.ack else ""
    return _render(
        request,
        "message.html",
        {
            "m": msg,
            "patient": patient,
            "banner_none": "the message names no MRN"
            if not identity_view.message_mrn(msg)
            else "the message's MRN names no chart",
            "tab": tab,
            "reveal": reveal,
            "error": error,
            "warning": decoded.warning,
            "raw": masked_text(decoded.text, reveal),
            "parsed": parsed_view(decoded.text, msg.version or "2.5", reveal, failing)
            if tab == "parsed"
            else [],
            "ack": masked_text(ack_text, True) if ack_text else "",
            "ack_parsed": parsed_view(ack_text, msg.version or "2.5", True)
            if ack_text and tab == "ack"
            else [],
            "h": history,
            "mask": mask,
            "failing": failing,
            "mrn": msg.patient_id if reveal else mask(msg.patient_id),
            "tabs": [("parsed", "Parsed"), ("raw", "Raw"), ("ack", "ACK"), ("history", "History")],
        },
        status_code=status_code,
    )


@router.get("/messages/{message_id}", response_class=HTMLResponse)
@html_errors
def message_view(request: Request, message_id: int, tab: str = "parsed", user: User = Depends(MESSAGES)):
    """A message, identifiers masked (reveal with a reason: POST .../reveal); the view is audited."""
    response = _message_page(request, message_id, tab, reveal=False)
    with _reader(request).connect() as conn:
        patient = store_audit.message_patient(conn, message_id)
    auth.audit_now(request, action="view", target_type="message", target_id=message_id, patient=patient)
    return response


@router.post("/messages/{message_id}/reveal", response_class=HTMLResponse)
@html_errors
def message_reveal(
    request: Request,
    message_id: int,
    reason: str = Form(""),
    tab: str = Form("parsed"),
    user: User = Depends(MESSAGES),
):
    """Show the message unmasked, once, for the reason given; the reveal is audited (the rule
    of ``interface.desk.masking``)."""
    try:
        reason = masking.check_reveal(user.role, masking.MESSAGE, True, reason)
    except masking.RevealRefused as exc:
        if exc.status != 400:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None
        return _message_page(
            request,
            message_id,
            tab,
            reveal=False,
            status_code=400,
            error="Give a reason to reveal patient identifiers.",
        )
    with _engine(request).begin() as conn:
        _load_message(conn, message_id)
        masking.record_reveal(
            conn,
            user=user.name,
            target_type="message",
            target_id=message_id,
            reason=reason,
            now=_now(request),
            patient=store_audit.message_patient(conn, message_id),
        )
    return _message_page(request, message_id, tab, reveal=True)


# ---------------------------------------------------------------------------------------------
# error queue
