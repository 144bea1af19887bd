"""Read API for charts: ``GET /api/patients/{mrn}``, ``GET /api/patients/{mrn}/history`` (the
change history, newest first, keyset paged) and ``GET /api/patients?family=&given=&birth_date=``.

The SSN, identifiers other than the MRN, insurance member ids and their history values are
masked as on the chart page (``interface.desk.masking``) unless ``reveal=true`` with a ``reason``; a
reveal is audited with its reason (the router's ``audit_access`` audits every view).

Uses ``request.app.state.reader`` (``db.read_only_engine``: on SQLite a snapshot that never takes
the write lock, with ``query_only``); every request runs in a transaction that is rolled back
(and, on PostgreSQL, is declared read-only), so a read can never change a chart.

The chart comes masked by ``interface.desk.masking`` (national id, identifiers other than the MRN,
insurance member ids), as in the console, unless ``?reveal=true&reason=...`` by a role that may
reveal charts; the reveal is audited with its reason.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, Query, Request

from interface.desk import masking
from interface.store import chart_log, chart_read
from interface.web.api.patient_models import (
    HistoryPage,
    PatientChart,
    PatientSearchPage,
)
from interface.web.auth import MAX_ID, audit_listed, clock
from interface.web.reading import reading as _reading

router = APIRouter()

_BIRTH_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?\Z")


_REVEAL_REASON = Query(None, max_length=1000, description="why identifiers are revealed")


def _revealing(request: Request, mrn: str, reveal: bool, reason: str | None) -> bool:
    """The one masking rule (``interface.desk.masking``): 400 for a reveal without a reason, 403 for a
    role that may not reveal; a granted reveal is audited (the view itself is audited by the
    router's dependency)."""
    user = getattr(request.state, "user", None)
    try:
        why = masking.check_reveal(getattr(user, "role", None), masking.CHART, reveal, reason)
    except masking.RevealRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    if why is None:
        return False
    with request.app.state.engine.begin() as conn:
        masking.record_reveal(
            conn,
            user=user.name,
            target_type="patient",
            target_id=mrn,
            reason=why,
            now=clock(request),
            patient=mrn,
        )
    return True


@router.get("/api/patients/{mrn}", response_model=PatientChart)
def get_patient(
    mrn: str, request: Request, reveal: bool = False, reason: str | None = _REVEAL_REASON
) -> dict:
    """The chart record; a merged-away MRN answers with the survivor's chart (``requested_mrn``,
    ``merged_into``). Visits carry their location timeline (``locations``: location, from, to).
    Identifiers masked unless ``reveal=true`` with a ``reason`` (audited). 404 when the MRN is
    unknown."""
    with _reading(request) as conn:
        record = chart_read.get_chart(conn, mrn)
    if record is None:
        raise HTTPException(status_code=404, detail="no patient with this MRN")
    revealed = _revealing(request, mrn, reveal, reason)
    return {**masking.chart(record, revealed), "revealed": revealed}


@router.get("/api/patients/{mrn}/history", response_model=HistoryPage)
def get_patient_history(
    mrn: str,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    reveal: bool = False,
    reason: str | None = _REVEAL_REASON,
) -> dict:
    """What each message changed on the chart (merged-in patients included), newest first: one
    page of ``limit`` entries; the next page is ``before_id=next_before_id``. 404 when the MRN is
    unknown."""
    with _reading(request) as conn:
        pid = chart_log.patient_id(conn, mrn)
        if pid is None:
            raise HTTPException(status_code=404, detail="no patient with this MRN")
        entries, next_before = chart_log.history_page(conn, pid, limit=limit, before_id=before_id)
    revealed = _revealing(request, mrn, reveal, reason)
    if not revealed:
        entries = masking.history_rows(entries, False)
    return {
        "mrn": mrn,
        "entries": entries,
        "next_before_id": next_before,
        "limit": limit,
        "revealed": revealed,
    }


@router.get("/api/patients", response_model=PatientSearchPage)
def find_patients(
    request: Request,
    family: str | None = None,
    given: str | None = None,
    birth_date: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000_000),
) -> dict:
    """Patients whose family/given names start with the text given (case-insensitive) and whose
    birth date starts with ``birth_date`` (YYYY, YYYY-MM or YYYY-MM-DD). 400 without a criterion."""
    family = (family or "").strip() or None
    given = (given or "").strip() or None
    birth_date = (birth_date or "").strip() or None
    if not (family or given or birth_date):
        raise HTTPException(status_code=400, detail="give at least one of family, given, birth_date")
    if birth_date and not _BIRTH_DATE.match(birth_date):
        raise HTTPException(status_code=400, detail="birth_date must be YYYY, YYYY-MM or YYYY-MM-DD")
    with _reading(request) as conn:
        found = chart_read.search_patients(
            conn, family=family, given=given, birth_date=birth_date, limit=limit, offset=offset
        )
    audit_listed(request, [p["mrn"] for p in found], action="listed")  # each patient on this page
    return {"patients": found, "limit": limit, "offset": offset}
