"""Read API for charts: ``GET /api/patients/{mrn}`` and ``GET /api/patients?family=&given=&birth_date=``.

Uses ``request.app.state.reader`` (``db.read_only_engine``: on SQLite a snapshot that never takes
the write lock, with ``query_only``); every request runs in a transaction that is rolled back
(and, on PostgreSQL, is declared read-only), so a read can never change a chart.

The chart comes masked by ``interface.masking`` (national id, identifiers other than the MRN,
insurance member ids), as in the console, unless ``?reveal=true&reason=...`` by a role that may
reveal charts; the reveal is audited with its reason.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from fastapi import APIRouter, HTTPException, Query, Request
from sqlalchemy.engine import Connection

from . import chart, masking

router = APIRouter()

_BIRTH_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?\Z")


@contextmanager
def _reading(request: Request) -> Iterator[Connection]:
    with request.app.state.reader.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(postgresql_readonly=True)
        try:
            yield conn
        finally:
            conn.rollback()


@router.get("/api/patients/{mrn}")
def get_patient(mrn: str, request: Request, reveal: bool = False,
                reason: str | None = Query(None, max_length=1000, description="why identifiers are revealed")) -> dict:
    """The chart record; a merged-away MRN answers with the survivor's chart (``requested_mrn``,
    ``merged_into``). 404 when the MRN is unknown. Identifiers masked unless ``reveal=true`` with
    a ``reason`` (audited)."""
    user = getattr(request.state, "user", None)
    try:
        why = masking.check_reveal(getattr(user, "role", None), masking.CHART, reveal, reason)
    except masking.RevealRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    with _reading(request) as conn:
        record = chart.get_chart(conn, mrn)
    if record is None:
        raise HTTPException(status_code=404, detail="no patient with this MRN")
    if why is not None:
        from .auth import clock

        with request.app.state.engine.begin() as conn:
            masking.record_reveal(conn, user=user.name, target_type="patient", target_id=mrn, reason=why,
                                  now=clock(request))
    return masking.chart(record, why is not None)


@router.get("/api/patients")
def find_patients(request: Request, family: str | None = None, given: str | None = None,
                  birth_date: str | None = None, limit: int = Query(50, ge=1, le=500),
                  offset: int = Query(0, ge=0, le=1_000_000_000)) -> dict:
    """Patients whose family/given names start with the text given (case-insensitive) and whose
    birth date starts with ``birth_date`` (YYYY, YYYY-MM or YYYY-MM-DD). 400 without a criterion."""
    family = (family or "").strip() or None
    given = (given or "").strip() or None
    birth_date = (birth_date or "").strip() or None
    if not (family or given or birth_date):
        raise HTTPException(status_code=400,
                            detail="give at least one of family, given, birth_date")
    if birth_date and not _BIRTH_DATE.match(birth_date):
        raise HTTPException(status_code=400,
                            detail="birth_date must be YYYY, YYYY-MM or YYYY-MM-DD")
    with _reading(request) as conn:
        found = chart.search_patients(conn, family=family, given=given, birth_date=birth_date,
                                      limit=limit, offset=offset)
    return {"patients": found, "limit": limit, "offset": offset}
