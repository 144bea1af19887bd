"""The audit trail for auditors (roles auditor and admin; docs/audit.md):

* ``GET /api/audit?patient=&user=&via=&action=&target_type=&target_id=&since=&until=&before_id=&limit=``
  – entries newest first, keyset paged; ``patient`` is an MRN with merges resolved (the chart it
  lives under and every MRN merged into that chart);
* ``GET /api/audit.csv`` (the same filters) – the entries as CSV, at most ``CSV_MAX``;
* ``GET /api/audit/verify`` – the hash chain's check (``interface audit verify``).

Reading the trail by patient or by user is itself audited (``access_report``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from interface.desk.users import User
from interface.store import audit as store_audit
from interface.web.auth import AUDIT, ERROR_RESPONSES, MAX_ID, UtcDateTime, audit_now, require, utc_param

router = APIRouter(tags=["audit"])

CSV_MAX = 100_000


class AuditEntry(BaseModel):
    id: int
    at: UtcDateTime
    user: str
    via: str | None  # console, api, fhir, cli; null: the engine itself
    action: str
    target_type: str | None
    target_id: str | None
    patient: str | None  # the MRN the entry is about, as written
    reason: str | None
    detail: str | None


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before_id: int | None
    patient_mrns: list[str] | None = None  # the MRNs a patient= search covered (merges resolved)


class ChainCheck(BaseModel):
    ok: bool
    checked: int
    before_chain: int
    seq: int
    head_hash: str
    broken_id: int | None
    broken_seq: int | None
    problem: str | None


def _query(
    request: Request,
    patient: str | None,
    user: str | None,
    via: str | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
):
    with request.app.state.reader.connect() as conn:
        mrns = store_audit.patient_mrns(conn, patient) if patient else None
        rows = store_audit.report(
            conn,
            mrns=mrns,
            user=user,
            action=action,
            target_type=target_type,
            target_id=target_id,
            via=via,
            since=utc_param(since, "since") if since is not None else None,
            until=utc_param(until, "until") if until is not None else None,
            before_id=before_id,
            limit=limit,
        )
    if patient or user:
        audit_now(
            request,
            action="access_report",
            target_type="audit",
            detail={
                "user": user,
                "since": since,
                "until": until,
                "format": "csv" if limit == CSV_MAX else "json",
            },
            patient=patient,
        )
    return rows, mrns


_Via = Literal["console", "api", "fhir", "cli"]


@router.get("/api/audit", response_model=AuditPage, responses=ERROR_RESPONSES)
def audit_log(
    request: Request,
    _user: User = Depends(require(*AUDIT)),
    patient: str | None = Query(None, max_length=128, description="MRN; merged charts included"),
    user: str | None = Query(None, max_length=128),
    via: _Via | None = None,
    action: str | None = Query(None, max_length=64),
    target_type: str | None = Query(None, max_length=32),
    target_id: str | None = Query(None, max_length=128),
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(100, ge=1, le=1000),
) -> AuditPage:
    """The audit trail, newest first (auditor, admin). Page with ``before_id=next_before_id``."""
    rows, mrns = _query(
        request, patient, user, via, action, target_type, target_id, since, until, before_id, limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        entries=[AuditEntry(**r) for r in rows],
        next_before_id=rows[-1]["id"] if more else None,
        patient_mrns=mrns,
    )


@router.get(
    "/api/audit.csv",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def audit_csv(
    request: Request,
    _user: User = Depends(require(*AUDIT)),
    patient: str | None = Query(None, max_length=128, description="MRN; merged charts included"),
    user: str | None = Query(None, max_length=128),
    via: _Via | None = None,
    action: str | None = Query(None, max_length=64),
    target_type: str | None = Query(None, max_length=32),
    target_id: str | None = Query(None, max_length=128),
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    """The same entries as CSV (newest first; at most 100,000: narrow the period for more)."""
    rows, _mrns = _query(
        request, patient, user, via, action, target_type, target_id, since, until, None, CSV_MAX
    )
    return Response(
        content=store_audit.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"', "Cache-Control": "no-store"},
    )


@router.get("/api/audit/verify", response_model=ChainCheck, responses=ERROR_RESPONSES)
def audit_verify(request: Request, _user: User = Depends(require(*AUDIT))) -> ChainCheck:
    """Recompute the hash chain; ``ok`` false names the first broken entry."""
    with request.app.state.reader.connect() as conn:
        v = store_audit.verify(conn)
    return ChainCheck(**v.__dict__)
