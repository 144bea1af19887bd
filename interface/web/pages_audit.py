"""Console pages for auditors (roles auditor and admin): the audit log searched by user, action,
target, patient (MRN, merges resolved) and period, as a page or CSV; and "Who looked at this
patient" (``/patients/{mrn}/access``), the patient-centric access report linked from the chart,
with the patient banner. Actions, channels (``via``) and target types read in words
(``interface.rules.words``), the code on hover; the CSV keeps the codes and adds the words.
Looking at either is itself audited (``access_report``)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from interface.desk.users import User
from interface.rules import words
from interface.store import audit as store_audit
from interface.web import auth, identity_view
from interface.web.pages import AUDIT, MAX_ID, _clean, _parse_dt, _qs, _reader, _render, html_errors

router = APIRouter(include_in_schema=False)

PAGE = 100
CSV_MAX = 100_000  # one export at most (narrow the period for more)


def _filters(who, action, target_type, target_id, patient, since, until) -> dict:
    return {
        "who": _clean(who, 128),
        "action": _clean(action, 64),
        "target_type": _clean(target_type, 32),
        "target_id": _clean(target_id, 128),
        "patient": _clean(patient, 128),
        "since": _clean(since, 40),
        "until": _clean(until, 40),
    }


def _entries(request: Request, params: dict, *, before=None, after=None, limit: int | None = PAGE):
    """(rows, the MRNs searched) for the filters; times read in the hospital's zone."""
    since = _parse_dt(params["since"], "since")
    until = _parse_dt(params["until"], "until")
    with _reader(request).connect() as conn:
        mrns = store_audit.patient_mrns(conn, params["patient"]) if params["patient"] else None
        rows = store_audit.report(
            conn,
            mrns=mrns,
            user=params["who"],
            action=params["action"],
            target_type=params["target_type"],
            target_id=params["target_id"],
            since=since,
            until=until,
            before_id=before,
            after_id=after,
            limit=None if limit is None else limit + 1,
        )
    return rows, mrns


def _page(rows: list[dict], before, after) -> tuple[list[dict], int | None, int | None]:
    """One page newest first, and the cursors for older and newer pages."""
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    if after is not None:
        rows = list(reversed(rows))
        return rows, (rows[-1]["id"] if rows else None), (rows[0]["id"] if rows and more else None)
    older = rows[-1]["id"] if rows and more else None
    newer = rows[0]["id"] if rows and before is not None else None
    return rows, older, newer


def _audit_looked(request: Request, params: dict, what: str) -> None:
    auth.audit_now(
        request,
        action="access_report",
        target_type="audit",
        detail={"what": what, **{k: v for k, v in params.items() if v and k != "patient"}},
        patient=params.get("patient"),
    )


def _csv(rows: list[dict], name: str) -> Response:
    return Response(
        content=store_audit.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/audit", response_class=HTMLResponse)
@html_errors
def audit_page(
    request: Request,
    user: User = Depends(AUDIT),
    who: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    patient: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = Query(None, ge=1, le=MAX_ID),
    after: int | None = Query(None, ge=0, le=MAX_ID),
):
    """The audit log, newest first, filtered; the CSV link exports the same filters."""
    params = _filters(who, action, target_type, target_id, patient, since, until)
    rows, mrns = _entries(request, params, before=before, after=after)
    rows, older, newer = _page(rows, before, after)
    if params["patient"] or params["who"]:
        _audit_looked(request, params, "audit log")
    return _render(
        request,
        "audit.html",
        {
            "rows": rows,
            "params": params,
            "mrns": mrns,
            "actions": words.TABLES["audit_action"],
            "targets": words.TABLES["audit_target"],
            "csv": _qs(params),
            "older": _qs(params, before=older) if older else None,
            "newer": _qs(params, after=newer) if newer else None,
        },
    )


@router.get("/audit.csv")
@html_errors
def audit_csv(
    request: Request,
    user: User = Depends(AUDIT),
    who: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    patient: str | None = None,
    since: str | None = None,
    until: str | None = None,
):
    """The filtered audit log as CSV (at most CSV_MAX entries, newest first)."""
    params = _filters(who, action, target_type, target_id, patient, since, until)
    rows, _mrns = _entries(request, params, limit=CSV_MAX - 1)
    _audit_looked(request, params, "audit log csv")
    return _csv(rows, "audit.csv")


@router.get("/patients/{mrn}/access", response_class=HTMLResponse)
@html_errors
def access_report(
    request: Request,
    mrn: str,
    user: User = Depends(AUDIT),
    since: str | None = None,
    until: str | None = None,
    who: str | None = None,
    before: int | None = Query(None, ge=1, le=MAX_ID),
    after: int | None = Query(None, ge=0, le=MAX_ID),
):
    """Who looked at this patient: every view, search listing and change recorded against the
    patient's MRN or an MRN merged into their chart, newest first, with the banner."""
    params = _filters(who, None, None, None, mrn, since, until)
    rows, mrns = _entries(request, params, before=before, after=after)
    rows, older, newer = _page(rows, before, after)
    with _reader(request).connect() as conn:
        patient = identity_view.banner(conn, (mrns or [mrn])[0])
    _audit_looked(request, params, "access report")
    shown = {k: v for k, v in params.items() if k in ("since", "until", "who")}
    base = "/patients/" + quote(mrn, safe="") + "/access"
    return _render(
        request,
        "access_report.html",
        {
            "rows": rows,
            "mrn": mrn,
            "mrns": mrns,
            "patient": patient,
            "banner_none": "this MRN names no chart",
            "params": shown,
            "base": base,
            "csv": _qs(shown),
            "older": _qs(shown, before=older) if older else None,
            "newer": _qs(shown, after=newer) if newer else None,
            "users": sorted({r["user"] for r in rows}),
        },
    )


@router.get("/patients/{mrn}/access.csv")
@html_errors
def access_report_csv(
    request: Request,
    mrn: str,
    user: User = Depends(AUDIT),
    since: str | None = None,
    until: str | None = None,
    who: str | None = None,
):
    """The access report as CSV."""
    params = _filters(who, None, None, None, mrn, since, until)
    rows, _mrns = _entries(request, params, limit=CSV_MAX - 1)
    _audit_looked(request, params, "access report csv")
    return _csv(rows, f"access-{auth.clock(request):%Y%m%d}.csv")
