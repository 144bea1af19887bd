"""Console pages: the error queue and one work item, with the clerk's actions."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select

from interface.config.channels import DEFAULT_FALLBACK_CODEC, fallback_codec_for
from interface.desk import errorqueue
from interface.desk.users import User
from interface.rules import words
from interface.store import audit as store_audit
from interface.store import workqueue
from interface.store.schema import audit, messages, work_attempts, work_items
from interface.web import auth, identity_view
from interface.web.auth import record_audit
from interface.web.pages import (
    CHARTS,
    ERRORS,
    ITEM_STATUSES,
    MAX_ID,
    PAGE_SIZE,
    _channel_names,
    _clean,
    _encoding,
    _engine,
    _now,
    _qs,
    _reader,
    _render,
    failing_offsets,
    field_title,
    html_errors,
    keyset,
    mask,
    masked_text,
    parse_location,
    parsed_view,
)
from interface.web.pages_messages import _load_message, explained

router = APIRouter(include_in_schema=False)


NOTICES = {
    "retry": "Put back in the queue",
    "discard": "Discarded",
    "resubmit": "Edited copy resubmitted",
    "file_anyway": "Filed to the chart it named, as you decided",
    "file": "A copy with the chosen MRN was resubmitted",
    "send_back": "Sent back to the sender (discarded)",
}


@router.get("/errors", response_class=HTMLResponse)
@html_errors
def error_list(
    request: Request,
    user: User = Depends(ERRORS),
    status: str = "error,held",
    reason: str | None = None,
    channel: str | None = None,
    before: int | None = Query(None, ge=1, le=MAX_ID),
    after: int | None = Query(None, ge=0, le=MAX_ID),
    done: str | None = None,
    n: int | None = Query(None, ge=0),
    failed: str | None = None,
):
    statuses = [s for s in (status or DEFAULT_STATUS).split(",") if s in ITEM_STATUSES] or ["error", "held"]
    params = {"status": ",".join(statuses), "reason": _clean(reason, 64), "channel": _clean(channel, 64)}
    base = [work_items.c.status.in_(statuses)]
    if params["channel"]:
        base.append(work_items.c.channel == params["channel"])
    conds = list(base)
    if params["reason"]:
        conds.append(work_items.c.reason == params["reason"])
    cols = [
        work_items.c.id,
        work_items.c.channel,
        work_items.c.destination,
        work_items.c.status,
        work_items.c.reason,
        work_items.c.error_location,
        work_items.c.last_error,
        work_items.c.attempts,
        work_items.c.updated_at,
        work_items.c.created_at,
        work_items.c.message_id,
        messages.c.message_type,
        messages.c.control_id,
        messages.c.patient_id,
        messages.c.version,
    ]
    with _reader(request).connect() as conn:
        groups = conn.execute(
            select(work_items.c.reason, func.count())
            .where(*base)
            .group_by(work_items.c.reason)
            .order_by(func.count().desc())
        ).all()
        q_conds = conds + [messages.c.id == work_items.c.message_id]
        rows, older, newer = keyset(conn, work_items, cols, q_conds, before, after, PAGE_SIZE)
        names = _channel_names(request, conn)
        behind = workqueue.waiting_behind(conn, [r.id for r in rows])
        fixed = _fixes(conn, [r.id for r in rows if r.status == "done" and r.last_error])
    notice = None
    if done in NOTICES:
        notice = f"{NOTICES[done]}: {n or 0} item(s)."
        bad = [x for x in (failed or "").split(",") if x.isdigit()][:100]
        if bad:
            notice += f" Not done (already handled or not in a state that allows it): item {', '.join(bad)}."
    return _render(
        request,
        "errors.html",
        {
            "rows": [_list_row(r, behind.get(r.id, 0), fixed.get(r.id)) for r in rows],
            "groups": groups,
            "params": params,
            "status_choices": STATUS_CHOICES,
            "status_label": dict(STATUS_CHOICES).get(params["status"])
            or " or ".join(words.word("item_status", st) for st in statuses),
            "statuses": ITEM_STATUSES,
            "channels": names,
            "older": _qs(params, before=older) if older else None,
            "newer": _qs(params, after=newer) if newer else None,
            "mask": mask,
            "notice": notice,
            "total": sum(g[1] for g in groups),
        },
    )


def _item_page(
    request: Request,
    item_id: int,
    *,
    reveal: bool = False,
    error: str | None = None,
    status_code: int = 200,
    edited: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    from interface.hl7.message import decode

    with _reader(request).connect() as conn:
        item = conn.execute(select(work_items).where(work_items.c.id == item_id)).first()
        if item is None:
            raise HTTPException(status_code=404, detail=f"no work item {item_id}")
        msg = _load_message(conn, item.message_id)
        attempts = conn.execute(
            select(work_attempts).where(work_attempts.c.item_id == item_id).order_by(work_attempts.c.id)
        ).all()
        actions = conn.execute(
            select(audit)
            .where(audit.c.target_type == "work_item", audit.c.target_id == str(item_id))
            .order_by(audit.c.id)
        ).all()
        who = identity_view.context(
            conn,
            item,
            msg,
            reveal,
            getattr(request.app.state, "channels", None),
            desk=identity_view.works_the_desk(request),
        )
        conn.rollback()
    text = decode(msg.raw, fallback_codec_for(request.app.state.channels, msg.channel)).text
    loc = parse_location(item.error_location)
    segs, _enc = _encoding(text)
    editor_text = edited if edited is not None else "\n".join(segs)
    offsets = failing_offsets(editor_text, loc) if reveal else None
    failing_segment = None
    if loc:
        for seg in explained(request, parsed_view(text, msg.version or "2.5", reveal, loc)):
            if seg["failing"]:
                failing_segment = seg
                break
    field_label = (
        field_title(msg.version or "2.5", loc["segment"], loc["field"])[0] if loc and loc["field"] else ""
    )
    return _render(
        request,
        "error_item.html",
        {
            "item": item,
            "m": msg,
            "attempts": attempts,
            "actions": actions,
            "loc": loc,
            "field_label": field_label,
            "failing_segment": failing_segment,
            "reveal": reveal,
            "raw": masked_text(text, reveal),
            "editor_text": editor_text if reveal else "",
            "offsets": offsets,
            "error": error,
            "notice": notice,
            "mask": mask,
            "actionable": item.status in ("error", "held"),
            "mrn": msg.patient_id if reveal else mask(msg.patient_id),
            **who,
        },
        status_code=status_code,
    )


@router.get("/errors/{item_id}", response_class=HTMLResponse)
@html_errors
def error_item(request: Request, item_id: int, user: User = Depends(ERRORS), done: str | None = None):
    response = _item_page(request, item_id, notice=NOTICES.get(done or ""))
    with _reader(request).connect() as conn:
        message_id = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).scalar()
        patient = store_audit.message_patient(conn, message_id)
    auth.audit_now(
        request,
        action="view",
        target_type="message",
        target_id=message_id,
        detail={"work_item": item_id},
        patient=patient,
    )
    return response


@router.post("/errors/{item_id}/reveal", response_class=HTMLResponse)
@html_errors
def error_item_reveal(request: Request, item_id: int, reason: str = Form(""), user: User = Depends(ERRORS)):
    reason = (reason or "").strip()
    if not reason:
        return _item_page(request, item_id, error="Give a reason to reveal the message.", status_code=400)
    with _engine(request).begin() as conn:
        item = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).first()
        if item is None:
            raise HTTPException(status_code=404, detail=f"no work item {item_id}")
        record_audit(
            conn,
            user=user,
            action="reveal",
            target_type="message",
            target_id=item.message_id,
            reason=reason[:1000],
            detail={"work_item": item_id},
            now=_now(request),
            patient=store_audit.message_patient(conn, item.message_id),
        )
    return _item_page(request, item_id, reveal=True)


def _act(request: Request, user: User, item_id: int, fn) -> str | None:
    """Run one clerk action in its own transaction; the error text if it cannot be done."""
    try:
        with _engine(request).begin() as conn:
            fn(conn, item_id, user.name, _now(request))
    except errorqueue.ActionError as exc:
        return str(exc)
    return None


def _retry(conn, item_id, name, now):
    errorqueue.retry_item(conn, item_id, user=name, now=now)


def _discarder(reason: str):
    def run(conn, item_id, name, now):
        errorqueue.discard_item(conn, item_id, user=name, reason=reason, now=now)

    return run


@router.post("/errors/{item_id}/retry")
@html_errors
def error_retry(request: Request, item_id: int, user: User = Depends(ERRORS)):
    err = _act(request, user, item_id, _retry)
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=retry", status_code=303)


@router.post("/errors/{item_id}/discard")
@html_errors
def error_discard(request: Request, item_id: int, reason: str = Form(""), user: User = Depends(ERRORS)):
    reason = (reason or "").strip()
    if not reason:
        return _item_page(request, item_id, error="A reason is required to discard.", status_code=400)
    err = _act(request, user, item_id, _discarder(reason[:1000]))
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=discard", status_code=303)


def _editor_bytes(text: str, original: bytes, fallback: str = DEFAULT_FALLBACK_CODEC) -> bytes:
    """Editor text (one segment a line) -> HL7 bytes (CR-separated) in the original's charset
    (MSH-18, or the channel's fallback character set the original was read with)."""
    from interface.hl7.message import decode

    segs = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    body = "\r".join(segs) + "\r"
    charset = decode(original, fallback).charset or "utf-8"
    try:
        return body.encode(charset)
    except (UnicodeEncodeError, LookupError):
        return body.encode("utf-8")


@router.post("/errors/{item_id}/resubmit")
@html_errors
def error_resubmit(
    request: Request, item_id: int, raw: str = Form(""), reason: str = Form(""), user: User = Depends(ERRORS)
):
    """Store the edited message as a new version linked to the original and queue it in the
    failed item's place (the original is kept)."""
    if not raw.strip():
        return _item_page(
            request, item_id, reveal=True, error="The edited message is empty.", status_code=400
        )
    try:
        with _engine(request).begin() as conn:
            item = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).first()
            if item is None:
                raise HTTPException(status_code=404, detail=f"no work item {item_id}")
            original, channel = conn.execute(
                select(messages.c.raw, messages.c.channel).where(messages.c.id == item.message_id)
            ).one()
            data = _editor_bytes(raw, original, fallback_codec_for(request.app.state.channels, channel))
            errorqueue.resubmit_item(
                conn,
                item_id,
                data,
                user=user.name,
                now=_now(request),
                reason=(reason or "").strip()[:1000] or None,
                channels=getattr(request.app.state, "channels", None),
            )
    except errorqueue.ActionError as exc:
        return _item_page(request, item_id, reveal=True, error=str(exc), status_code=409, edited=raw)
    return RedirectResponse(f"/errors/{item_id}?done=resubmit", status_code=303)


@router.post("/errors/{item_id}/file-anyway")
@html_errors
def error_file_anyway(request: Request, item_id: int, reason: str = Form(""), user: User = Depends(CHARTS)):
    """An identity mismatch filed to the chart it named after all (reason required, audited)."""
    from interface.desk import identity_desk

    reason = (reason or "").strip()[:1000]
    if not reason:
        return _item_page(request, item_id, error="Say why it is the right chart.", status_code=400)

    def run(conn, item_id, name, now):
        identity_desk.file_anyway(conn, item_id, user=name, reason=reason, now=now)

    err = _act(request, user, item_id, run)
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=file_anyway", status_code=303)


@router.post("/errors/{item_id}/file")
@html_errors
def error_file_to(
    request: Request, item_id: int, mrn: str = Form(""), reason: str = Form(""), user: User = Depends(CHARTS)
):
    """File to this chart: a linked copy with the MRN written into PID-3 by the engine."""
    from interface.desk import identity_desk

    mrn = (mrn or "").strip()[:128]
    if not mrn:
        return _item_page(request, item_id, error="Give the MRN of the chart to file to.", status_code=400)

    def run(conn, item_id, name, now):
        identity_desk.file_to(
            conn,
            item_id,
            mrn,
            user=name,
            now=now,
            channels=getattr(request.app.state, "channels", None) or [],
            reason=(reason or "").strip()[:1000] or None,
        )

    err = _act(request, user, item_id, run)
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=file", status_code=303)


@router.post("/errors/{item_id}/send-back")
@html_errors
def error_send_back(request: Request, item_id: int, reason: str = Form(""), user: User = Depends(CHARTS)):
    from interface.desk import identity_desk

    reason = (reason or "").strip()[:1000]
    if not reason:
        return _item_page(request, item_id, error="A reason is required to send it back.", status_code=400)

    def run(conn, item_id, name, now):
        identity_desk.send_back(conn, item_id, user=name, reason=reason, now=now)

    err = _act(request, user, item_id, run)
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=send_back", status_code=303)


@router.post("/errors/bulk")
@html_errors
def error_bulk(
    request: Request,
    user: User = Depends(ERRORS),
    action: str = Form(""),
    ids: list[int] = Form(default=[]),
    reason: str = Form(""),
    back: str = Form(""),
):
    """Retry or discard exactly the checked items (each in its own transaction, so one stale
    item does not stop the others); reports how many were done and which were not."""
    if action not in ("retry", "discard"):
        raise HTTPException(status_code=400, detail="action must be retry or discard")
    if not ids:
        raise HTTPException(status_code=400, detail="select at least one item")
    reason = (reason or "").strip()
    if action == "discard" and not reason:
        raise HTTPException(status_code=400, detail="a reason is required to discard")
    fn = _retry if action == "retry" else _discarder(reason[:1000])
    ok, failed = 0, []
    for item_id in dict.fromkeys(ids):  # each selected row once, in the order shown
        err = _act(request, user, item_id, fn)
        if err:
            failed.append(str(item_id))  # ids only: the page never echoes free text from a URL
        else:
            ok += 1
    params = {k: v for k, v in parse_qsl(back) if k in ("status", "reason", "channel")}
    target = "/errors?" + urlencode(
        {**params, "done": action, "n": ok, **({"failed": ",".join(failed)} if failed else {})}
    )
    return RedirectResponse(target, status_code=303)


# ---------------------------------------------------------------------------------------------
# patients and documents


# ---------------------------------------------------------------------------------------------
# the error list's rows (helpers of error_list)

DEFAULT_STATUS = "error,held"  # failed and held (unknown patient waiting for its ADT) items
# the status filter's choices: (value, words)
STATUS_CHOICES = (
    ("error,held", "Failed or held"),
    ("error", "Failed"),
    ("held", "Held (waiting for the patient)"),
    ("pending", "Waiting to be processed"),
    ("done", "Done"),
    ("discarded", "Discarded"),
)


def _fixes(conn, item_ids: list[int]) -> dict[int, dict]:
    """For done items that once failed: {item id: {"failed_at", "error", "by", "action", "at"}}
    — the last failed attempt before it was done, and the clerk action (retry, resubmit) after
    it, if any (an item can also come right by itself: a retried transient failure)."""
    if not item_ids:
        return {}
    out: dict[int, dict] = {}
    for a in conn.execute(
        select(work_attempts.c.item_id, work_attempts.c.at, work_attempts.c.outcome, work_attempts.c.error)
        .where(work_attempts.c.item_id.in_(item_ids))
        .order_by(work_attempts.c.id)
    ):
        if a.outcome in ("error", "retry", "held"):
            out[a.item_id] = {"failed_at": a.at, "error": a.error, "by": None, "action": None, "at": None}
    for a in conn.execute(
        select(audit.c.target_id, audit.c.at, audit.c.user, audit.c.action)
        .where(
            audit.c.target_type == "work_item",
            audit.c.target_id.in_([str(i) for i in out]),
            audit.c.action.in_(("retry", "resubmit")),
        )
        .order_by(audit.c.id)
    ):
        fix = out.get(int(a.target_id))
        if fix is not None:
            fix.update(by=a.user, action=a.action, at=a.at)
    return out


def _list_row(r, waiting: int, fix: dict | None) -> dict:
    """One row of the error list: the stored columns plus words for the codes, how many of the
    patient's later messages wait behind it, which field is wrong, and — for an item that was
    fixed — its past error as history, not as the current state."""
    d = dict(r._mapping)
    loc = parse_location(r.error_location)
    field = ""
    if loc and loc["field"]:
        field = field_title(r.version or "2.5", loc["segment"], loc["field"])[0]
    current = r.status not in ("done", "discarded")
    d.update(
        waiting_behind=waiting,
        status_text=words.word("item_status", r.status),
        reason_text=words.reason_text(r.reason),
        field_name=field,
        current_error=(r.last_error or "") if current else "",
        past_error=fix if fix is not None else None,
    )
    return d
