"""Console pages: the message browser and one message."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from interface.config.channels import fallback_codec_for
from interface.desk import code_meanings, masking, search_snippets
from interface.desk.users import User
from interface.hl7.message import decode
from interface.rules import code_tables
from interface.store import audit as store_audit
from interface.store import message_search
from interface.store.schema import audit, messages, work_attempts, work_items
from interface.web import auth, identity_view, message_actions, message_diff
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
    mask,
    masked_text,
    parse_location,
    parsed_view,
)

router = APIRouter(include_in_schema=False)


SEARCH_FIELDS = (
    ("mrn", 128),
    ("control_id", 199),
    ("type", 32),
    ("trigger", 8),
    ("status", 16),
    ("channel", 64),
    ("sending_application", 227),
    ("sending_facility", 227),
    ("since", 40),
    ("until", 40),
    ("text", 200),
)

LIST_COLS = [
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
    messages.c.sending_facility,
]


def search_filters(query: dict) -> tuple[message_search.Filters, dict]:
    """The search form's values (cleaned, cut to their columns' lengths) as store filters."""
    params = {name: _clean(query.get(name), limit) for name, limit in SEARCH_FIELDS}
    f = message_search.Filters(
        **{k: v for k, v in params.items() if k not in ("since", "until")},
        since=_parse_dt(params["since"], "since"),
        until=_parse_dt(params["until"], "until"),
    )
    return f, params


def hit_snippets(conn, page: message_search.Page, fallback, reveal: bool = False) -> dict[int, str | None]:
    """Message id -> the highlighted snippet of a content search (masked: desk.search_snippets)."""
    if not page.terms or not page.rows:
        return {}
    out = {}
    rows = conn.execute(
        select(messages.c.id, messages.c.raw, messages.c.channel).where(
            messages.c.id.in_([r.id for r in page.rows])
        )
    )
    for r in rows:
        text = decode(r.raw, fallback(r.channel)).text
        out[r.id] = search_snippets.snippet(text, page.terms, reveal)
    return out


def done_words(query) -> str | None:
    """What a reprocess of selected messages did, in words (counts and ids only, never URL text)."""
    if query.get("done") != "reprocess":
        return None
    n = int(query.get("n", "0")) if query.get("n", "").isdigit() else 0
    failed = [i for i in (query.get("failed") or "").split(",") if i.isdigit()][:50]
    text = f"{n} message(s) queued again."
    return text + (f" Not reprocessed: {', '.join(failed)}." if failed else "")


@router.get("/messages", response_class=HTMLResponse)
@html_errors
def message_list(
    request: Request,
    user: User = Depends(MESSAGES),
    before: int | None = Query(None, ge=1, le=MAX_ID),
    after: int | None = Query(None, ge=0, le=MAX_ID),
):
    """Search the journal (``interface.store.message_search``): control id by prefix, the chart's
    MRNs through merges, words of the content on the full-text index, hits highlighted (masked)."""
    f, params = search_filters(dict(request.query_params))
    with _reader(request).connect() as conn:
        page = message_search.search(conn, f, LIST_COLS, before=before, after=after, limit=PAGE_SIZE)
        snippets = hit_snippets(conn, page, lambda ch: fallback_codec_for(request.app.state.channels, ch))
        names = _channel_names(request, conn)
    if params["mrn"]:  # the list masks patients; a search by MRN is about that patient
        auth.audit_now(
            request,
            action="search",
            target_type="message",
            detail={"mrn": mask(params["mrn"]), "chart_mrns": len(page.mrns)},
            patient=page.mrns[0] if page.mrns else params["mrn"],
        )
    elif params["text"]:
        auth.audit_now(
            request, action="search", target_type="message", detail={"text": True, "n": len(page.rows)}
        )
    return _render(
        request,
        "messages.html",
        {
            "rows": page.rows,
            "params": params,
            "statuses": MESSAGE_STATUSES,
            "channels": names,
            "older": _qs(params, before=page.older) if page.older else None,
            "newer": _qs(params, after=page.newer) if page.newer else None,
            "first_page": before is None and after is None,
            "mask": mask,
            "newest": _qs(params),
            "snippets": snippets,
            "partial": page.partial,
            "merged": [mask(m) for m in page.mrns[1:]],
            "destinations": sorted(
                {d.name for c in request.app.state.channels or [] for d in c.destinations}
            ),
            "done": done_words(request.query_params),
        },
    )


@router.post("/messages/export")
@html_errors
def messages_export(
    request: Request,
    user: User = Depends(MESSAGES),
    ids: list[int] = Form(default=[]),
    reason: str = Form(""),
):
    """The selected messages as one ``.hl7`` file (as received: a reveal, with its reason, audited)."""
    body, name = message_actions.export_file(request, user, ids, reason)
    return Response(
        body,
        media_type="application/hl7-v2",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/messages/reprocess")
@html_errors
def messages_reprocess(
    request: Request,
    user: User = Depends(MESSAGES),
    ids: list[int] = Form(default=[]),
    destination: str = Form(""),
    reason: str = Form(""),
):
    """Queue the selected messages again to one destination (each audited), back to the list."""
    if not destination.strip():
        raise HTTPException(status_code=400, detail="choose a destination")
    result = message_actions.reprocess(request, user, ids, destination.strip()[:64], reason)
    query = {"done": "reprocess", "n": len(result.queued)}
    if result.refused:
        query["failed"] = ",".join(map(str, result.refused))
    return RedirectResponse("/messages?" + urlencode(query), status_code=303)


def explained(request: Request, segments: list[dict]) -> list[dict]:
    """The parsed view with code-table meanings beside coded values (``desk.code_meanings``; the
    site's ``rules/code_tables.yaml`` over the HL7 tables, re-read when it changes)."""
    tables = code_tables.default_tables(getattr(request.app.state, "code_tables_file", None))
    return code_meanings.annotate(segments, tables)


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
    if tab not in ("parsed", "raw", "ack", "history", "diff"):
        tab = "parsed"
    with _reader(request).connect() as conn:
        msg = _load_message(conn, message_id)
        history = _message_history(conn, msg)
        patient = identity_view.banner_for(
            conn, identity_view.message_mrn(msg), reveal or identity_view.works_the_desk(request)
        )
        conn.rollback()
    decoded = decode(msg.raw, fallback_codec_for(request.app.state.channels, msg.channel))
    # the diff: this copy against its original, or this original against its newest copy
    other_id = msg.parent_id or (history["copies"][-1].id if history["copies"] else None)
    diff = None
    if other_id is not None and tab == "diff":
        with _reader(request).connect() as conn:
            other = _load_message(conn, other_id)
        other_text = decode(other.raw, fallback_codec_for(request.app.state.channels, other.channel)).text
        old_text, new_text = (other_text, decoded.text) if msg.parent_id else (decoded.text, other_text)
        diff = {
            "old_id": msg.parent_id or msg.id,
            "new_id": msg.id if msg.parent_id else other_id,
            "rows": message_diff.field_diff(old_text, new_text, msg.version or "2.5", reveal),
        }
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
            "parsed": explained(request, parsed_view(decoded.text, msg.version or "2.5", reveal, failing))
            if tab == "parsed"
            else [],
            "ack": masked_text(ack_text, True) if ack_text else "",
            "ack_parsed": explained(request, parsed_view(ack_text, msg.version or "2.5", True))
            if ack_text and tab == "ack"
            else [],
            "h": history,
            "mask": mask,
            "failing": failing,
            "mrn": msg.patient_id if reveal else mask(msg.patient_id),
            "tabs": [("parsed", "Parsed"), ("raw", "Raw"), ("ack", "ACK"), ("history", "History")]
            + ([("diff", "Changes")] if other_id is not None else []),
            "diff": diff,
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
