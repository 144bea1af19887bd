"""The error queue over HTTP: list, show, retry, discard (with a reason), resubmit an edited
copy, and bulk retry/discard on exactly the items named (or matched by a filter, capped).

The actions are :mod:`interface.store.workqueue`'s clerk actions (shared with ``interface errors``); each
runs in its own transaction and writes an audit row stamped with the acting user. Patient keys are
masked in lists (``mrn:****1234``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from interface.desk import errorqueue, identity_desk
from interface.desk.users import User
from interface.rules import words
from interface.store import audit as store_audit
from interface.store import workqueue
from interface.store.schema import messages, work_attempts, work_items
from interface.web.auth import (
    CHARTS,
    ERROR_RESPONSES,
    ERRORS,
    MAX_ID,
    UtcDateTime,
    audit_now,
    clock,
    mask,
    require,
)

router = APIRouter(tags=["errors"])

ITEM_STATUSES = ("pending", "held", "error", "done", "discarded")
BULK_MAX = 1000


def _no_nul(v: str | None) -> str | None:
    if v is not None and "\x00" in v:
        raise ValueError("must not contain NUL characters")
    return v


def _reason(v: str) -> str:
    v = v.strip()
    if not v:
        raise ValueError("a reason is required")
    return v


Reason = Annotated[
    str, Field(min_length=1, max_length=2000), AfterValidator(_no_nul), AfterValidator(_reason)
]


class ErrorItem(BaseModel):
    id: int
    message_id: int
    channel: str
    destination: str
    key: str
    status: str
    attempts: int
    reason: str | None
    error_location: str | None
    last_error: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    next_attempt_at: UtcDateTime
    control_id: str | None
    message_type: str | None
    received_at: UtcDateTime
    # what a clerk reads (interface.rules.words), and the item's place in its patient's line
    status_text: str = ""
    reason_text: str = ""
    waiting_behind: int = Field(
        0, description="unfinished later items sharing one of its ordering keys (they wait for it)"
    )
    past_error: str | None = Field(
        None,
        description="a done or discarded item's earlier error (history; last_error is then null)",
    )


class ErrorPage(BaseModel):
    items: list[ErrorItem]
    next_before_id: int | None


class Attempt(BaseModel):
    at: UtcDateTime
    outcome: str
    error: str | None


class ErrorDetail(ErrorItem):
    history: list[Attempt]


def _statuses(value: str) -> list[str]:
    out = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in out if s not in ITEM_STATUSES]
    if bad or not out:
        raise HTTPException(
            status_code=400, detail=f"status: comma-separated from {', '.join(ITEM_STATUSES)}"
        )
    return out


def _query(
    channel=None, reason=None, statuses=("error", "held"), destination=None, before_id=None, max_id=None
):
    q = (
        select(work_items, messages.c.control_id, messages.c.message_type, messages.c.received_at)
        .join(messages, messages.c.id == work_items.c.message_id)
        .order_by(work_items.c.id.desc())
    )
    q = errorqueue.filter_items(
        q, status=statuses, channel=channel, reason=reason, destination=destination, max_id=max_id
    )
    if before_id is not None:
        q = q.where(work_items.c.id < before_id)
    return q


_COMPUTED = ("status_text", "reason_text", "waiting_behind", "past_error")


def _item(row, reveal: bool = False, waiting: int = 0) -> dict:
    d = {k: row._mapping[k] for k in ErrorItem.model_fields if k not in _COMPUTED}
    if not reveal:
        d["key"] = mask(d["key"])
    d["status_text"] = words.word("item_status", row.status)
    d["reason_text"] = words.reason_text(row.reason)
    d["waiting_behind"] = waiting
    if row.status in ("done", "discarded"):  # fixed or given up: the error is no longer current
        d["past_error"], d["last_error"] = d["last_error"], None
    return d


@router.get("/api/errors", response_model=ErrorPage, responses=ERROR_RESPONSES)
def list_errors(
    request: Request,
    _user=Depends(require(*ERRORS)),
    channel: str | None = Query(None, max_length=64),
    reason: str | None = Query(None, max_length=64, description="unknown_patient, missing_field..."),
    status: str = Query(
        "error,held",
        max_length=100,
        description="comma-separated from pending, held, error, done, discarded; by default the "
        "failed and the held (unknown patient waiting for its ADT) items",
    ),
    destination: str | None = Query(None, max_length=64),
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(100, ge=1, le=1000),
    reveal: bool = False,
    why: str | None = Query(None, max_length=500, description="why patient keys are revealed"),
) -> ErrorPage:
    """Error queue items, newest first (by default status error and held). Patient keys are
    masked unless ``reveal=true`` with ``why`` (audited)."""
    if reveal and not (why or "").strip():
        raise HTTPException(status_code=400, detail="reveal=true needs a reason (why=...)")
    q = _query(channel, reason, _statuses(status), destination, before_id).limit(limit + 1)
    with request.app.state.reader.connect() as conn:
        rows = conn.execute(q).all()
        more = len(rows) > limit
        rows = rows[:limit]
        behind = workqueue.waiting_behind(conn, [r.id for r in rows])
    if reveal:
        audit_now(
            request,
            action="reveal",
            target_type="work_items",
            reason=why.strip(),
            detail={"ids": [r.id for r in rows]},
        )
    return ErrorPage(
        items=[ErrorItem(**_item(r, reveal, behind[r.id])) for r in rows],
        next_before_id=rows[-1].id if more else None,
    )


@router.get("/api/errors/{item_id}", response_model=ErrorDetail, responses=ERROR_RESPONSES)
def get_error(
    request: Request, item_id: int = Path(ge=1, le=MAX_ID), _user=Depends(require(*ERRORS))
) -> ErrorDetail:
    """One work item with its attempt history (the message itself: ``/api/messages/{message_id}``)."""
    with request.app.state.reader.connect() as conn:
        row = conn.execute(_query(statuses=ITEM_STATUSES).where(work_items.c.id == item_id)).first()
        if row is None:
            raise HTTPException(status_code=404, detail=f"no work item {item_id}")
        hist = conn.execute(
            select(work_attempts).where(work_attempts.c.item_id == item_id).order_by(work_attempts.c.id)
        ).all()
        behind = workqueue.waiting_behind(conn, [item_id])
        patient = store_audit.message_patient(conn, row.message_id)
    audit_now(request, action="view", target_type="work_item", target_id=item_id, patient=patient)
    return ErrorDetail(
        **_item(row, waiting=behind[item_id]),
        history=[Attempt(at=h.at, outcome=h.outcome, error=h.error) for h in hist],
    )


class ActionResult(BaseModel):
    id: int
    action: str
    status: str
    message_id: int | None = None


class DiscardBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class ResubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    raw: Annotated[str, Field(min_length=8, max_length=4_000_000), AfterValidator(_no_nul)]
    reason: Annotated[str | None, Field(max_length=2000), AfterValidator(_no_nul)] = None


def _run(request: Request, item_id: int, action: str, fn) -> ActionResult:
    try:
        with request.app.state.engine.begin() as conn:
            extra = fn(conn)
            status = conn.execute(select(work_items.c.status).where(work_items.c.id == item_id)).scalar_one()
    except errorqueue.ActionError as exc:
        code = 404 if str(exc).startswith("no work item") else 409
        raise HTTPException(status_code=code, detail=str(exc)) from None
    return ActionResult(id=item_id, action=action, status=status, message_id=extra)


ACTION_RESPONSES = {**ERROR_RESPONSES, 409: {"description": "the item is not in a state that allows this"}}


@router.post("/api/errors/{item_id}/retry", response_model=ActionResult, responses=ACTION_RESPONSES)
def retry(
    request: Request, item_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(require(*ERRORS))
) -> ActionResult:
    """Put an error or held item back in the queue now (it keeps its place for its patient)."""
    return _run(
        request,
        item_id,
        "retry",
        lambda conn: errorqueue.retry_item(conn, item_id, user=user.name, now=clock(request)),
    )


@router.post("/api/errors/{item_id}/discard", response_model=ActionResult, responses=ACTION_RESPONSES)
def discard(
    request: Request,
    body: DiscardBody,
    item_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*ERRORS)),
) -> ActionResult:
    """Give up on an item, with a reason; the patient's later messages flow again."""
    return _run(
        request,
        item_id,
        "discard",
        lambda conn: errorqueue.discard_item(
            conn, item_id, user=user.name, reason=body.reason, now=clock(request)
        ),
    )


@router.post("/api/errors/{item_id}/resubmit", response_model=ActionResult, responses=ACTION_RESPONSES)
def resubmit(
    request: Request,
    body: ResubmitBody,
    item_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*ERRORS)),
) -> ActionResult:
    """Store an edited copy (segments separated by CR or newlines) as a new message linked to the
    original, and queue it in the failed item's place. Returns the new ``message_id``."""
    raw = body.raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r").encode("utf-8")
    return _run(
        request,
        item_id,
        "resubmit",
        lambda conn: errorqueue.resubmit_item(
            conn,
            item_id,
            raw,
            user=user.name,
            now=clock(request),
            reason=body.reason.strip() if body.reason else None,
            channels=getattr(request.app.state, "channels", None),
        ),
    )


class ReprocessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
    reason: Annotated[str | None, Field(max_length=2000), AfterValidator(_no_nul)] = None


@router.post("/api/messages/{message_id}/reprocess", response_model=ActionResult, responses=ACTION_RESPONSES)
def reprocess(
    request: Request,
    body: ReprocessBody,
    message_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*ERRORS)),
) -> ActionResult:
    """Queue a stored message again to one chosen destination of its channel (e.g. resend to a
    downstream system); the new item goes to the end of its patient's queue in that destination.
    Returns the new work item as ``id``."""
    try:
        with request.app.state.engine.begin() as conn:
            item_id = errorqueue.reprocess_message(
                conn,
                message_id,
                body.destination,
                channels=request.app.state.channels or [],
                user=user.name,
                now=clock(request),
                reason=body.reason,
            )
            status = conn.execute(select(work_items.c.status).where(work_items.c.id == item_id)).scalar_one()
    except errorqueue.ActionError as exc:
        code = 404 if str(exc).startswith("no message") else 409
        raise HTTPException(status_code=code, detail=str(exc)) from None
    return ActionResult(id=item_id, action="reprocess", status=status, message_id=message_id)


class BulkFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Annotated[str | None, Field(max_length=64), AfterValidator(_no_nul)] = None
    reason: Annotated[str | None, Field(max_length=64), AfterValidator(_no_nul)] = None
    destination: Annotated[str | None, Field(max_length=64), AfterValidator(_no_nul)] = None
    status: list[Literal["error", "held"]] = Field(default_factory=lambda: ["error"], min_length=1)
    max_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="only items up to this id: the newest the clerk saw"
    )


class BulkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["retry", "discard"]
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(None, min_length=1, max_length=BULK_MAX)
    filter: BulkFilter | None = None
    reason: Annotated[str | None, Field(max_length=2000), AfterValidator(_no_nul)] = None

    @model_validator(mode="after")
    def _check(self):
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ids or filter")
        if self.action == "discard" and not (self.reason or "").strip():
            raise ValueError("a reason is required to discard")
        return self


class BulkFailure(BaseModel):
    id: int
    error: str


class BulkResult(BaseModel):
    action: str
    succeeded: list[int]
    failed: list[BulkFailure]
    truncated: bool  # a filter matched more than the cap; run it again for the rest


@router.post("/api/errors/bulk", response_model=BulkResult, responses=ERROR_RESPONSES)
def bulk(request: Request, body: BulkBody, user: User = Depends(require(*ERRORS))) -> BulkResult:
    """Retry or discard exactly the listed items (or those a filter matches now, at most 1000,
    oldest first); each item in its own transaction, each audited. Items that cannot take the
    action are reported in ``failed``; the others are done."""
    truncated = False
    if body.ids is not None:
        ids = list(dict.fromkeys(body.ids))
    else:
        f = body.filter
        q = (
            _query(f.channel, f.reason, f.status, f.destination, max_id=f.max_id)
            .with_only_columns(work_items.c.id)
            .order_by(None)
            .order_by(work_items.c.id)
            .limit(BULK_MAX + 1)
        )
        with request.app.state.reader.connect() as conn:
            ids = list(conn.scalars(q))
        truncated = len(ids) > BULK_MAX
        ids = ids[:BULK_MAX]
    done, failed = [], []
    reason = (body.reason or "").strip()
    for item_id in ids:
        try:
            with request.app.state.engine.begin() as conn:
                if body.action == "retry":
                    errorqueue.retry_item(conn, item_id, user=user.name, now=clock(request))
                else:
                    errorqueue.discard_item(conn, item_id, user=user.name, reason=reason, now=clock(request))
            done.append(item_id)
        except errorqueue.ActionError as exc:
            failed.append(BulkFailure(id=item_id, error=str(exc)))
    return BulkResult(action=body.action, succeeded=done, failed=failed, truncated=truncated)


# ---------------------------------------------------------------------------------------------
# the identity desk: is this the right chart? (interface.desk.identity_desk, desk.candidates)


class FileAnywayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class FileToBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mrn: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
    reason: Annotated[str | None, Field(max_length=2000), AfterValidator(_no_nul)] = None


class Candidate(BaseModel):
    mrn: str
    family: str | None
    given: str | None
    birth_date: str | None
    sex: str | None
    score: int = Field(description="0-100: how alike the chart and the message's patient are")
    reasons: list[str]


class Difference(BaseModel):
    field: str
    label: str
    verdict: str = Field(description="mismatch (holds the message), tolerated (filed), noted (shown only)")
    why: str


class IdentityFinding(BaseModel):
    item_id: int
    mrn: str = Field(description="the chart the message would be filed to")
    status: str = Field(description="mismatch, filed_anyway, refiled, sent_back, superseded")
    message: dict = Field(description="the message's patient (masked unless revealed with a reason)")
    chart: dict = Field(description="the chart's patient: name, birth date, sex, MRN")
    differences: list[Difference]
    decided_by: str | None
    decided_at: UtcDateTime | None
    reason: str | None


_PERSON_SHOWN = ("family", "given", "middle", "birth_date", "sex", "mrn")


@router.get("/api/errors/{item_id}/identity", response_model=IdentityFinding, responses=ERROR_RESPONSES)
def identity_finding(
    request: Request,
    item_id: int = Path(ge=1, le=MAX_ID),
    _user=Depends(require(*CHARTS)),
    reveal: bool = False,
    why: str | None = Query(None, max_length=500, description="why the message's patient is revealed"),
) -> IdentityFinding:
    """What the identity check found for an ``identity_mismatch`` item: the message's patient and
    the chart's side by side, and each difference in words. The message side is masked unless
    ``reveal=true`` with ``why`` (audited); national ids and phones are never shown, only whether
    they agree."""
    from interface.desk.masking import MASK
    from interface.store import identity_check

    if reveal and not (why or "").strip():
        raise HTTPException(status_code=400, detail="reveal=true needs a reason (why=...)")
    with request.app.state.reader.connect() as conn:
        found = identity_check.review(conn, item_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"work item {item_id} has no identity finding")
    if reveal:
        audit_now(
            request,
            action="reveal",
            target_type="message",
            target_id=found["message_id"],
            reason=why.strip(),
            detail={"work_item": item_id, "identity": True},
        )
    detail = found["detail"]
    msg = {k: (detail.get("message") or {}).get(k) for k in _PERSON_SHOWN}
    if not reveal:
        msg = {k: (MASK if v else v) for k, v in msg.items()}
    return IdentityFinding(
        item_id=item_id,
        mrn=found["mrn"],
        status=found["status"],
        message=msg,
        chart={k: (detail.get("chart") or {}).get(k) for k in _PERSON_SHOWN},
        differences=[Difference(**d) for d in detail.get("differences") or []],
        decided_by=found["decided_by"],
        decided_at=found["decided_at"],
        reason=found["reason"],
    )


@router.get("/api/errors/{item_id}/candidates", response_model=list[Candidate], responses=ERROR_RESPONSES)
def candidates(
    request: Request,
    item_id: int = Path(ge=1, le=MAX_ID),
    _user=Depends(require(*CHARTS)),
    limit: int = Query(10, ge=1, le=50),
) -> list[Candidate]:
    """Charts that might be the item's patient, best first, each scored (name, birth date, sex,
    phone, address, national id last four) with its reasons in words."""
    from interface.desk import candidates as cand

    try:
        with request.app.state.reader.connect() as conn:
            found = cand.candidates(
                conn, item_id, channels=getattr(request.app.state, "channels", None), limit=limit
            )
    except errorqueue.ActionError as exc:
        code = 404 if str(exc).startswith("no work item") else 409
        raise HTTPException(status_code=code, detail=str(exc)) from None
    return [Candidate(**c) for c in found]


@router.post("/api/errors/{item_id}/file-anyway", response_model=ActionResult, responses=ACTION_RESPONSES)
def file_anyway(
    request: Request,
    body: FileAnywayBody,
    item_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*CHARTS)),
) -> ActionResult:
    """File an ``identity_mismatch`` item to the chart it named after all (reason required,
    audited); the identity check lets exactly this message through to that chart."""
    return _run(
        request,
        item_id,
        "file_anyway",
        lambda conn: identity_desk.file_anyway(
            conn, item_id, user=user.name, reason=body.reason, now=clock(request)
        ),
    )


def _file_to(request: Request, item_id: int, body: FileToBody, user: User, action: str) -> ActionResult:
    fn = identity_desk.refile if action == "refile" else identity_desk.file_to
    return _run(
        request,
        item_id,
        action,
        lambda conn: fn(
            conn,
            item_id,
            body.mrn.strip(),
            user=user.name,
            now=clock(request),
            channels=getattr(request.app.state, "channels", None) or [],
            reason=body.reason.strip() if body.reason else None,
        ),
    )


@router.post("/api/errors/{item_id}/file", response_model=ActionResult, responses=ACTION_RESPONSES)
def file_to(
    request: Request,
    body: FileToBody,
    item_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*CHARTS)),
) -> ActionResult:
    """File to this chart: a linked, resubmitted copy of the message with ``mrn`` written into
    PID-3 by the engine (the original kept); the copy passes through the identity check.
    Returns the copy's ``message_id``."""
    return _file_to(request, item_id, body, user, "file")


@router.post("/api/errors/{item_id}/refile", response_model=ActionResult, responses=ACTION_RESPONSES)
def refile(
    request: Request,
    body: FileToBody,
    item_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*CHARTS)),
) -> ActionResult:
    """An ``identity_mismatch`` item filed to the chart it should have named (as ``/file``)."""
    return _file_to(request, item_id, body, user, "refile")


@router.post("/api/errors/{item_id}/send-back", response_model=ActionResult, responses=ACTION_RESPONSES)
def send_back(
    request: Request,
    body: FileAnywayBody,
    item_id: int = Path(ge=1, le=MAX_ID),
    user: User = Depends(require(*CHARTS)),
) -> ActionResult:
    """Not ours to file: discard the item as "sent back to sender" with the reason (audited)."""
    return _run(
        request,
        item_id,
        "send_back",
        lambda conn: identity_desk.send_back(
            conn, item_id, user=user.name, reason=body.reason, now=clock(request)
        ),
    )
