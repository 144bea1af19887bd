"""Console page: ``/chart-prep``, the chart-prep worklist (interface.desk.chart_prep) — who is
coming in the next N days and what their chart still lacks. Viewing it is audited."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from interface.desk import chart_prep
from interface.desk.users import User
from interface.rules.chart_prep import settings_or_default
from interface.web import auth
from interface.web.pages import CHARTS, _clean, _now, _reader, _render, html_errors

router = APIRouter(include_in_schema=False)


def _settings(request: Request):
    found = getattr(request.app.state, "chart_prep_settings", None)
    if found is None:
        found = request.app.state.chart_prep_settings = settings_or_default()
    return found


@router.get("/chart-prep", response_class=HTMLResponse)
@html_errors
def chart_prep_page(
    request: Request, user: User = Depends(CHARTS), days: str | None = None, start: str | None = None
):
    settings = _settings(request)
    days_text, start_text = _clean(days, 8), _clean(start, 10)
    n = settings.default_days
    if days_text is not None:
        if not days_text.isdigit() or not 0 <= int(days_text) <= chart_prep.MAX_DAYS:
            raise HTTPException(
                status_code=400, detail=f"Days must be a number from 0 to {chart_prep.MAX_DAYS}."
            )
        n = int(days_text)
    begin = None
    if start_text is not None:
        try:
            d = datetime.strptime(start_text, "%Y-%m-%d")
        except ValueError:
            raise HTTPException(status_code=400, detail="From must be a date (YYYY-MM-DD).") from None
        begin = d.replace(tzinfo=timezone.utc)
    with _reader(request).connect() as conn:
        result = chart_prep.worklist(conn, now=_now(request), days=n, start=begin, settings=settings)
        conn.rollback()
    auth.audit_listed(  # one entry per patient the worklist listed
        request,
        [item["patient"]["mrn"] for item in result["items"]],
        action="view",
        target_type="chart_prep",
        detail={"from": result["from"], "days": n, "items": len(result["items"])},
    )
    return _render(
        request,
        "chart_prep.html",
        {"result": result, "params": {"days": n, "start": start_text or ""}},
    )
