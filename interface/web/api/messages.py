"""``GET /api/messages`` (search, newest first, keyset paging), ``GET /api/messages/{id}``, and
the actions on selected messages (``POST /api/messages/export``, ``POST /api/messages/reprocess``).

Search is ``interface.store.message_search``: every filter on an index (control id by prefix in
any case, the chart's MRNs through merges, words of the content on the full-text index, type and
trigger, status, channel, sender, dates), ordered by ``id`` descending, one page at a time; the
next page is ``before_id=next_before_id``. No total count is computed.

Identifiers are masked in the list (``****1234``), and identifying fields and clinical text in the
detail (``•••``), unless ``reveal=true`` with a ``reason`` (the rule of ``interface.desk.masking``, the
same as the console's); a reveal, a search by MRN and every message view are written to the audit
trail.

The detail view parses the raw text with the lean tokenizer and names every field from hl7apy's
tables for the message's version (falling back to 2.5); lookups are cached per segment/version.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from interface.config.channels import DEFAULT_FALLBACK_CODEC, fallback_codec_for
from interface.desk import masking, search_snippets
from interface.hl7.errors import ParseError
from interface.hl7.message import decode, parse, split_warnings
from interface.store import message_search
from interface.store.schema import audit, messages, work_attempts, work_items
from interface.web import message_actions
from interface.web.auth import (
    ERROR_RESPONSES,
    MAX_ID,
    MESSAGES,
    UtcDateTime,
    audit_listed,
    audit_now,
    clock,
    mask,
    require,
    utc_param,
)

router = APIRouter(tags=["messages"])

MAX_DESCRIBE_CHARS = 2_000_000  # bigger messages (embedded documents) are shown raw only
STATUSES = ("accepted", "processed", "error", "rejected", "quarantined", "discarded", "resubmitted")


class MessageSummary(BaseModel):
    id: int
    channel: str
    received_at: UtcDateTime
    peer: str | None
    control_id: str | None
    message_type: str | None
    version: str | None
    sending_application: str | None
    sending_facility: str | None
    patient_id: str | None
    status: str
    ack_code: str | None
    error_code: str | None
    error_text: str | None
    parent_id: int | None
    snippet: str | None = None  # a content search's hit: escaped HTML, matches in <mark>


class MessagePage(BaseModel):
    messages: list[MessageSummary]
    next_before_id: int | None
    limit: int
    revealed: bool
    chart_mrns: int = 0  # MRNs searched for ``mrn`` (the chart's, merged ones included)
    partial: bool = False  # a content search stopped early: go on with next_before_id


_SUMMARY_COLS = [messages.c[n] for n in MessageSummary.model_fields if n != "snippet"]


@router.get("/api/messages", response_model=MessagePage, responses=ERROR_RESPONSES)
def list_messages(
    request: Request,
    _user=Depends(require(*MESSAGES)),
    mrn: str | None = Query(None, max_length=128, description="the chart's messages, merged MRNs included"),
    control_id: str | None = Query(None, max_length=199, description="starts with (any case)"),
    type: str | None = Query(None, max_length=32, description="ADT, or ADT^A01"),
    trigger: str | None = Query(None, max_length=8, description="A08 (with or without type)"),
    status: str | None = Query(None, max_length=16, description=" | ".join(STATUSES)),
    channel: str | None = Query(None, max_length=64),
    sending_application: str | None = Query(None, max_length=227, description="MSH-3, exactly"),
    sending_facility: str | None = Query(None, max_length=227, description="MSH-4, exactly"),
    since: datetime | None = Query(None, description="received at or after"),
    until: datetime | None = Query(None, description="received before"),
    text: str | None = Query(
        None, max_length=200, description="words of the content (all of them); word* a prefix"
    ),
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(50, ge=1, le=500),
    reveal: bool = False,
    reason: str | None = Query(None, max_length=500, description="why identifiers are revealed"),
) -> MessagePage:
    """Message summaries, newest first (``interface.store.message_search``); identifiers masked
    unless ``reveal`` with a ``reason``. A content search gives each message a ``snippet``: HTML,
    escaped, hits in ``<mark>``, cut from the masked text unless revealed."""
    _reveal(_user, masking.MESSAGE, reveal, reason)  # 400 without a reason, 403 for a role that may not
    if status is not None and status not in STATUSES:
        raise HTTPException(status_code=400, detail=f"status must be one of {', '.join(STATUSES)}")
    f = message_search.Filters(
        mrn=mrn,
        control_id=control_id,
        type=type,
        trigger=trigger,
        status=status,
        channel=channel,
        sending_application=sending_application,
        sending_facility=sending_facility,
        since=utc_param(since, "since") if since is not None else None,
        until=utc_param(until, "until") if until is not None else None,
        text=text,
    )
    with request.app.state.reader.connect() as conn:
        page = message_search.search(conn, f, _SUMMARY_COLS, before=before_id, limit=limit)
        snippets = {}
        if page.terms and page.rows:
            for r in conn.execute(
                select(messages.c.id, messages.c.raw, messages.c.channel).where(
                    messages.c.id.in_([r.id for r in page.rows])
                )
            ):
                body = _text(r.raw, fallback_codec_for(request.app.state.channels, r.channel)) or ""
                snippets[r.id] = search_snippets.snippet(body, page.terms, reveal)
    rows = page.rows
    if mrn or reveal or text:
        audit_now(
            request,
            action="reveal" if reveal else "search",
            target_type="messages",
            target_id=mrn,
            reason=reason.strip() if reveal and reason else None,
            detail={
                "filters": {k: v for k, v in request.query_params.items() if k not in ("reveal", "reason")},
                "chart_mrns": len(page.mrns),
                "ids": [r.id for r in rows][:500],
            },
            patient=page.mrns[0] if page.mrns else None,
        )
    if reveal and rows:  # unmasked: one entry per patient whose messages this page listed
        audit_listed(request, [r.patient_id for r in rows], action="listed", target_type="message")
    out = []
    for r in rows:
        d = dict(r._mapping)
        if not reveal:
            d["patient_id"] = mask(d["patient_id"])
        out.append(MessageSummary(**d, snippet=snippets.get(r.id)))
    return MessagePage(
        messages=out,
        next_before_id=page.older,
        limit=limit,
        revealed=reveal,
        chart_mrns=len(page.mrns),
        partial=page.partial,
    )


class SelectedMessages(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=500)
    reason: str | None = Field(None, max_length=1000)


class ReprocessSelected(SelectedMessages):
    destination: str = Field(min_length=1, max_length=64)


class ReprocessOutcome(BaseModel):
    queued: dict[int, int]  # message id -> new work item id
    refused: dict[int, str]  # message id -> why


@router.post(
    "/api/messages/export",
    response_class=Response,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {"application/hl7-v2": {}},
            "description": "the messages as received, one .hl7 file",
        },
    },
)
def export_messages(request: Request, body: SelectedMessages, user=Depends(require(*MESSAGES))) -> Response:
    """The selected messages as received (raw, unmasked), one ``.hl7`` file: a reveal, so
    ``reason`` is required (400) and the role must be allowed to reveal messages (403); one
    audit row per message."""
    data, name = message_actions.export_file(request, user, body.ids, body.reason)
    return Response(
        data,
        media_type="application/hl7-v2",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/api/messages/reprocess", response_model=ReprocessOutcome, responses=ERROR_RESPONSES)
def reprocess_messages(
    request: Request, body: ReprocessSelected, user=Depends(require(*MESSAGES))
) -> ReprocessOutcome:
    """Queue each selected message again to ``destination`` (each audited, each in its own
    transaction); the ones that cannot be (unknown, rejected, already queued) are listed with why."""
    result = message_actions.reprocess(request, user, body.ids, body.destination, body.reason)
    return ReprocessOutcome(queued=result.queued, refused=result.refused)


# -- detail -----------------------------------------------------------------------------------------


def _reveal(user, kind: str, reveal: bool, reason: str | None) -> str | None:
    """``masking.check_reveal`` for the API: the reason of a granted reveal, or None; 400/403."""
    try:
        return masking.check_reveal(getattr(user, "role", None), kind, reveal, reason)
    except masking.RevealRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None


def _words(name: str | None) -> str | None:
    return name.replace("_", " ").title() if name else None


@functools.lru_cache(maxsize=64)
def _version(version: str | None) -> str:
    from hl7apy import SUPPORTED_LIBRARIES

    v = (version or "").strip()
    while v and v not in SUPPORTED_LIBRARIES:
        v = v.rpartition(".")[0]
    return v or "2.5"


@functools.lru_cache(maxsize=2048)
def segment_fields(segment: str, version: str) -> dict[int, dict]:
    """{field number: {name, description, datatype, table, components: [{name, description,
    datatype}]}} from hl7apy's reference tables; {} for unknown (Z-) segments."""
    from hl7apy import load_reference

    if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", segment or ""):
        return {}
    try:
        ref = load_reference(segment, "Segment", version)
    except Exception:  # hl7apy raises several kinds for unknown segments
        return {}
    out: dict[int, dict] = {}
    for child in ref[1]:
        fid, spec = child[0], child[1]
        try:
            n = int(fid.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        comps = []
        if spec[0] == "sequence":
            comps = [{"name": c[1][3], "description": _words(c[1][3]), "datatype": c[1][2]} for c in spec[1]]
        out[n] = {
            "name": spec[3],
            "description": _words(spec[3]),
            "datatype": spec[2],
            "table": spec[4],
            "components": comps,
        }
    return out


def describe(text: str, version: str | None) -> list[dict]:
    """Segments with named fields (non-empty fields only), components split and unescaped."""
    msg = parse(text)
    v = _version(version)
    out = []
    for seg in msg.segments:
        meta = segment_fields(seg.name, v)
        fields = []
        for n in range(1, len(seg.fields)):
            raw = seg.fields[n]
            if raw == "":
                continue
            m = meta.get(n, {})
            field: dict[str, Any] = {
                "position": n,
                "id": f"{seg.name}-{n}",
                "name": m.get("name"),
                "description": m.get("description"),
                "datatype": m.get("datatype"),
                "table": m.get("table"),
                "value": raw,
            }
            if not (seg.name == "MSH" and n in (1, 2)):
                comps = m.get("components") or []
                field["repetitions"] = [
                    [
                        {
                            "position": i + 1,
                            "name": comps[i]["name"] if i < len(comps) else None,
                            "value": msg.unescape(c),
                        }
                        for i, c in enumerate(msg.components(rep))
                    ]
                    for rep in msg.repetitions(raw)
                ]
            fields.append(field)
        out.append({"name": seg.name, "sequence": seg.sequence, "fields": fields})
    return out


def _text(raw: bytes | None, fallback: str = DEFAULT_FALLBACK_CODEC) -> str | None:
    if raw is None:
        return None
    try:
        return decode(raw, fallback).text
    except (ParseError, LookupError, ValueError):
        return raw.decode("utf-8", "replace")


def _lines(text: str | None) -> str | None:
    return (
        None
        if text is None
        else text.replace("\r\n", "\r").replace("\n", "\r").replace("\r", "\n").strip("\n")
    )


class Attempt(BaseModel):
    at: UtcDateTime
    outcome: str
    error: str | None


class WorkItemHistory(BaseModel):
    id: int
    destination: str
    status: str
    attempts: int
    reason: str | None
    error_location: str | None
    last_error: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    next_attempt_at: UtcDateTime
    history: list[Attempt]


class AuditRow(BaseModel):
    at: UtcDateTime
    user: str
    action: str
    target_id: str | None
    reason: str | None
    detail: str | None


class MessageDetail(BaseModel):
    summary: MessageSummary
    warnings: list[str]  # found on receipt: character set (MSH-18), truncated values (v2.7 MSH-2)
    raw: str  # segments separated by newlines
    segments: list[dict[str, Any]] | None
    parse_error: str | None
    ack: str | None
    work_items: list[WorkItemHistory]
    resubmitted_as: list[int]
    actions: list[AuditRow]
    revealed: bool = False  # identifying fields and clinical text shown (a reveal with a reason)


@router.get("/api/messages/{message_id}", response_model=MessageDetail, responses=ERROR_RESPONSES)
def get_message(
    request: Request,
    message_id: int = Path(ge=1, le=MAX_ID),
    reveal: bool = False,
    reason: str | None = Query(None, max_length=1000, description="why the message is revealed"),
    _user=Depends(require(*MESSAGES)),
) -> MessageDetail:
    """Raw text, parsed segments with field names, the ACK sent and the processing history.
    Identifying fields and clinical text (``masking.MESSAGE_FIELDS``) are masked unless
    ``reveal=true`` with a ``reason``, audited as a reveal. Every view is audited."""
    why = _reveal(_user, masking.MESSAGE, reveal, reason)
    with request.app.state.reader.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
        if row is None:
            raise HTTPException(status_code=404, detail=f"no message {message_id}")
        items = conn.execute(
            select(work_items).where(work_items.c.message_id == message_id).order_by(work_items.c.id)
        ).all()
        ids = [i.id for i in items]
        attempts = (
            conn.execute(
                select(work_attempts).where(work_attempts.c.item_id.in_(ids)).order_by(work_attempts.c.id)
            ).all()
            if ids
            else []
        )
        children = conn.scalars(
            select(messages.c.id).where(messages.c.parent_id == message_id).order_by(messages.c.id)
        ).all()
        acts = (
            conn.execute(
                select(audit)
                .where(audit.c.target_type == "work_item", audit.c.target_id.in_([str(i) for i in ids]))
                .order_by(audit.c.id)
            ).all()
            if ids
            else []
        )
    audit_now(request, action="view", target_type="message", target_id=message_id, patient=row.patient_id)
    if why is not None:
        with request.app.state.engine.begin() as conn:
            masking.record_reveal(
                conn,
                user=_user.name,
                target_type="message",
                target_id=message_id,
                reason=why,
                now=clock(request),
                patient=row.patient_id,
            )
    text = _text(row.raw, fallback_codec_for(request.app.state.channels, row.channel))
    segments, perr = None, None
    if len(text) > MAX_DESCRIBE_CHARS:
        perr = f"message of {len(text)} characters: too large to show field by field; see raw"
    else:
        try:
            segments = masking.described_segments(describe(text, row.version), why is not None)
        except ParseError as exc:
            perr = str(exc)
    by_item: dict[int, list] = {}
    for a in attempts:
        by_item.setdefault(a.item_id, []).append(Attempt(at=a.at, outcome=a.outcome, error=a.error))
    summary = MessageSummary(**{k: row._mapping[k] for k in MessageSummary.model_fields if k != "snippet"})
    if why is None:
        summary.patient_id = mask(summary.patient_id)
    return MessageDetail(
        summary=summary,
        warnings=split_warnings(row.warning),
        raw=masking.message_text(text, why is not None),
        segments=segments,
        parse_error=perr,
        revealed=why is not None,
        ack=_lines(_text(row.ack)),
        work_items=[
            WorkItemHistory(
                **{k: i._mapping[k] for k in WorkItemHistory.model_fields if k != "history"},
                history=by_item.get(i.id, []),
            )
            for i in items
        ],
        resubmitted_as=list(children),
        actions=[
            AuditRow(
                at=a.at, user=a.user, action=a.action, target_id=a.target_id, reason=a.reason, detail=a.detail
            )
            for a in acts
        ],
    )
